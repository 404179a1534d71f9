// A dataset's detail: its inspection (lvseg data inspect: counts, groups, spacing, montage),
// its fingerprint and preprocessing plan (lvseg data plan), each with the command it ran; and
// its patient-level splits (lvseg data split jobs) with a form that makes one.
import { cell, get, post, withToken } from './api.js';

const $ = (id) => document.getElementById(id);
const WATCH_MS = 1500;
const ENDED = ['done', 'failed', 'stopped', 'interrupted'];

// Follow a job until it ends, its state in `status`; the ended job.
export async function watchJob(job, status, label) {
  let current = job;
  while (!ENDED.includes(current.state)) {
    status.textContent = `job #${current.id} (${label}): ${current.state}…`;
    await new Promise((resolve) => window.setTimeout(resolve, WATCH_MS));
    current = await get(`/api/jobs/${current.id}`);
  }
  const where = current.reason ? `: ${current.reason}` : current.output ? ` → ${current.output}` : '';
  status.textContent = `job #${current.id} (${label}): ${current.state}${where}`;
  return current;
}

// A JSON value in one line: numbers to 4 significant digits, lists joined, objects as "k v".
export function oneLine(value) {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'number') return String(Number(value.toPrecision(4)));
  if (Array.isArray(value)) return value.map(oneLine).join(' × ');
  if (typeof value === 'object') {
    return Object.entries(value).map(([k, v]) => `${k} ${oneLine(v)}`).join(', ') || 'none';
  }
  return String(value);
}

function facts(id, rows) {
  $(id).tBodies[0].replaceChildren(
    ...rows.map(([label, value]) => {
      const row = document.createElement('tr');
      const th = document.createElement('th');
      th.textContent = label;
      row.append(th, cell(typeof value === 'string' ? value : oneLine(value)));
      return row;
    }),
  );
}

function range(stats, unit) {
  if (!stats || stats.median === null) return 'unknown';
  return `${oneLine(stats.min)}–${oneLine(stats.max)} ${unit} (median ${oneLine(stats.median)})`;
}

function showInspection(s) {
  const spacing = range(s.pixel_spacing_mm, 'mm');
  facts('dataset-counts', [
    ['format', s.format],
    ['patients', s.patients],
    ['slices', s.slices],
    ['slices per structure', s.slices_per_structure],
    ['phases', s.phases],
    ['groups (patients)', s.groups],
    ['image sizes (slices)', s.image_sizes],
    ['pixel spacing', spacing + (s.pixel_spacing_mm.unknown ? `, unknown on ${s.pixel_spacing_mm.unknown}` : '')],
    ['slice thickness', range(s.slice_thickness_mm, 'mm')],
    ['intensity', s.intensity],
    ['skipped files', s.skipped.length],
  ]);
  $('dataset-patients').tBodies[0].replaceChildren(
    ...s.per_patient.map((p) => {
      const row = document.createElement('tr');
      row.append(cell(p.patient), cell(p.group), cell(p.slices), cell(p.slice_positions),
        cell(p.phases.join(', ')), cell(oneLine(p.structures)));
      return row;
    }),
  );
  $('inspect-command').textContent = s.command;
}

function showPlan(answer) {
  const { plan, fingerprint: f } = answer;
  facts('dataset-plan', [
    ['target spacing (mm)', plan.target_spacing_mm === null ? 'keep the pixel grid' : plan.target_spacing_mm],
    ['crop size (px)', plan.crop_size],
    ['training jitter (px)', plan.jitter_px],
    ['intensity', `${plan.normalisation}, clip percentiles ${plan.clip_percentiles.join('–')}`],
    ['image interpolation order', plan.image_order],
    ['structures', plan.structures.join(', ')],
    ['assumed spacing (mm)', plan.assumed_spacing_mm],
  ]);
  $('plan-notes').replaceChildren(
    ...plan.notes.map((note) => {
      const item = document.createElement('li');
      item.textContent = note;
      return item;
    }),
  );
  const heart = f.heart_extent && (f.heart_extent.mm || f.heart_extent.px);
  facts('dataset-fingerprint', [
    ['records, patients', `${f.n_records}, ${f.n_patients}`],
    ['groups (slices)', f.group_counts],
    ['phases', f.phase_counts],
    ['structures', f.structure_counts],
    ['spacing known, unknown', `${f.spacing_known}, ${f.spacing_unknown}`],
    ['spacing median (mm)', f.spacing_median_mm],
    ['image shapes', f.shape_counts],
    ['foreground intensity', f.intensity_foreground ? f.intensity_foreground.percentiles : null],
    [`heart extent (${f.heart_extent && f.heart_extent.mm ? 'mm' : 'px'})`,
      heart ? { min: heart.min, median: heart.median, max: heart.max } : null],
  ]);
  $('plan-command').textContent = answer.command;
}

