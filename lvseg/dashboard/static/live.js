/* Following the runs: the server's event stream (new rows, runs that come and go, resets,
 * problems) and the selection of the runs shown. */

import { state, apiUrl } from './state.js';
import { showProblem, clearProblem, drawLive } from './runs.js';
import {
  emptyMatrix, appendColumns, mergeMatrix, mergeHistograms, mergeEvents, mergeWatch, cursorsOf,
  loadRun,
} from './rundata.js';
import { LOSS_COMPONENTS, drawnColumns } from './curves.js';
import { dirty, schedule } from './draw.js';

function applyUpdate(update) {
  const run = state.data.get(update.run);
  if (!run || run.error) return;
  if (update.steps) {
    const start = appendColumns(run.steps, update.steps, 'step');
    if (start >= 0 && state.selected.includes(run.name)) {
      const known = dirty.steps.get(run.name);
      dirty.steps.set(run.name, known === undefined ? start : Math.min(known, start));
      // A curve the step charts do not draw yet (first rows, a new metric) needs a full draw.
      const drawn = drawnColumns(run.name);
      const wanted = run.name === state.focus ? ['loss', 'lr', 'grad_norm', ...LOSS_COMPONENTS] : ['loss'];
      if (wanted.some((name) => name in update.steps && !drawn.has(name))) dirty.curves = true;
    }
    dirty.facts = dirty.facts || run.name === state.focus;
  }
  if (update.epochs && appendColumns(run.epochs, update.epochs, 'epoch') >= 0) dirty.epochs = true;
  if (update.layers) {
    for (const [stat, delta] of Object.entries(update.layers)) {
      const matrix = run.layers[stat] || (run.layers[stat] = emptyMatrix());
      mergeMatrix(matrix, delta);
    }
    if (run.name === state.focus) dirty.layers = true;
  }
  if (update.histograms) {
    mergeHistograms(run.hist, update.histograms);
    if (run.name === state.focus) dirty.hist = true;
  }
  if (update.events) {
    mergeEvents(run, update.events);
    dirty.lists = true;
  }
  if (update.watch) {
    mergeWatch(run, update.watch);
    if (run.name === state.focus) dirty.watch = true;
  }
  if (update.status && run.detail) {
    run.detail.status = update.status.status;
    run.detail.status_message = update.status.message;
    dirty.facts = true;
  }
  if (update.checkpoints && run.detail) {
    run.detail.checkpoints = update.checkpoints;
    run.detail.selected = update.selected;
    dirty.facts = true;
  }
  schedule();
}

async function applyRuns(runs) {
  const before = state.runs.map((run) => run.name).join('\n');
  state.runs = runs;
  const names = new Set(runs.map((run) => run.name));
  for (const name of state.selected) {
    if (!names.has(name)) showProblem(name, `${name}: the run is gone`);
  }
  for (const run of runs) {
    const data = state.data.get(run.name);
    if (data && data.detail && !data.error) {
      Object.assign(data.detail.summary, run);
    }
  }
  dirty.runs = true;
  dirty.facts = true;
  schedule();
  const arrived = state.pending.filter((name) => names.has(name));
  if (arrived.length) {
    state.pending = state.pending.filter((name) => !names.has(name));
    await select([...state.selected, ...arrived], arrived[0]);
  } else if (!state.selected.length && !state.pending.length && runs.length
    && before !== runs.map((run) => run.name).join('\n')) {
    await select([newestRun(runs)], newestRun(runs));
  }
}

export function openStream() {
  if (state.stream) state.stream.close();
  clearTimeout(state.retry);
  const from = {};
  for (const name of state.selected) {
    const run = state.data.get(name);
    if (run && !run.error) from[name] = cursorsOf(run);
  }
  const source = new EventSource(apiUrl('api/stream', { from: JSON.stringify(from) }));
  state.stream = source;
  const handle = (kind, handler) => source.addEventListener(kind, (event) => {
    if (state.stream !== source) return;
    state.connected = true;
    drawLive();
    try {
      handler(JSON.parse(event.data));
    } catch (error) {
      console.error(error);
    }
  });
  source.addEventListener('open', () => {
    state.connected = true;
    clearProblem('stream');
    drawLive();
  });
  handle('update', applyUpdate);
  handle('runs', (message) => applyRuns(message.runs));
  handle('ping', () => {});
  handle('problem', (message) => showProblem(message.run, message.error));
  handle('reset', async (message) => {
    clearProblem(message.run);
    await loadRun(message.run);
    dirty.all = true;
    schedule();
    openStream();
  });
  source.onerror = () => {
    if (state.stream !== source) return;
    source.close();
    state.stream = null;
    state.connected = false;
    drawLive();
    state.retry = setTimeout(openStream, 2000);
  };
}

export function newestRun(runs) {
  const usable = runs.filter((run) => run.status !== 'corrupt');
  const pool = usable.length ? usable : runs;
  return pool.reduce((best, run) => ((run.updated || run.created || 0) > (best.updated || best.created || 0) ? run : best)).name;
}

async function select(names, focus) {
  state.selected = names;
  state.focus = focus && names.includes(focus) ? focus : names[0] || null;
  state.gradLayers = null;
  state.watchIndex = null;
  await Promise.all(names.filter((name) => !state.data.has(name) || state.data.get(name).error).map(loadRun));
  for (const name of [...state.data.keys()]) if (!names.includes(name)) state.data.delete(name);
  for (const key of [...state.problems.keys()]) if (key !== 'stream' && !names.includes(key)) clearProblem(key);
  dirty.all = true;
  schedule();
  openStream();
  const query = new URLSearchParams(location.search);
  query.delete('run');
  for (const name of names) query.append('run', name);
  history.replaceState(null, '', `${location.pathname}?${query}`);
}

export function toggleRun(name, on) {
  const names = on ? [...state.selected, name] : state.selected.filter((item) => item !== name);
  const ordered = state.runs.map((run) => run.name).filter((item) => names.includes(item));
  select(ordered, state.focus === name && !on ? ordered[0] : state.focus);
}

export function focusOn(name) {
  const names = state.selected.includes(name) ? state.selected : state.runs.map((run) => run.name).filter((item) => item === name || state.selected.includes(item));
  select(names, name);
}
