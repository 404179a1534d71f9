/* lvseg dashboard: loads each run once through the JSON API, then follows the server's event
 * stream and appends only what is new (Plotly.extendTraces for step curves, Plotly.react with a
 * new data revision for the rest). Plain ES2017, no build step, nothing fetched from elsewhere.
 *
 * For tests and benchmarks, window.lvsegDashboard holds: pointsPlotted (points in the training
 * loss chart), lastDrawnStep (the shown run's last step drawn there), lastDrawnAt (epoch milliseconds of that
 * draw), ready (the first full draw is done) and readyAt (milliseconds from navigation to ready).
 */
'use strict';

(function () {
  const TOKEN = new URLSearchParams(location.search).get('token');
  const LAYER_STATS = ['grad_norm', 'weight_norm', 'update_ratio', 'act_mean', 'act_std', 'act_zero_fraction'];
  const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2',
    '#17becf', '#bcbd22', '#7f7f7f'];
  const PLOT_CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ['lasso2d', 'select2d'] };
  const FONT = { family: 'system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif', size: 11, color: '#1d2430' };
  const STEP_CHARTS = ['chart-loss', 'chart-lr'];
  const LOSS_COMPONENTS = ['loss_dice', 'loss_ce', 'loss_presence'];
  const MAX_LISTED = 300;

  const dash = window.lvsegDashboard = { pointsPlotted: 0, lastDrawnStep: -1, lastDrawnAt: 0, ready: false, readyAt: null };

  const state = {
    target: '',
    runs: [], // summaries from the server
    selected: [], // names whose curves are shown
    focus: null, // the run whose details are shown
    data: new Map(), // name -> run data
    stream: null,
    connected: false,
    retry: null,
    revision: 0,
    gradLayers: null, // null: automatic choice
    histLayer: null,
    watchIndex: null, // null: follow the newest epoch
    playing: null,
    problems: new Map(),
    pending: [], // runs named in the URL that do not exist yet: shown as soon as they appear
  };

  // ------------------------------------------------------------------------------- plumbing

  function apiUrl(path, params) {
    const query = new URLSearchParams();
    if (TOKEN) query.set('token', TOKEN);
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined) query.set(key, String(value));
    }
    const text = query.toString();
    return text ? `${path}?${text}` : path;
  }

  function runPath(name, rest) {
    return `api/runs/${encodeURIComponent(name)}${rest || ''}`;
  }

  async function getJSON(path, params) {
    const response = await fetch(apiUrl(path, params), { cache: 'no-store' });
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (!response.ok) {
      throw new Error((body && body.error) || `${path}: HTTP ${response.status}`);
    }
    return body;
  }

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function $(id) {
    return document.getElementById(id);
  }

  function fmt(value, digits) {
    if (value === null || value === undefined) return '\u2013';
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) return String(value);
      if (Number.isInteger(value) && Math.abs(value) < 1e6) return String(value);
      return value.toPrecision(digits || 3);
    }
    return String(value);
  }

  function bytes(size) {
    if (typeof size !== 'number') return '\u2013';
    const units = ['B', 'kB', 'MB', 'GB'];
    let unit = 0;
    while (size >= 1000 && unit < units.length - 1) {
      size /= 1000;
      unit += 1;
    }
    return `${size.toFixed(unit ? 1 : 0)} ${units[unit]}`;
  }

  function last(array) {
    return array && array.length ? array[array.length - 1] : null;
  }

  const runColors = new Map();

  /** A run keeps its colour for the life of the page, whatever comes and goes around it. */
  function colorOf(name) {
    if (!runColors.has(name)) runColors.set(name, COLORS[runColors.size % COLORS.length]);
    return runColors.get(name);
  }

  function now() {
    return performance.timeOrigin + performance.now();
  }

  // ------------------------------------------------------------------------------- run data

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

  function emptyMatrix() {
    return { layers: [], index: new Map(), steps: [], z: [] };
  }

  /** Append the rows of a columnar delta whose key (step or epoch) is new; returns the index
   * of the first row appended, or -1 if none was. */
  function appendColumns(target, delta, key) {
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
  function mergeMatrix(matrix, delta) {
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

  function mergeHistograms(hist, delta) {
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

  function mergeEvents(run, events) {
    const lastId = run.events.length ? last(run.events).id : -Infinity;
    for (const event of events) if (event.id > lastId) run.events.push(event);
  }

  function mergeWatch(run, frames) {
    for (const frame of frames) run.watch.set(`${frame.epoch}/${frame.slice}/${frame.kind}`, frame);
  }

  function cursorsOf(run) {
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

  async function loadRun(name) {
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

  // ------------------------------------------------------------------------------- problems

  function showProblem(key, message) {
    state.problems.set(key, message);
    drawProblems();
  }

  function clearProblem(key) {
    if (state.problems.delete(key)) drawProblems();
  }

  function drawProblems() {
    const box = $('problems');
    box.replaceChildren(...[...state.problems.values()].map((message) => el('p', {}, message)));
    box.hidden = state.problems.size === 0;
  }

  // ------------------------------------------------------------------------------- charts

  function layout(extra) {
    return Object.assign(
      {
        font: FONT,
        margin: { l: 56, r: 16, t: 28, b: 40 },
        paper_bgcolor: '#ffffff',
        plot_bgcolor: '#ffffff',
        legend: { orientation: 'h', x: 0, y: 1.01, yanchor: 'bottom', font: { size: 10 } },
        hovermode: 'closest',
        uirevision: `${state.selected.join('|')}#${state.focus}`,
        datarevision: state.revision,
      },
      extra,
    );
  }

  function selectedRuns() {
    return state.selected.map((name) => state.data.get(name)).filter((run) => run && !run.error);
  }

  function focusRun() {
    const run = state.data.get(state.focus);
    return run && !run.error ? run : null;
  }

  function stepTrace(run, column, extra) {
    return Object.assign(
      {
        type: 'scatter',
        mode: 'lines',
        x: run.steps.step.slice(),
        y: (run.steps[column] || []).slice(),
        name: `${run.name} ${column}`,
        meta: { run: run.name, column, kind: column === 'loss' ? 'step-loss' : 'step' },
        line: { width: 1.2, color: colorOf(run.name) },
        hovertemplate: `${column} %{y:.4g}<br>step %{x}<extra>${run.name}</extra>`,
      },
      extra,
    );
  }

  function drawLoss() {
    const traces = [];
    for (const run of selectedRuns()) {
      traces.push(stepTrace(run, 'loss'));
      if (run.name === state.focus) {
        LOSS_COMPONENTS.filter((c) => c in run.steps).forEach((column, i) => {
          traces.push(stepTrace(run, column, {
            visible: 'legendonly',
            line: { width: 1, color: COLORS[(i + 3) % COLORS.length], dash: 'dot' },
          }));
        });
      }
    }
    return Plotly.react($('chart-loss'), traces, layout({
      xaxis: { title: { text: 'step' } },
      yaxis: { title: { text: 'loss' } },
      showlegend: traces.length > 1,
    }), PLOT_CONFIG);
  }

  function drawLearningRate() {
    const run = focusRun();
    const traces = [];
    if (run) {
      if ('lr' in run.steps) traces.push(stepTrace(run, 'lr', { name: 'learning rate', line: { width: 1.5, color: '#1f5fbf' } }));
      if ('grad_norm' in run.steps) {
        traces.push(stepTrace(run, 'grad_norm', {
          name: 'gradient norm', yaxis: 'y2', line: { width: 1, color: '#c05621' },
        }));
      }
    }
    return Plotly.react($('chart-lr'), traces, layout({
      xaxis: { title: { text: 'step' } },
      // dtick 1 on a log axis: one label per power of ten, never a crowd of minor labels
      yaxis: { title: { text: 'learning rate' }, type: 'log', exponentformat: 'power', dtick: 1 },
      yaxis2: { title: { text: 'gradient norm' }, type: 'linear', rangemode: 'tozero', tickformat: '.2~f', nticks: 4, overlaying: 'y', side: 'right', showgrid: false },
      margin: { l: 60, r: 60, t: 28, b: 40 },
    }), PLOT_CONFIG);
  }

  function epochTrace(run, column, extra) {
    return Object.assign({
      type: 'scatter',
      mode: 'lines+markers',
      x: run.epochs.epoch.slice(),
      y: (run.epochs[column] || []).slice(),
      name: `${run.name} ${column}`,
      line: { width: 1.5, color: colorOf(run.name) },
      marker: { size: 5 },
      hovertemplate: `${column} %{y:.4g}<br>epoch %{x}<extra>${run.name}</extra>`,
    }, extra);
  }

  function epochAxis() {
    const epochs = Math.max(0, ...selectedRuns().map((run) => run.epochs.epoch.length));
    return { title: { text: 'epoch' }, dtick: epochs <= 12 ? 1 : undefined };
  }

  function drawEpochLoss() {
    const traces = [];
    for (const run of selectedRuns()) {
      if ('train_loss' in run.epochs) traces.push(epochTrace(run, 'train_loss'));
      if ('val_loss' in run.epochs) traces.push(epochTrace(run, 'val_loss', { line: { width: 1.5, dash: 'dash', color: colorOf(run.name) } }));
    }
    return Plotly.react($('chart-epoch-loss'), traces, layout({
      xaxis: epochAxis(),
      yaxis: { title: { text: 'loss' } },
    }), PLOT_CONFIG);
  }

  function drawDice() {
    const traces = [];
    for (const run of selectedRuns()) {
      if (!('val_dice' in run.epochs)) continue;
      const dice = run.epochs.val_dice;
      const spread = run.epochs.val_dice_std;
      if (spread && run.name === state.focus) {
        const x = run.epochs.epoch;
        const band = (sign) => dice.map((d, i) => (d === null || spread[i] === null ? null : d + sign * spread[i]));
        traces.push({ type: 'scatter', mode: 'lines', x: x.slice(), y: band(-1), line: { width: 0 }, hoverinfo: 'skip', showlegend: false });
        traces.push({
          type: 'scatter', mode: 'lines', x: x.slice(), y: band(1), line: { width: 0 }, fill: 'tonexty',
          fillcolor: 'rgba(31, 95, 191, 0.12)', hoverinfo: 'skip', showlegend: false,
        });
      }
      traces.push(epochTrace(run, 'val_dice'));
    }
    return Plotly.react($('chart-dice'), traces, layout({
      xaxis: epochAxis(),
      yaxis: { title: { text: 'Dice' }, rangemode: 'tozero' },
    }), PLOT_CONFIG);
  }

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

  function drawGradientHeatmap() {
    const run = focusRun();
    return heatmap($('chart-grad-heat'), run && run.layers.grad_norm, { log: true, label: 'grad norm' });
  }

  function drawUpdateHeatmap() {
    const run = focusRun();
    return heatmap($('chart-update-heat'), run && run.layers.update_ratio, {
      log: true, label: 'update ratio', colorscale: 'RdBu', zmid: -3,
    });
  }

  function drawActivationHeatmap() {
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

  function drawGradientLines() {
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

  function drawHistogram() {
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

  /** Append new steps of one run to the step charts without redrawing them. */
  function extendStepCharts(run, start) {
    const work = [];
    for (const id of STEP_CHARTS) {
      const div = $(id);
      if (!div.data) continue;
      const indices = [];
      const xs = [];
      const ys = [];
      div.data.forEach((trace, i) => {
        if (!trace.meta || trace.meta.run !== run.name) return;
        indices.push(i);
        xs.push(run.steps.step.slice(start));
        ys.push((run.steps[trace.meta.column] || []).slice(start));
      });
      if (indices.length) work.push(Plotly.extendTraces(div, { x: xs, y: ys }, indices));
    }
    return Promise.all(work);
  }

  function drawnColumns(name) {
    const columns = new Set();
    for (const id of STEP_CHARTS) {
      for (const trace of $(id).data || []) {
        if (trace.meta && trace.meta.run === name) columns.add(trace.meta.column);
      }
    }
    return columns;
  }

  function noteLossDrawn() {
    let points = 0;
    let focusStep = null;
    let anyStep = -1;
    for (const trace of $('chart-loss').data || []) {
      if (!trace.meta || trace.meta.kind !== 'step-loss') continue;
      points += trace.x.length;
      const step = last(trace.x);
      if (step === null) continue;
      anyStep = Math.max(anyStep, step);
      if (trace.meta.run === state.focus) focusStep = step;
    }
    dash.pointsPlotted = points;
    dash.lastDrawnStep = focusStep !== null ? focusStep : anyStep;
    dash.lastDrawnAt = now();
  }

  // ------------------------------------------------------------------------------- lists

  function drawAlerts() {
    const run = focusRun();
    const alerts = run ? run.events.filter((event) => event.kind === 'alert') : [];
    $('alerts').classList.toggle('active', alerts.length > 0);
    $('alert-count').textContent = String(alerts.length);
    const items = alerts.slice(-MAX_LISTED).reverse().map((event) => {
      const data = event.data || {};
      return el('li', {},
        el('span', { class: `rule ${data.rule || ''}` }, data.rule || 'alert'),
        el('b', { class: 'mono' }, data.layer || ''),
        ` step ${fmt(event.step)}`,
        event.epoch !== null ? ` (epoch ${event.epoch})` : '',
        ` value ${fmt(data.value)}`,
        data.threshold !== undefined ? ` threshold ${fmt(data.threshold)}` : '',
        el('div', { class: 'quiet' }, event.message));
    });
    if (!items.length) items.push(el('li', { class: 'quiet' }, run ? 'No alerts: gradients and activations look healthy.' : 'No run shown.'));
    $('alert-list').replaceChildren(...items);
  }

  function drawEvents() {
    const run = focusRun();
    const events = run ? run.events.filter((event) => event.kind !== 'alert') : [];
    const items = events.slice(-MAX_LISTED).reverse().map((event) => el('li', {},
      el('span', { class: 'badge' }, event.kind),
      ' ',
      new Date(event.time * 1000).toLocaleTimeString(),
      event.step !== null ? ` \u00b7 step ${event.step}` : '',
      event.epoch !== null ? ` \u00b7 epoch ${event.epoch}` : '',
      el('div', {}, event.message)));
    if (!items.length) items.push(el('li', { class: 'quiet' }, 'No events.'));
    $('event-list').replaceChildren(...items);
  }

  function drawCheckpoints() {
    const run = focusRun();
    const rows = (run && run.detail && run.detail.checkpoints) || [];
    const body = $('checkpoints').tBodies[0];
    const trs = rows.map((row) => {
      const marks = `${row.best ? '\u2605' : ''}${row.selected ? ' \u2713' : ''}`;
      const classes = [row.best ? 'best' : '', row.selected ? 'selected' : ''].join(' ').trim();
      return el('tr', { class: classes || null, title: row.selected ? 'selected for deployment' : null },
        el('td', { class: 'marks' }, marks),
        el('td', {}, row.kind),
        el('td', {}, fmt(row.epoch)),
        el('td', {}, fmt(row.step)),
        el('td', {}, fmt(row.metrics && row.metrics.val_dice, 4)),
        el('td', {}, typeof row.parameters === 'number' ? row.parameters.toLocaleString() : '\u2013'),
        el('td', {}, bytes(row.size_bytes)),
        el('td', { class: 'mono' }, row.path, row.finite === false ? ' (non-finite weights)' : ''));
    });
    if (!trs.length) trs.push(el('tr', {}, el('td', { colspan: '8', class: 'quiet' }, 'No checkpoints yet.')));
    body.replaceChildren(...trs);
  }

  function drawFacts() {
    const run = focusRun();
    const facts = $('run-facts');
    if (!run || !run.detail) {
      facts.replaceChildren();
      $('config').textContent = '';
      return;
    }
    const detail = run.detail;
    const meta = detail.meta || {};
    const pairs = [
      ['model', detail.summary.model],
      ['device', meta.device],
      ['parameters', typeof meta.parameters === 'number' ? meta.parameters.toLocaleString() : meta.parameters],
      ['host', meta.host],
      ['created', meta.created ? new Date(meta.created * 1000).toLocaleString() : null],
      ['steps', run.steps.step.length],
      ['epochs', run.epochs.epoch.length],
      ['best Dice', detail.summary.best_val_dice === null ? null : `${fmt(detail.summary.best_val_dice, 4)} (epoch ${detail.summary.best_epoch})`],
      ['message', detail.status_message],
    ].filter(([, value]) => value !== null && value !== undefined && value !== '');
    facts.replaceChildren(...pairs.flatMap(([key, value]) => [el('dt', {}, key), el('dd', {}, value)]));
    $('config').textContent = JSON.stringify({ config: detail.config, meta, selected: detail.selected }, null, 2);
  }

  function drawStatus() {
    const run = state.data.get(state.focus);
    const summary = state.runs.find((item) => item.name === state.focus);
    let status = 'no run';
    if (run && run.detail) status = run.detail.status;
    else if (summary) status = summary.status;
    if (run && run.error) status = 'corrupt';
    const badge = $('status');
    badge.textContent = status;
    badge.className = `badge ${status}`;
    $('run-title').textContent = state.focus || '';
    document.title = state.focus ? `${state.focus} \u00b7 lvseg dashboard` : 'lvseg dashboard';
    drawLive();
  }

  function drawLive() {
    const live = $('live');
    const run = state.data.get(state.focus);
    const running = Boolean(run && run.detail && run.detail.status === 'running');
    live.className = `live ${state.connected ? 'on' : 'off'}${running ? ' running' : ''}`;
    live.textContent = state.connected ? (running ? 'live' : 'connected') : 'offline, reconnecting';
  }

  function drawRunList() {
    const items = state.runs.map((summary) => {
      const checked = state.selected.includes(summary.name);
      const box = el('input', {
        type: 'checkbox',
        'aria-label': `show ${summary.name}`,
        checked,
        onchange: (event) => toggleRun(summary.name, event.target.checked),
      });
      const name = el('button', { type: 'button', onclick: () => focusOn(summary.name) },
        el('span', { class: 'swatch', style: `background:${colorOf(summary.name)}` }), summary.name);
      const dice = summary.best_val_dice === null ? '' : ` \u00b7 Dice ${fmt(summary.best_val_dice, 3)}`;
      const meta = el('div', { class: 'run-meta' },
        el('span', { class: `badge ${summary.status}` }, summary.status),
        ` ${summary.epochs} epochs${dice}`,
        summary.selected ? ' \u00b7 \u2713 selected' : '',
        summary.error ? el('div', {}, summary.error) : null);
      return el('li', { class: summary.name === state.focus ? 'focus' : null }, box, name, meta);
    });
    for (const name of state.pending) items.push(el('li', { class: 'quiet' }, `Waiting for run ${name} to start\u2026`));
    if (!items.length) items.push(el('li', { class: 'quiet' }, `No runs in ${state.target} yet.`));
    $('run-list').replaceChildren(...items);
  }

  // ------------------------------------------------------------------------------- watch slices

  function watchEpochs(run) {
    const epochs = new Set();
    for (const frame of run.watch.values()) if (frame.kind !== 'image') epochs.add(frame.epoch);
    return [...epochs].sort((a, b) => a - b);
  }

  function caption(frame) {
    if (!frame) return 'not recorded';
    const data = frame.data || {};
    if (frame.kind === 'image') {
      const patient = data.patient_id !== undefined ? data.patient_id : data.patient;
      const slice = data.slice_index !== undefined ? data.slice_index : data.slice_id;
      return ['input', patient !== undefined ? `patient ${patient}` : '', slice !== undefined ? `slice ${slice}` : '', data.phase || '']
        .filter(Boolean).join(' \u00b7 ');
    }
    if (frame.kind === 'prediction') {
      const qc = data.predicted_dice !== undefined ? ` \u00b7 QC ${fmt(data.predicted_dice, 2)}` : '';
      return `Dice ${fmt(data.dice, 3)}${data.presence !== undefined ? ` \u00b7 presence ${fmt(data.presence, 2)}` : ''}${qc}`;
    }
    if (frame.kind === 'cam') {
      return `CAM ${fmt(data.vmin, 2)} \u2026 ${fmt(data.vmax, 2)}${data.colormap ? ` (${data.colormap})` : ''}`;
    }
    return frame.kind;
  }

  function drawWatch() {
    const run = focusRun();
    const grid = $('watch-grid');
    const slider = $('watch-epoch');
    const label = $('watch-label');
    if (!run || !run.watch.size) {
      grid.replaceChildren(el('p', { class: 'quiet' }, 'No watch pictures yet.'));
      grid.dataset.run = '';
      slider.max = '0';
      slider.disabled = true;
      label.textContent = 'no pictures yet';
      return;
    }
    const epochs = watchEpochs(run);
    slider.disabled = epochs.length < 2;
    slider.max = String(Math.max(0, epochs.length - 1));
    const index = state.watchIndex === null ? epochs.length - 1 : Math.min(state.watchIndex, epochs.length - 1);
    slider.value = String(Math.max(0, index));
    const epoch = epochs.length ? epochs[Math.max(0, index)] : null;
    label.textContent = epoch === null ? 'inputs only' : `epoch ${epoch} of ${last(epochs)}`;
    const slices = [...new Set([...run.watch.values()].map((frame) => frame.slice))].sort((a, b) => a - b);
    if (grid.dataset.run !== run.name || grid.dataset.slices !== slices.join(',')) {
      grid.dataset.run = run.name;
      grid.dataset.slices = slices.join(',');
      grid.replaceChildren(...slices.map((slice) => el('div', { class: 'watch-slice', 'data-slice': slice },
        el('h3', {}, `slice ${slice}`),
        el('div', { class: 'watch-row' }, ...['image', 'prediction', 'cam'].map((kind) => el('figure', { 'data-kind': kind },
          el('img', { alt: `${kind} of slice ${slice}` }), el('figcaption', {})))))));
    }
    for (const slice of slices) {
      for (const kind of ['image', 'prediction', 'cam']) {
        const figure = grid.querySelector(`.watch-slice[data-slice="${slice}"] figure[data-kind="${kind}"]`);
        const frame = run.watch.get(`${kind === 'image' ? 0 : epoch}/${slice}/${kind}`);
        const image = figure.querySelector('img');
        const source = frame
          ? apiUrl(runPath(run.name, `/watch/${frame.epoch}/${slice}/${kind}.png`), { v: Math.round(frame.time * 1000) })
          : '';
        if (source && image.getAttribute('src') !== source) image.setAttribute('src', source);
        image.style.visibility = source ? 'visible' : 'hidden';
        figure.querySelector('figcaption').textContent = caption(frame);
      }
    }
  }

  function togglePlay() {
    const button = $('watch-play');
    if (state.playing) {
      clearInterval(state.playing);
      state.playing = null;
      button.textContent = '\u25b6 play';
      return;
    }
    const run = focusRun();
    if (!run) return;
    const count = watchEpochs(run).length;
    if (count < 2) return;
    if (state.watchIndex === null || state.watchIndex >= count - 1) state.watchIndex = 0;
    button.textContent = '\u23f8 pause';
    state.playing = setInterval(() => {
      const total = watchEpochs(focusRun() || run).length;
      if (state.watchIndex >= total - 1) {
        state.watchIndex = null;
        togglePlay();
      } else {
        state.watchIndex += 1;
      }
      drawWatch();
    }, 700);
    drawWatch();
  }

  // ------------------------------------------------------------------------------- drawing

  const dirty = { all: false, curves: false, epochs: false, layers: false, hist: false, lists: false, watch: false, facts: false, runs: false, steps: new Map() };
  let drawTimer = null;
  let drawing = false;
  let lastHeavyDraw = -Infinity;
  const HEAVY_DRAW_MS = 1500;

  function schedule() {
    if (drawTimer === null) drawTimer = setTimeout(drawDirty, 0);
  }

  async function drawAll() {
    state.revision += 1;
    drawRunList();
    drawStatus();
    drawFacts();
    drawAlerts();
    drawEvents();
    drawCheckpoints();
    drawWatch();
    await Promise.all([
      drawLoss(), drawLearningRate(), drawEpochLoss(), drawDice(), drawGradientHeatmap(),
      drawGradientLines(), drawHistogram(), drawUpdateHeatmap(), drawActivationHeatmap(),
    ]);
    noteLossDrawn();
  }

  async function drawDirty() {
    drawTimer = null;
    if (drawing) {
      schedule();
      return;
    }
    drawing = true;
    try {
      state.revision += 1;
      if (dirty.all) {
        dirty.all = false;
        dirty.steps.clear();
        Object.assign(dirty, { curves: false, epochs: false, layers: false, hist: false, lists: false, watch: false, facts: false, runs: false });
        await drawAll();
        return;
      }
      const work = [];
      if (dirty.curves) {
        dirty.steps.clear();
        work.push(drawLoss(), drawLearningRate());
      } else {
        for (const [name, start] of dirty.steps) {
          const run = state.data.get(name);
          if (run) work.push(extendStepCharts(run, start));
        }
        dirty.steps.clear();
      }
      if (dirty.epochs) work.push(drawEpochLoss(), drawDice());
      // The heatmaps are redrawn whole: at most every HEAVY_DRAW_MS, the rest waits its turn.
      const wait = lastHeavyDraw + HEAVY_DRAW_MS - performance.now();
      if ((dirty.layers || dirty.hist) && wait > 0) {
        setTimeout(schedule, wait);
      } else if (dirty.layers || dirty.hist) {
        lastHeavyDraw = performance.now();
        if (dirty.layers) work.push(drawGradientHeatmap(), drawGradientLines(), drawUpdateHeatmap(), drawActivationHeatmap());
        if (dirty.hist) work.push(drawHistogram());
        dirty.layers = false;
        dirty.hist = false;
      }
      if (dirty.lists) {
        drawAlerts();
        drawEvents();
      }
      if (dirty.watch) drawWatch();
      if (dirty.facts) {
        drawFacts();
        drawCheckpoints();
        drawStatus();
      }
      if (dirty.runs) drawRunList();
      Object.assign(dirty, { curves: false, epochs: false, lists: false, watch: false, facts: false, runs: false });
      await Promise.all(work);
      noteLossDrawn();
    } catch (error) {
      console.error(error);
    } finally {
      drawing = false;
    }
  }

  // ------------------------------------------------------------------------------- live stream

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

  function openStream() {
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

  // ------------------------------------------------------------------------------- selection

  function newestRun(runs) {
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

  function toggleRun(name, on) {
    const names = on ? [...state.selected, name] : state.selected.filter((item) => item !== name);
    const ordered = state.runs.map((run) => run.name).filter((item) => names.includes(item));
    select(ordered, state.focus === name && !on ? ordered[0] : state.focus);
  }

  function focusOn(name) {
    const names = state.selected.includes(name) ? state.selected : state.runs.map((run) => run.name).filter((item) => item === name || state.selected.includes(item));
    select(names, name);
  }

  // ------------------------------------------------------------------------------- start

  function wireControls() {
    $('grad-layers').addEventListener('change', (event) => {
      state.gradLayers = [...event.target.selectedOptions].map((option) => option.value);
      drawGradientLines();
    });
    $('hist-layer').addEventListener('change', (event) => {
      state.histLayer = event.target.value;
      drawHistogram();
    });
    $('act-stat').addEventListener('change', () => drawActivationHeatmap());
    $('watch-epoch').addEventListener('input', (event) => {
      const run = focusRun();
      const count = run ? watchEpochs(run).length : 0;
      const index = Number(event.target.value);
      state.watchIndex = index >= count - 1 ? null : index;
      drawWatch();
    });
    $('watch-play').addEventListener('click', togglePlay);
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
})();
