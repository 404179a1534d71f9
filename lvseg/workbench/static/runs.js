// The Runs panel: the workspace's training runs side by side (GET /api/runs), and the ones
// ticked compared: their rows in one table (a column per run) and their curves overlaid in the
// live monitor (the dashboard, mounted at monitor/).
import { cell, get, withToken } from './api.js';

const REFRESH_MS = 5000;

/** The monitor's URL following ``names`` (a run named before its folder exists is shown as soon
 * as it appears), with the page's token. */
export const monitorUrl = (names) =>
  withToken(`monitor/?${names.map((name) => `run=${encodeURIComponent(name)}`).join('&')}`);

const present = (value) => value !== null && value !== undefined;
const fixed = (digits) => (value) => (present(value) ? value.toFixed(digits) : '');
const count = (value) => (present(value) ? Math.round(value).toLocaleString('en-US') : '');
const text = (value) => (present(value) ? String(value) : '');

function macs(value) {
  if (!present(value)) return '';
  return value >= 1e9 ? `${(value / 1e9).toFixed(2)} G` : `${(value / 1e6).toFixed(1)} M`;
}

function duration(seconds) {
  if (!present(seconds)) return '';
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const whole = Math.round(seconds);
  const [h, m, s] = [Math.floor(whole / 3600), Math.floor(whole / 60) % 60, whole % 60];
  return `${h}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
}

// What a row shows, in the table's column order: [label, key of the API's row, format].
const COLUMNS = [
  ['status', 'status', text],
  ['model', 'model', text],
  ['epochs', 'epochs', text],
  ['best val Dice', 'best_val_dice', fixed(4)],
  ['at epoch', 'best_epoch', text],
  ['train loss', 'train_loss', fixed(4)],
  ['parameters', 'parameters', count],
  ['MACs', 'macs', macs],
  ['s / epoch', 'seconds_per_epoch', fixed(2)],
  ['slices / s', 'slices_per_s', fixed(1)],
  ['wall time', 'wall_s', duration],
];

function headCell(label) {
  const th = document.createElement('th');
  th.textContent = label;
  return th;
}

// A cell with its value as shown and, for tests and tools, as the API gave it (data-value).
function valueCell(run, key, format) {
  if (key === 'status') {
    const td = cell('');
    const badge = document.createElement('span');
    badge.className = `badge ${run.status}`;
    badge.textContent = run.status;
    badge.title = run.error || '';
    td.append(badge);
    td.dataset.key = key;
    td.dataset.value = run.status;
    return td;
  }
  const td = cell(format(run[key]));
  td.dataset.key = key;
  td.dataset.value = present(run[key]) ? String(run[key]) : '';
  return td;
}

export function createRunsPanel({ onError }) {
  const body = document.querySelector('#runs tbody');
  const comparison = document.getElementById('runs-comparison');
  const compareHead = document.querySelector('#runs-compare thead');
  const compareBody = document.querySelector('#runs-compare tbody');
  const frame = document.getElementById('runs-monitor');
  const ticked = new Set();
  let runs = [];
  let compared = []; // the names shown compared, in the order of the list

  function renderList() {
    body.replaceChildren(
      ...runs.map((run) => {
        const row = document.createElement('tr');
        row.dataset.run = run.name;
        const box = document.createElement('input');
        box.type = 'checkbox';
        box.className = 'run-pick';
        box.checked = ticked.has(run.name);
        box.setAttribute('aria-label', `compare ${run.name}`);
        box.addEventListener('change', () => (box.checked ? ticked.add(run.name) : ticked.delete(run.name)));
        const pick = cell('');
        pick.append(box);
        row.append(pick, cell(run.name), ...COLUMNS.map(([, key, format]) => valueCell(run, key, format)));
        return row;
      }),
    );
  }

  // The compared runs side by side: a row per measure, a column per run.
  function renderComparison() {
    const shown = compared.map((name) => runs.find((run) => run.name === name)).filter(Boolean);
    const head = document.createElement('tr');
    head.append(...['run', ...shown.map((run) => run.name)].map(headCell));
    compareHead.replaceChildren(head);
    compareBody.replaceChildren(
      ...COLUMNS.map(([label, key, format]) => {
        const row = document.createElement('tr');
        row.dataset.key = key;
        row.append(cell(label), ...shown.map((run) => valueCell(run, key, format)));
        return row;
      }),
    );
  }

  async function refresh() {
    runs = (await get('/api/runs')).runs;
    const names = new Set(runs.map((run) => run.name));
    for (const name of [...ticked]) if (!names.has(name)) ticked.delete(name);
    renderList();
    if (compared.length) renderComparison();
  }

  function compare() {
    const names = runs.map((run) => run.name).filter((name) => ticked.has(name));
    if (!names.length) throw new Error('tick the runs to compare first');
    const url = monitorUrl(names);
    compared = names;
    comparison.hidden = false;
    renderComparison();
    if (frame.dataset.url !== url) {
      frame.dataset.url = url; // a new choice only: the monitor keeps its stream otherwise
      frame.src = url;
    }
  }

  function guarded(action) {
    return async () => {
      try {
        await action();
        onError(null);
      } catch (error) {
        onError(error);
      }
    };
  }

  document.getElementById('runs-refresh').addEventListener('click', guarded(refresh));
  document.getElementById('runs-compare-button').addEventListener('click', guarded(compare));
  let busy = false;
  window.setInterval(async () => {
    if (busy || document.hidden) return; // a slow answer, or nobody looking: skip a beat
    busy = true;
    try {
      await refresh();
    } catch (error) {
      onError(error); // a failed beat says so; a good one leaves other panels' messages alone
    } finally {
      busy = false;
    }
  }, REFRESH_MS);

  return { refresh };
}
