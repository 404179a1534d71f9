// The Network panel: a model's architecture picture and one-line summary (lvseg model info), and
// two models compared side by side.
import { cell, get, withToken } from './api.js';

const number = (value) => (value === null || value === undefined ? '' : value.toLocaleString('en-US'));

function summary(arch) {
  return (
    `${arch.model}: ${number(arch.parameters)} parameters, ${number(arch.macs)} MACs, ` +
    `receptive field ${number(arch.receptive_field)} px, CAM head ${arch.cam_head || 'none'}`
  );
}

export function createNetworkPanel({ onError }) {
  const form = document.getElementById('network-form');
  const model = document.getElementById('network-model');
  const size = document.getElementById('network-size');
  const width = document.getElementById('network-width');
  const picture = document.getElementById('network-picture');
  const line = document.getElementById('network-summary');
  const compareForm = document.getElementById('compare-form');
  const compareA = document.getElementById('compare-a');
  const compareB = document.getElementById('compare-b');
  const compareBody = document.querySelector('#compare tbody');

  function fill(select, names, chosen) {
    select.replaceChildren(
      ...names.map((name) => {
        const option = document.createElement('option');
        option.value = name;
        option.textContent = name;
        return option;
      }),
    );
    if (names.includes(chosen)) select.value = chosen;
  }

  async function refresh() {
    const names = (await get('/api/models')).models;
    fill(model, names, 'lvnet');
    fill(compareA, names, 'lvnet');
    fill(compareB, names, names.find((name) => name !== 'lvnet'));
    return names;
  }

  function query() {
    const params = new URLSearchParams({ input_size: size.value.trim() || '128' });
    if (width.value.trim()) params.append('option', `width=${width.value.trim()}`);
    return params.toString();
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const path = `/api/models/${encodeURIComponent(model.value)}/architecture`;
    const shown = query();
    try {
      line.textContent = 'running lvseg model info…';
      const arch = await get(`${path}?${shown}`); // first the JSON: its error, if any, is readable
      line.textContent = summary(arch);
      picture.alt = `the architecture of ${arch.model}`;
      picture.src = withToken(`${path}.png?${shown}`);
      picture.hidden = false;
      onError(null);
    } catch (error) {
      line.textContent = '';
      picture.hidden = true;
      onError(error);
    }
  });

  // The network shown is the one to train: the job form takes its model and width (lvseg
  // train --model NAME --model-option width=W).
  document.getElementById('network-train').addEventListener('click', () => {
    document.getElementById('job-model').value = model.value;
    const knob = width.value.trim();
    document.getElementById('job-model-options').value = knob ? `width=${knob}` : '';
    document.getElementById('jobs-panel').scrollIntoView();
  });

  compareForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const params = new URLSearchParams({ a: compareA.value, b: compareB.value });
    params.set('input_size', size.value.trim() || '128');
    try {
      const answer = await get(`/api/models/compare?${params}`);
      compareBody.replaceChildren(
        ...answer.models.map((row) => {
          const tr = document.createElement('tr');
          tr.append(
            cell(row.model),
            cell(number(row.parameters)),
            cell(number(row.macs)),
            cell(row.receptive_field),
            cell(row.layers),
            cell(row.cam_head || 'none'),
          );
          return tr;
        }),
      );
      onError(null);
    } catch (error) {
      onError(error);
    }
  });

  return { refresh };
}
