/* Gradients and activations per layer: the gradient-flow, update-ratio and activation heatmaps,
 * the gradient norm of chosen layers, and the gradient histogram of one layer. */

import { COLORS, state, el, $, focusRun } from './state.js';
import { PLOT_CONFIG, layout } from './curves.js';

function logMatrix(rows) {
  let low = Infinity;
  let high = -Infinity;
  const z = rows.map((row) => row.map((value) => {
    if (value === null || !(value > 0)) return null;
    const log = Math.log10(value);
    if (log < low) low = log;
    if (log > high) high = log;
    return log;
  }));
  return { z, low, high };
}

function powerTicks(low, high) {
  if (!Number.isFinite(low) || !Number.isFinite(high)) return {};
  const first = Math.floor(low);
  const lastTick = Math.ceil(high);
  const every = Math.max(1, Math.ceil((lastTick - first) / 8));
  const tickvals = [];
  for (let k = first; k <= lastTick; k += every) tickvals.push(k);
  return { tickvals, ticktext: tickvals.map((k) => `10<sup>${k}</sup>`) };
}

function heatmap(div, matrix, options) {
  const empty = !matrix || !matrix.layers.length || !matrix.steps.length;
  let z = [];
  let ticks = {};
  if (!empty && options.log) {
    const logs = logMatrix(matrix.z);
    z = logs.z;
    ticks = powerTicks(logs.low, logs.high);
  } else if (!empty) {
    z = matrix.z.map((row) => row.slice());
  }
  const trace = {
    type: 'heatmap',
    x: empty ? [] : matrix.steps.slice(),
    y: empty ? [] : matrix.layers.slice(),
    z,
    colorscale: options.colorscale || 'Viridis',
    reversescale: Boolean(options.reversescale),
    zmin: options.zmin,
    zmax: options.zmax,
    zmid: options.zmid,
    hoverongaps: false,
    colorbar: Object.assign({ title: { text: options.label, side: 'right' }, thickness: 12 }, ticks),
    hovertemplate: options.log
      ? `%{y}<br>step %{x}<br>${options.label} 10<sup>%{z:.2f}</sup><extra></extra>`
      : `%{y}<br>step %{x}<br>${options.label} %{z:.3g}<extra></extra>`,
  };
  const rows = empty ? 0 : matrix.layers.length;
  return Plotly.react(div, empty ? [] : [trace], layout({
    height: Math.max(280, 13 * rows + 80),
    margin: { l: 10, r: 10, t: 8, b: 40 },
    xaxis: { title: { text: 'step' } },
    yaxis: { autorange: 'reversed', automargin: true, tickfont: { size: 9 }, type: 'category' },
    annotations: empty ? [{ text: 'no layer statistics yet', showarrow: false, xref: 'paper', yref: 'paper', x: 0.5, y: 0.5 }] : [],
  }), PLOT_CONFIG);
}

export function drawGradientHeatmap() {
  const run = focusRun();
  return heatmap($('chart-grad-heat'), run && run.layers.grad_norm, { log: true, label: 'grad norm' });
}

export function drawUpdateHeatmap() {
  const run = focusRun();
  return heatmap($('chart-update-heat'), run && run.layers.update_ratio, {
    log: true, label: 'update ratio', colorscale: 'RdBu', zmid: -3,
  });
}

export function drawActivationHeatmap() {
  const run = focusRun();
  const stat = $('act-stat').value;
  const options = { label: stat.replace('act_', '').replace('_', ' ') };
  if (stat === 'act_zero_fraction') Object.assign(options, { zmin: 0, zmax: 1, colorscale: 'YlOrRd' });
  if (stat === 'act_mean') Object.assign(options, { colorscale: 'RdBu', zmid: 0 });
  return heatmap($('chart-act-heat'), run && run.layers[stat], options);
}

function defaultLayers(layers) {
  if (layers.length <= 5) return layers.slice();
  const picks = new Set([0, Math.round(layers.length / 4), Math.round(layers.length / 2),
    Math.round((3 * layers.length) / 4), layers.length - 1]);
  return [...picks].map((i) => layers[i]);
}

function fillSelect(select, names, chosen) {
  const same = select.options.length === names.length
    && names.every((name, i) => select.options[i].value === name);
  if (!same) select.replaceChildren(...names.map((name) => el('option', { value: name }, name)));
  for (const option of select.options) option.selected = chosen.includes(option.value);
}

export function drawGradientLines() {
  const run = focusRun();
  const matrix = run && run.layers.grad_norm;
  const layers = matrix ? matrix.layers : [];
  const chosen = (state.gradLayers || defaultLayers(layers)).filter((name) => matrix && matrix.index.has(name));
  fillSelect($('grad-layers'), layers, chosen);
  const traces = chosen.map((name, i) => ({
    type: 'scatter',
    mode: 'lines',
    x: matrix.steps.slice(),
    y: matrix.z[matrix.index.get(name)].slice(),
    name,
    connectgaps: true,
    line: { width: 1.2, color: COLORS[i % COLORS.length] },
    hovertemplate: `%{y:.3g}<br>step %{x}<extra>${name}</extra>`,
  }));
  return Plotly.react($('chart-grad-lines'), traces, layout({
    xaxis: { title: { text: 'step' } },
    yaxis: { title: { text: 'gradient norm' }, type: 'log', exponentformat: 'power' },
    showlegend: true,
  }), PLOT_CONFIG);
}

export function drawHistogram() {
  const run = focusRun();
  const layers = run ? Object.keys(run.hist.layers) : [];
  if (!layers.includes(state.histLayer)) state.histLayer = layers.length ? layers[0] : null;
  fillSelect($('hist-layer'), layers, [state.histLayer]);
  const rows = state.histLayer && run.hist.layers[state.histLayer];
  const traces = [];
  if (rows && rows.steps.length) {
    const bins = run.hist.centres.length;
    const z = [];
    for (let b = 0; b < bins; b += 1) z.push(rows.counts.map((counts) => (counts ? counts[b] : null)));
    traces.push({
      type: 'heatmap',
      x: rows.steps.slice(),
      y: run.hist.centres.slice(),
      z,
      colorscale: 'Viridis',
      colorbar: { title: { text: 'count', side: 'right' }, thickness: 12 },
      hovertemplate: 'step %{x}<br>|g| \u2248 10<sup>%{y:.2f}</sup><br>count %{z}<extra></extra>',
    });
  }
  return Plotly.react($('chart-hist'), traces, layout({
    xaxis: { title: { text: 'step' } },
    yaxis: { title: { text: 'log10 |gradient|' } },
    annotations: traces.length ? [] : [{ text: 'no histograms yet', showarrow: false, xref: 'paper', yref: 'paper', x: 0.5, y: 0.5 }],
  }), PLOT_CONFIG);
}

/** The layer pickers and the activation statistic redraw their own chart. */
export function wireLayerControls() {
  $('grad-layers').addEventListener('change', (event) => {
    state.gradLayers = [...event.target.selectedOptions].map((option) => option.value);
    drawGradientLines();
  });
  $('hist-layer').addEventListener('change', (event) => {
    state.histLayer = event.target.value;
    drawHistogram();
  });
  $('act-stat').addEventListener('change', () => drawActivationHeatmap());
}
