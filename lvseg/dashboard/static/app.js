/* lvseg dashboard: loads each run once through the JSON API, then follows the server's event
 * stream and appends only what is new (Plotly.extendTraces for step curves, Plotly.react with a
 * new data revision for the rest). Native ES modules, one per panel family, served as they are:
 * no build step, nothing fetched from elsewhere. This one starts the page; state.js holds what
 * every panel shares (state, API, helpers), rundata.js a run's data, and the panels are runs.js
 * (run list, facts, status, problems), curves.js, layers.js (gradients and activations), lists.js
 * (alerts, events, checkpoints) and watch.js; draw.js decides when to draw, live.js follows the
 * server's stream and the selection.
 *
 * For tests and benchmarks, window.lvsegDashboard holds: pointsPlotted (points in the training
 * loss chart), lastDrawnStep (the shown run's last step drawn there), lastDrawnAt (epoch
 * milliseconds of that draw), ready (the first full draw is done) and readyAt (milliseconds from
 * navigation to ready).
 */

import { dash, state, apiUrl, getJSON, el } from './state.js';
import { showProblem, wireRunList } from './runs.js';
import { loadRun } from './rundata.js';
import { wireLayerControls } from './layers.js';
import { wireWatchControls } from './watch.js';
import { drawAll } from './draw.js';
import { openStream, newestRun, toggleRun, focusOn } from './live.js';

function wireControls() {
  wireLayerControls();
  wireWatchControls();
  wireRunList(toggleRun, focusOn);
}

/** Plotly (4 MB) is parsed only once the run data is asked for, so that the server reads the
 * stores while the browser parses Plotly (index.html preloads the file meanwhile). */
function loadPlotly() {
  if (window.Plotly) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const script = el('script', { src: apiUrl('static/plotly.min.js') });
    script.addEventListener('load', resolve);
    script.addEventListener('error', () => reject(new Error('cannot load static/plotly.min.js')));
    document.head.append(script);
  });
}

async function start() {
  wireControls();
  try {
    const list = await getJSON('api/runs');
    state.target = list.target;
    state.runs = list.runs;
  } catch (error) {
    showProblem('start', `cannot list the runs: ${error.message}`);
  }
  const wanted = new URLSearchParams(location.search).getAll('run');
  const known = state.runs.map((run) => run.name);
  let names = wanted.filter((name) => known.includes(name));
  state.pending = wanted.filter((name) => !known.includes(name));
  if (!names.length && !state.pending.length && state.runs.length) names = [newestRun(state.runs)];
  state.selected = names;
  state.focus = names[0] || null;
  const loads = Promise.all(names.map(loadRun));
  await loadPlotly();
  await loads;
  await drawAll();
  openStream();
  dash.readyAt = performance.now();
  dash.ready = true;
}

start().catch((error) => {
  showProblem('start', `dashboard failed to start: ${error.message}`);
  console.error(error);
});
