// The Jobs panel: the form that queues an lvseg train job, the list of every job (any kind),
// and the selected job's actions (stop, resume, clone, delete), command, log and live monitor.
import { cell, get, post, remove, when } from './api.js';
import { monitorUrl } from './runs.js';

const $ = (id) => document.getElementById(id);
const NUMBERS = [
  ['job-val', 'val', parseFloat], // the patient-level split: a validation share, or K folds
  ['job-folds', 'folds', parseInt],
  ['job-fold', 'fold', parseInt],
  ['job-epochs', 'epochs', parseInt],
  ['job-batch-size', 'batch_size', parseInt],
  ['job-lr', 'lr', parseFloat],
  ['job-seed', 'seed', parseInt],
];
const LIVE = ['queued', 'running'];
const RESUMABLE = ['stopped', 'interrupted'];
const MAX_LOG_CHARS = 200000;

function option(value, label) {
  const element = document.createElement('option');
  element.value = value;
  element.textContent = label;
  return element;
}

export const runName = (job) => job.run || `job-${String(job.id).padStart(4, '0')}`;

// A train job's live monitor; its URL is set only when it changes, so the page in the frame
// keeps its stream and its zoom across the job list's polls.
function showMonitor(job) {
  const frame = $('job-monitor');
  const url = job !== null && job.kind === 'train' ? monitorUrl([runName(job)]) : '';
  frame.hidden = url === '';
  if (frame.dataset.url === url) return;
  frame.dataset.url = url;
  if (url) frame.src = url;
  else frame.src = 'about:blank'; // closes the monitor's live stream
}

export function createJobsPanel({ onError }) {
  const dataSelect = $('job-data');
  const list = document.querySelector('#jobs tbody');
  const logView = $('job-log');
  let jobs = [];
  let selected = null;
  let shown = { command: null, log: null, size: 0 }; // what the detail shows, of which job

  const current = () => jobs.find((job) => job.id === selected) || null;

  function setDatasets(datasets, chosen = null) {
    const keep = chosen || dataSelect.value;
    dataSelect.replaceChildren(
      ...datasets.map((d) => option(d.path, d.name)),
      option('phantom', 'phantom (generated)'),
    );
    if ([...dataSelect.options].some((o) => o.value === keep)) dataSelect.value = keep;
  }

  function setModels(names) {
    const select = $('job-model');
    const keep = select.value || 'lvnet';
    select.replaceChildren(...names.map((name) => option(name, name)));
    if (names.includes(keep)) select.value = keep;
  }

  function formArgs() {
    const args = { data: dataSelect.value, model: $('job-model').value };
    const config = $('job-config').value.trim();
    if (config !== '') args.config = config; // a recipe file: the form's knobs override it
    // A split file fixes the patients (lvseg train --split): no share or fold with it.
    const split = $('job-split').value.trim();
    if (split !== '') args.split = split;
    // The model's size knobs (lvseg train --model-option, once each): "width=8 depth=3".
    const knobs = $('job-model-options').value.split(/[\s,]+/).filter((knob) => knob !== '');
    if (knobs.length > 0) args.model_option = knobs;
    for (const [id, name, parse] of NUMBERS) {
      const raw = $(id).value.trim();
      if (raw !== '') args[name] = parse(raw);
    }
    return args;
  }

  function renderList() {
    list.replaceChildren(
      ...jobs.map((job) => {
        const row = document.createElement('tr');
        row.dataset.job = String(job.id);
        row.classList.toggle('selected', job.id === selected);
        const state = cell('');
        const badge = document.createElement('span');
        badge.className = `badge ${job.state}`;
        badge.textContent = job.state;
        if (job.reason) badge.title = job.reason; // why it failed, from its log
        state.append(badge);
        const output = job.output || runName(job);
        row.append(cell(job.id), cell(job.kind), state, cell(output), cell(when(job.created)));
        row.addEventListener('click', () => select(job.id));
        return row;
      }),
    );
  }

  function renderDetail() {
    const job = current();
    $('job-detail').hidden = job === null;
    showMonitor(job);
    if (job === null) return;
    $('job-id').textContent = `#${job.id}`;
    $('job-state').className = `badge ${job.state}`;
    $('job-state').textContent = job.state;
    $('job-run').textContent = runName(job);
    $('job-reason').hidden = !job.reason;
    $('job-reason').textContent = job.reason || '';
    $('job-stop').disabled = !LIVE.includes(job.state);
    // Only a training run continues from its checkpoint; other kinds run again (Clone).
    $('job-resume').disabled = job.kind !== 'train' || !RESUMABLE.includes(job.state);
    $('job-delete').disabled = LIVE.includes(job.state);
  }

  async function refreshDetail() {
    const job = current();
    if (job === null) return;
    if (shown.command !== job.id) {
      shown.command = job.id;
      try {
        $('job-command').textContent = (await get(`/api/jobs/${job.id}/command`)).command;
      } catch (error) {
        $('job-command').textContent = error.message;
      }
    }
    const query = shown.log === job.id ? `since=${shown.size}` : 'tail=65536';
    const answer = await get(`/api/jobs/${job.id}/log?${query}`);
    if (selected !== job.id) return;
    const text = (shown.log === job.id ? logView.textContent : '') + answer.text;
    logView.textContent = text.slice(-MAX_LOG_CHARS);
    if (answer.text) logView.scrollTop = logView.scrollHeight;
    shown = { ...shown, log: job.id, size: answer.size };
  }

  async function refresh() {
    jobs = (await get('/api/jobs')).jobs;
    if (current() === null) selected = null;
    renderList();
    renderDetail();
    await refreshDetail();
    return jobs;
  }

  async function select(id) {
    selected = id;
    shown = { command: null, log: null, size: 0 };
    $('job-command').textContent = '';
    logView.textContent = '';
    $('delete-confirm').value = '';
    renderList();
    renderDetail();
    try {
      await refreshDetail();
    } catch (error) {
      onError(error);
    }
  }

  function upsert(job) {
    jobs = [job, ...jobs.filter((j) => j.id !== job.id)].sort((a, b) => b.id - a.id);
    renderList();
    renderDetail();
  }

  // Each action: its request, then the job list as the answer changed it; errors in one line.
  function action(id, run) {
    $(id).addEventListener('click', async () => {
      const job = current();
      if (job === null) return;
      try {
        await run(job);
        onError(null);
      } catch (error) {
        onError(error);
      }
    });
  }

  action('job-stop', async (job) => upsert(await post(`/api/jobs/${job.id}/stop`)));
  action('job-resume', async (job) => {
    const next = await post(`/api/jobs/${job.id}/resume`);
    upsert(next);
    await select(next.id);
  });
  action('job-clone', async (job) => {
    const epochs = $('clone-epochs').value.trim();
    const changes = epochs === '' ? {} : { epochs: parseInt(epochs, 10) };
    const next = await post(`/api/jobs/${job.id}/clone`, { changes });
    upsert(next);
    await select(next.id);
  });
  action('job-delete', async (job) => {
    const typed = $('delete-confirm').value.trim();
    if (typed === '') throw new Error(`type the run's name (${runName(job)}) to delete it`);
    const answer = await remove(`/api/jobs/${job.id}?confirm=${encodeURIComponent(typed)}`);
    jobs = jobs.filter((j) => !answer.deleted.includes(j.id));
    selected = null;
    renderList();
    renderDetail();
  });

  $('job-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const job = await post('/api/jobs', { kind: 'train', args: formArgs() });
      upsert(job);
      await select(job.id);
      onError(null);
    } catch (error) {
      onError(error);
    }
  });

  return { refresh, setDatasets, setModels };
}
