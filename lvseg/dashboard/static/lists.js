/* Alerts (vanishing, exploding, dead units, non-finite), events and checkpoints. */

import { el, $, fmt, bytes, focusRun } from './state.js';

const MAX_LISTED = 300;

export function drawAlerts() {
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

export function drawEvents() {
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

export function drawCheckpoints() {
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
