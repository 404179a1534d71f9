/* The watch slices: input, prediction against reference and class activation map per epoch,
 * with a slider and a play button. */

import { state, apiUrl, runPath, el, $, fmt, last, focusRun } from './state.js';

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

export function drawWatch() {
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

/** The epoch slider (at its right end: follow the newest epoch) and the play button. */
export function wireWatchControls() {
  $('watch-epoch').addEventListener('input', (event) => {
    const run = focusRun();
    const count = run ? watchEpochs(run).length : 0;
    const index = Number(event.target.value);
    state.watchIndex = index >= count - 1 ? null : index;
    drawWatch();
  });
  $('watch-play').addEventListener('click', togglePlay);
}
