/* The look shared by every chart, and the curves: loss per step and per epoch, validation Dice,
 * learning rate and gradient norm. New steps are appended (Plotly.extendTraces), not redrawn. */

import { COLORS, dash, state, $, last, colorOf, now, selectedRuns, focusRun } from './state.js';

export const PLOT_CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ['lasso2d', 'select2d'] };
const FONT = { family: 'system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif', size: 11, color: '#1d2430' };
const STEP_CHARTS = ['chart-loss', 'chart-lr'];
export const LOSS_COMPONENTS = ['loss_dice', 'loss_ce', 'loss_presence'];

export function layout(extra) {
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

export function drawLoss() {
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

export function drawLearningRate() {
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

export function drawEpochLoss() {
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

export function drawDice() {
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

/** Append new steps of one run to the step charts without redrawing them. */
export function extendStepCharts(run, start) {
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

export function drawnColumns(name) {
  const columns = new Set();
  for (const id of STEP_CHARTS) {
    for (const trace of $(id).data || []) {
      if (trace.meta && trace.meta.run === name) columns.add(trace.meta.column);
    }
  }
  return columns;
}

export function noteLossDrawn() {
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
