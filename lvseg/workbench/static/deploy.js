// The Deploy panel: choose a model among finished training runs (lvseg select), score it on a
// dataset (lvseg evaluate), export it (lvseg export). Each form queues a job; the panel follows
// the latest job of each kind and, once it is done, shows what it wrote.
import { cell, get, post, withToken } from './api.js';

const $ = (id) => document.getElementById(id);
const KINDS = ['select', 'evaluate', 'export'];
const LOG_TAIL = 4096;

function fmt(value, digits = 4) {
  if (value === null || value === undefined) return '–';
  return typeof value === 'number' ? value.toFixed(digits) : String(value);
}

function option(value, label) {
  const element = document.createElement('option');
  element.value = value;
  element.textContent = label;
  return element;
}

function link(href, text, download = false) {
  const a = document.createElement('a');
  a.href = withToken(href);
  a.textContent = text;
  if (download) a.download = '';
  else a.target = '_blank';
  return a;
}

function tableRows(body, rows) {
  body.replaceChildren(
    ...rows.map((values) => {
      const row = document.createElement('tr');
      row.append(...values.map(cell));
      return row;
    }),
  );
}

const folderName = (path) => String(path).split(/[\\/]/).filter(Boolean).pop();
const fileUrl = (what, name, file) => `/api/${what}/${encodeURIComponent(name)}/files/${file}`;

// -- what a finished job wrote

async function showSelection(job) {
  // The chosen run holds selected.json: of the runs given, the one written last.
  const found = [];
  for (const run of job.args.runs || []) {
    try {
      found.push(await get(`/api/runs/${encodeURIComponent(folderName(run))}/selection`));
    } catch (error) {
      // a run not chosen this time (404), or one outside runs/
    }
  }
  found.sort((a, b) => String(b.selected_at).localeCompare(String(a.selected_at)));
  const chosen = found[0];
  if (!chosen) throw new Error(`select job ${job.id}: no selected.json among its runs`);
  $('select-chosen').textContent =
    `${chosen.run_name}: ${chosen.model} epoch ${chosen.epoch} (${chosen.checkpoint}), ` +
    `validation Dice ${fmt(chosen.metrics.val_dice)}`;
  $('select-reason').textContent = chosen.reason;
  tableRows(
    document.querySelector('#select-candidates tbody'),
    chosen.candidates.map((c) => [
      folderName(c.run), c.kind, c.epoch, fmt(c.val_dice), c.parameters.toLocaleString(),
      c.macs === null ? '–' : c.macs.toLocaleString(),
    ]),
  );
  $('select-rejected').replaceChildren(
    ...chosen.rejected.map((why) => {
      const item = document.createElement('li');
      item.textContent = why;
      return item;
    }),
  );
  return `runs/${chosen.run_name}`;
}

const efText = (ef) =>
  `${fmt(ef.bias, 3)} [${fmt(ef.loa_low, 3)}, ${fmt(ef.loa_high, 3)}] (${ef.n} patients)`;

async function showEvaluation(job) {
  const found = await get(`/api/evaluations/${encodeURIComponent(job.run)}`);
  const h = found.headline;
  const units = found.data.distance_units || 'mm';
  const ef = found.ef_agreement;
  tableRows(document.querySelector('#evaluate-figures tbody'), [
    ['model', `${found.model.name} (${found.model.source})`],
    ['data', `${found.data.path} (${found.data.split})`],
    ['slices / patients', `${h.slices} / ${h.patients}`],
    ['Dice, mean over slices', fmt(h.dice_mean)],
    ['Dice, mean over patients', fmt(h.patient_dice_mean)],
    ['Dice, median', fmt(h.dice_median)],
    [`HD95 (${units})`, fmt(h.hd95_mm_mean, 2)],
    ['detection rate', fmt(h.detection_rate, 3)],
    ['EF bias [limits of agreement]', ef ? efText(ef) : '–'],
  ]);
  const links = $('evaluate-links');
  const files = ['report.html', 'metrics.json', 'slices.csv'];
  links.replaceChildren(...files.map((f) => link(fileUrl('evaluations', found.name, f), f)));
  links.firstChild.id = 'evaluate-report';
}

async function showExport(job) {
  const found = await get(`/api/exports/${encodeURIComponent(job.run)}`);
  $('export-files').replaceChildren(
    ...found.files.map((f) => {
      const item = document.createElement('li');
      const href = fileUrl('exports', found.name, f.name);
      item.append(link(href, f.name, true), ` ${f.size.toLocaleString()} bytes`);
      return item;
    }),
  );
  const checks = found.checks.map(
    (c) =>
      `${c.variant}: mask Dice vs PyTorch ${fmt(c.mask_dice)}, ` +
      `validation Dice ${fmt(c.validation_dice)}`,
  );
  $('export-checks').textContent =
    `${found.checks_passed ? 'checks passed' : 'CHECKS FAILED'}: ${checks.join('; ')}`;
  $('export-card').textContent = found.card_markdown || '(no model card)';
}

const SHOW = { select: showSelection, evaluate: showEvaluation, export: showExport };