export function createDatasetDetail({ onError }) {
  const status = $('dataset-status');
  const montage = $('dataset-montage');
  let dataset = null;
  let splits = [];

  const url = (d, what) => `/api/datasets/${encodeURIComponent(d.name)}/${what}`;

  async function load(d) {
    status.textContent = 'running lvseg data inspect…';
    const inspection = await get(url(d, 'inspection'));
    if (dataset !== d) return; // another dataset was clicked meanwhile
    showInspection(inspection);
    montage.src = withToken(`${url(d, 'montage.png')}?shown=${Date.now()}`);
    montage.hidden = false;
    status.textContent = 'running lvseg data plan…';
    const plan = await get(url(d, 'plan'));
    if (dataset !== d) return;
    showPlan(plan);
    // The Network panel shows a model at the size it will train at: this plan's crop.
    $('network-size').value = String(plan.plan.crop_size);
    $('network-size-note').textContent = `the planned crop of ${d.name}`;
    status.textContent = '';
  }

  function renderSplits() {
    const mine = splits.filter((s) => dataset !== null && s.data === dataset.path);
    $('splits').tBodies[0].replaceChildren(
      ...mine.map((s) => {
        const row = document.createElement('tr');
        row.dataset.split = s.file;
        const counts = s.counts || {};
        row.append(cell(s.file), cell(s.job), cell(counts.train), cell(counts.val),
          cell(counts.test), cell(s.error || oneLine(s.options)));
        row.addEventListener('click', () => showSplit(s.file).catch(onError));
        return row;
      }),
    );
  }

  async function refreshSplits() {
    splits = (await get('/api/splits')).splits;
    renderSplits();
  }

  async function showSplit(file) {
    const split = await get(`/api/splits/${encodeURIComponent(file)}`);
    facts('split-patients', [
      ['split', split.file],
      ...['train', 'val', 'test'].map((part) => [
        `${part} (${split[part].length})`, split[part].join(', ') || 'none']),
    ]);
    $('split-patients').hidden = false;
    offerTraining(split);
  }

  // lvseg train --split FILE trains on a split file's patients as they are: its train patients
  // train, its val patients validate, its test patients are held out.
  function offerTraining(split) {
    const button = $('split-train');
    const usable = split.data !== null;
    button.hidden = !usable;
    $('split-train-note').textContent = usable
      ? 'fills the job form with this dataset and split file (lvseg train --split)'
      : 'the job that made this split is deleted: its dataset is unknown';
    button.onclick = () => {
      $('job-data').value = split.data;
      $('job-split').value = `splits/${split.file}`;
      for (const id of ['job-val', 'job-folds', 'job-fold']) $(id).value = '';
      $('jobs-panel').scrollIntoView();
    };
  }

  async function show(d) {
    dataset = d;
    $('dataset-detail').hidden = false;
    $('dataset-name').textContent = d.name;
    $('dataset-path').textContent = d.path;
    for (const id of ['dataset-counts', 'dataset-plan', 'dataset-fingerprint', 'dataset-patients']) {
      $(id).tBodies[0].replaceChildren();
    }
    for (const id of ['inspect-command', 'plan-command', 'plan-notes']) $(id).replaceChildren();
    montage.hidden = true;
    $('split-patients').hidden = true;
    $('split-train').hidden = true;
    $('split-train-note').textContent = '';
    try {
      await Promise.all([load(d), refreshSplits()]);
      onError(null);
    } catch (error) {
      if (dataset === d) status.textContent = '';
      onError(error);
    }
  }

  function splitArgs() {
    const args = { data: dataset.path };
    for (const [id, name, parse] of [['split-val', 'val', parseFloat], ['split-test', 'test', parseFloat],
      ['split-folds', 'folds', parseInt], ['split-seed', 'seed', parseInt]]) {
      const raw = $(id).value.trim();
      if (raw !== '') args[name] = parse(raw);
    }
    return args;
  }

  $('split-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    if (dataset === null) return;
    try {
      const job = await post('/api/jobs', { kind: 'data-split', args: splitArgs() });
      onError(null);
      await watchJob(job, $('split-status'), 'lvseg data split');
      await refreshSplits();
    } catch (error) {
      onError(error);
    }
  });

  return { show, shown: () => (dataset === null ? null : dataset.name) };
}
