/* The runs: the list in the sidebar, the shown run's facts, its status and the live badge in the
 * top bar, and the problems box (runs that cannot be read, a lost stream). */

import { state, el, $, fmt, colorOf, focusRun } from './state.js';

/** What ticking or clicking a run in the list does: set by wireRunList (the selection lives in
 * live.js, which redraws this list). */
const actions = { toggle: () => {}, focus: () => {} };

export function wireRunList(toggle, focus) {
  actions.toggle = toggle;
  actions.focus = focus;
}

export function showProblem(key, message) {
  state.problems.set(key, message);
  drawProblems();
}

export function clearProblem(key) {
  if (state.problems.delete(key)) drawProblems();
}

function drawProblems() {
  const box = $('problems');
  box.replaceChildren(...[...state.problems.values()].map((message) => el('p', {}, message)));
  box.hidden = state.problems.size === 0;
}

export function drawFacts() {
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

export function drawStatus() {
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

export function drawLive() {
  const live = $('live');
  const run = state.data.get(state.focus);
  const running = Boolean(run && run.detail && run.detail.status === 'running');
  live.className = `live ${state.connected ? 'on' : 'off'}${running ? ' running' : ''}`;
  live.textContent = state.connected ? (running ? 'live' : 'connected') : 'offline, reconnecting';
}

export function drawRunList() {
  const items = state.runs.map((summary) => {
    const checked = state.selected.includes(summary.name);
    const box = el('input', {
      type: 'checkbox',
      'aria-label': `show ${summary.name}`,
      checked,
      onchange: (event) => actions.toggle(summary.name, event.target.checked),
    });
    const name = el('button', { type: 'button', onclick: () => actions.focus(summary.name) },
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
