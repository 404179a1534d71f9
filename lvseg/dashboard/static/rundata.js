/* A run's data in the page: loaded once through the JSON API, then merged with what the stream
 * pushes (columns for steps and epochs, layer matrices, histograms, events, watch frames). */

import { state, runPath, getJSON, last } from './state.js';
import { showProblem, clearProblem } from './runs.js';

const LAYER_STATS = ['grad_norm', 'weight_norm', 'update_ratio', 'act_mean', 'act_std', 'act_zero_fraction'];

function emptyRun(name) {
  return {
    name,
    detail: null,
    steps: { step: [] },
    epochs: { epoch: [] },
    layers: {},
    hist: { edges: [], centres: [], layers: {} },
    events: [],
    watch: new Map(),
    error: null,
  };
}

export function emptyMatrix() {
  return { layers: [], index: new Map(), steps: [], z: [] };
}

/** Append the rows of a columnar delta whose key (step or epoch) is new; returns the index
 * of the first row appended, or -1 if none was. */
export function appendColumns(target, delta, key) {
  const keys = delta && delta[key];
  if (!keys || !keys.length) return -1;
  const have = target[key];
  const lastKey = have.length ? have[have.length - 1] : -Infinity;
  let start = 0;
  while (start < keys.length && keys[start] <= lastKey) start += 1;
  if (start >= keys.length) return -1;
  const rows = have.length;
  for (const name of Object.keys(delta)) {
    if (!(name in target)) target[name] = new Array(rows).fill(null);
  }
  for (const name of Object.keys(target)) {
    const source = delta[name];
    const column = target[name];
    for (let i = start; i < keys.length; i += 1) column.push(source ? source[i] : null);
  }
  return rows;
}

/** Merge {layers, steps, by_layer} into a matrix (by_layer[i][j]: layer i at step j). */
export function mergeMatrix(matrix, delta) {
  const columns = delta.layers.map((name) => {
    let index = matrix.index.get(name);
    if (index === undefined) {
      index = matrix.layers.length;
      matrix.layers.push(name);
      matrix.index.set(name, index);
      matrix.z.push(new Array(matrix.steps.length).fill(null));
    }
    return index;
  });
  delta.steps.forEach((step, k) => {
    let j = matrix.steps.length - 1;
    if (j < 0 || step > matrix.steps[j]) {
      matrix.steps.push(step);
      for (const row of matrix.z) row.push(null);
      j = matrix.steps.length - 1;
    } else if (step !== matrix.steps[j]) {
      j = matrix.steps.lastIndexOf(step);
      if (j < 0) return;
    }
    columns.forEach((i, c) => {
      const value = delta.by_layer[c][k];
      if (value !== null) matrix.z[i][j] = value;
    });
  });
}

export function mergeHistograms(hist, delta) {
  if (delta.edges && delta.edges.length && !hist.edges.length) {
    hist.edges = delta.edges;
    hist.centres = delta.centres || centresOf(delta.edges);
  }
  for (const [layer, rows] of Object.entries(delta.layers || {})) {
    const mine = hist.layers[layer] || (hist.layers[layer] = { steps: [], counts: [] });
    rows.steps.forEach((step, k) => {
      const j = mine.steps.length - 1;
      if (j < 0 || step > mine.steps[j]) {
        mine.steps.push(step);
        mine.counts.push(rows.counts[k]);
      } else {
        const at = mine.steps.lastIndexOf(step);
        if (at >= 0) mine.counts[at] = rows.counts[k];
      }
    });
  }
}

function centresOf(edges) {
  const centres = [];
  for (let i = 0; i + 1 < edges.length; i += 1) {
    const a = edges[i];
    const b = edges[i + 1];
    centres.push(a === null ? b - 0.125 : b === null ? a + 0.125 : (a + b) / 2);
  }
  return centres;
}

export function mergeEvents(run, events) {
  const lastId = run.events.length ? last(run.events).id : -Infinity;
  for (const event of events) if (event.id > lastId) run.events.push(event);
}

export function mergeWatch(run, frames) {
  for (const frame of frames) run.watch.set(`${frame.epoch}/${frame.slice}/${frame.kind}`, frame);
}

export function cursorsOf(run) {
  let layer = null;
  for (const matrix of Object.values(run.layers)) {
    const step = last(matrix.steps);
    if (step !== null && (layer === null || step > layer)) layer = step;
  }
  let hist = null;
  for (const rows of Object.values(run.hist.layers)) {
    const step = last(rows.steps);
    if (step !== null && (hist === null || step > hist)) hist = step;
  }
  let watch = null;
  for (const frame of run.watch.values()) if (watch === null || frame.epoch > watch) watch = frame.epoch;
  return {
    step: last(run.steps.step),
    epoch: last(run.epochs.epoch),
    event: run.events.length ? last(run.events).id : 0, // 0: has every event (there are none)
    layer,
    hist,
    watch,
  };
}

export async function loadRun(name) {
  const run = emptyRun(name);
  try {
    const [detail, steps, epochs, hist, events, watch, ...layers] = await Promise.all([
      getJSON(runPath(name)),
      getJSON(runPath(name, '/steps')),
      getJSON(runPath(name, '/epochs')),
      getJSON(runPath(name, '/histograms')),
      getJSON(runPath(name, '/events')),
      getJSON(runPath(name, '/watch')),
      ...LAYER_STATS.map((stat) => getJSON(runPath(name, `/layers/${stat}`))),
    ]);
    run.detail = detail;
    run.steps = steps.columns.step ? steps.columns : { step: [] };
    run.epochs = epochs.columns.epoch ? epochs.columns : { epoch: [] };
    mergeHistograms(run.hist, hist);
    run.events = events.events;
    mergeWatch(run, watch.frames);
    LAYER_STATS.forEach((stat, i) => {
      const matrix = emptyMatrix();
      mergeMatrix(matrix, layers[i]);
      run.layers[stat] = matrix;
    });
    clearProblem(name);
  } catch (error) {
    run.error = error.message;
    showProblem(name, error.message);
  }
  state.data.set(name, run);
  return run;
}
