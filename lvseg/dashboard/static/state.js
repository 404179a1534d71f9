/* The page's shared state (what runs are listed, selected and shown, and their data), the JSON
 * API with the page's token, and the small DOM and number helpers every panel uses. */

const TOKEN = new URLSearchParams(location.search).get('token');

export const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2',
  '#17becf', '#bcbd22', '#7f7f7f'];

/** What tests and benchmarks read of the page (see app.js). */
export const dash = window.lvsegDashboard = { pointsPlotted: 0, lastDrawnStep: -1, lastDrawnAt: 0, ready: false, readyAt: null };

export const state = {
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

export function apiUrl(path, params) {
  const query = new URLSearchParams();
  if (TOKEN) query.set('token', TOKEN);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined) query.set(key, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

export function runPath(name, rest) {
  return `api/runs/${encodeURIComponent(name)}${rest || ''}`;
}

export async function getJSON(path, params) {
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

export function el(tag, attributes, ...children) {
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

export function $(id) {
  return document.getElementById(id);
}

export function fmt(value, digits) {
  if (value === null || value === undefined) return '\u2013';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return String(value);
    if (Number.isInteger(value) && Math.abs(value) < 1e6) return String(value);
    return value.toPrecision(digits || 3);
  }
  return String(value);
}

export function bytes(size) {
  if (typeof size !== 'number') return '\u2013';
  const units = ['B', 'kB', 'MB', 'GB'];
  let unit = 0;
  while (size >= 1000 && unit < units.length - 1) {
    size /= 1000;
    unit += 1;
  }
  return `${size.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

export function last(array) {
  return array && array.length ? array[array.length - 1] : null;
}

const runColors = new Map();

/** A run keeps its colour for the life of the page, whatever comes and goes around it. */
export function colorOf(name) {
  if (!runColors.has(name)) runColors.set(name, COLORS[runColors.size % COLORS.length]);
  return runColors.get(name);
}

export function now() {
  return performance.timeOrigin + performance.now();
}

export function selectedRuns() {
  return state.selected.map((name) => state.data.get(name)).filter((run) => run && !run.error);
}

export function focusRun() {
  const run = state.data.get(state.focus);
  return run && !run.error ? run : null;
}