export function createDeployPanel({ onError }) {
  const shown = Object.fromEntries(KINDS.map((kind) => [kind, { id: null, state: null }]));
  let runs = [];
  let evaluations = []; // the finished evaluate jobs, newest first

  function setRuns(done) {
    const values = done.map((job) => job.output).filter(Boolean);
    if (values.join('\n') === runs.join('\n')) return;
    runs = values;
    const box = $('select-runs');
    // A run seen before keeps its tick; a new one comes ticked.
    const known = new Set([...box.querySelectorAll('input')].map((i) => i.value));
    const checked = new Set([...box.querySelectorAll('input:checked')].map((i) => i.value));
    box.replaceChildren(
      ...runs.map((run) => {
        const label = document.createElement('label');
        const input = document.createElement('input');
        input.type = 'checkbox';
        input.value = run;
        input.checked = checked.has(run) || !known.has(run);
        label.append(input, ` ${folderName(run)}`);
        return label;
      }),
    );
    if (!runs.length) box.textContent = 'no finished training run yet';
    for (const id of ['evaluate-run', 'export-run']) {
      const keep = $(id).value;
      $(id).replaceChildren(...runs.map((run) => option(run, folderName(run))));
      if (runs.includes(keep)) $(id).value = keep;
    }
  }

  // The export's card quotes an evaluation of the run exported: the newest by default (lvseg
  // export --evaluation), which must have scored the checkpoint exported.
  function setEvaluationChoices() {
    const select = $('export-evaluation');
    const run = $('export-run').value;
    const mine = evaluations.filter((job) => run && String(job.args.model).endsWith(`/${run}`));
    const values = mine.map((job) => job.output);
    const shown = [...select.options].map((o) => o.value);
    if (values.join('\n') === shown.slice(1).join('\n')) return;
    select.replaceChildren(
      option('', 'none (the run\'s own, if any)'),
      ...mine.map((job) => option(job.output, `${folderName(job.output)} (${folderName(job.args.data)})`)),
    );
    select.value = values[0] || '';
  }

  function setDatasets(datasets) {
    const select = $('evaluate-data');
    const keep = select.value;
    select.replaceChildren(...datasets.map((d) => option(d.path, d.name)));
    if ([...select.options].some((o) => o.value === keep)) select.value = keep;
  }

  function chooseRun(run) {
    for (const id of ['evaluate-run', 'export-run']) {
      if ([...$(id).options].some((o) => o.value === run)) $(id).value = run;
    }
  }

  // Shows the job's state and command and, once done, its result (each once per state).
  async function follow(kind, job) {
    const was = shown[kind];
    if (was.id === job.id && was.state === job.state) return;
    shown[kind] = { id: job.id, state: job.state };
    try {
      await render(kind, job, was.id !== job.id);
    } catch (error) {
      shown[kind] = { id: null, state: null }; // try again on the next refresh
      throw error;
    }
  }

  async function render(kind, job, fresh) {
    $(`${kind}-state`).className = `badge ${job.state}`;
    $(`${kind}-state`).textContent = `job ${job.id}: ${job.state}`;
    if (fresh) {
      $(`${kind}-result`).hidden = true;
      $(`${kind}-command`).textContent = (await get(`/api/jobs/${job.id}/command`)).command;
    }
    const log = $(`${kind}-log`);
    log.hidden = !['failed', 'stopped', 'interrupted'].includes(job.state);
    if (!log.hidden) log.textContent = (await get(`/api/jobs/${job.id}/log?tail=${LOG_TAIL}`)).text;
    if (job.state !== 'done') return;
    const chosen = await SHOW[kind](job);
    $(`${kind}-result`).hidden = false;
    if (kind === 'select' && fresh) chooseRun(chosen);
  }

  // ``jobs``: the job list the page just polled (one request a beat for both panels).
  async function refresh(jobs) {
    setRuns(jobs.filter((job) => job.kind === 'train' && job.state === 'done').reverse());
    evaluations = jobs.filter((job) => job.kind === 'evaluate' && job.state === 'done');
    evaluations.sort((a, b) => b.id - a.id);
    setEvaluationChoices();
    for (const kind of KINDS) {
      const latest = jobs.filter((job) => job.kind === kind).sort((a, b) => b.id - a.id)[0];
      if (latest) await follow(kind, latest);
    }
  }

  function formArgs(kind) {
    if (kind === 'select') {
      const chosen = [...$('select-runs').querySelectorAll('input:checked')].map((i) => i.value);
      if (!chosen.length) throw new Error('tick at least one training run to select among');
      const args = { runs: chosen, prefer: $('select-prefer').value };
      const drop = $('select-max-drop').value.trim();
      if (drop !== '') args.max_dice_drop = parseFloat(drop);
      return args;
    }
    if (kind === 'evaluate') {
      const args = { model: $('evaluate-run').value, data: $('evaluate-data').value };
      args.split = $('evaluate-split').value;
      const limit = $('evaluate-limit').value.trim();
      if (limit !== '') args.limit = parseInt(limit, 10);
      if ($('evaluate-tta').checked) args.tta = true;
      return args;
    }
    const args = { model: [$('export-run').value], format: $('export-format').value };
    if ($('export-int8').checked) args.int8 = true;
    if ($('export-evaluation').value) args.evaluation = $('export-evaluation').value;
    return args;
  }

  $('export-run').addEventListener('change', setEvaluationChoices);

  for (const kind of KINDS) {
    $(`${kind}-form`).addEventListener('submit', async (event) => {
      event.preventDefault();
      try {
        const job = await post('/api/jobs', { kind, args: formArgs(kind) });
        await follow(kind, job);
        onError(null);
      } catch (error) {
        onError(error);
      }
    });
  }

  return { refresh, setDatasets };
}
