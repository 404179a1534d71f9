/* When to draw: what changed is marked dirty and drawn on the next tick; the heavy heatmaps at
 * most every HEAVY_DRAW_MS. */

import { state } from './state.js';
import { drawFacts, drawStatus, drawRunList } from './runs.js';
import {
  drawLoss, drawLearningRate, drawEpochLoss, drawDice, extendStepCharts, noteLossDrawn,
} from './curves.js';
import {
  drawGradientHeatmap, drawUpdateHeatmap, drawActivationHeatmap, drawGradientLines, drawHistogram,
} from './layers.js';
import { drawAlerts, drawEvents, drawCheckpoints } from './lists.js';
import { drawWatch } from './watch.js';

export const dirty = { all: false, curves: false, epochs: false, layers: false, hist: false, lists: false, watch: false, facts: false, runs: false, steps: new Map() };
let drawTimer = null;
let drawing = false;
let lastHeavyDraw = -Infinity;
const HEAVY_DRAW_MS = 1500;

export function schedule() {
  if (drawTimer === null) drawTimer = setTimeout(drawDirty, 0);
}

export async function drawAll() {
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
