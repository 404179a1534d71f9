// The Data panel: register a dataset folder by path, generate a phantom (an lvseg data phantom
// job), list the datasets (registered ones, then the workspace's datasets/ folders not
// registered yet), and show the one clicked (dataset.js).
import { cell, get, post, when } from './api.js';
import { createDatasetDetail, watchJob } from './dataset.js';

const $ = (id) => document.getElementById(id);

function phantomArgs() {
  const args = { format: $('phantom-format').value, contrast: $('phantom-contrast').value };
  for (const [id, name] of [['phantom-patients', 'patients'], ['phantom-seed', 'seed']]) {
    const raw = $(id).value.trim();
    if (raw !== '') args[name] = parseInt(raw, 10);
  }
  return args;
}

export function createDataPanel({ onChange, onError }) {
  const form = $('data-form');
  const path = $('data-path');
  const name = $('data-name');
  const body = document.querySelector('#datasets tbody');
  const detail = createDatasetDetail({ onError });
  let datasets = [];

  function render() {
    body.replaceChildren(
      ...datasets.map((d) => {
        const row = document.createElement('tr');
        row.dataset.dataset = d.name;
        row.classList.toggle('selected', detail.shown() === d.name);
        const state = d.registered ? 'registered' : 'in the workspace, not registered';
        row.append(cell(d.name), cell(d.path), cell(when(d.added)), cell(state));
        row.addEventListener('click', () => {
          detail.show(d);
          render();
        });
        return row;
      }),
    );
  }

  async function refresh(chosen = null) {
    datasets = (await get('/api/datasets')).datasets;
    render();
    onChange(datasets, chosen);
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const given = { path: path.value.trim() };
      if (name.value.trim()) given.name = name.value.trim();
      const dataset = await post('/api/datasets', given);
      path.value = '';
      name.value = '';
      await refresh(dataset.path); // the form's dataset: the one just registered
      onError(null);
    } catch (error) {
      onError(error);
    }
  });

  // A phantom is a job: when it is done, its folder in datasets/ is in the list.
  $('phantom-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const status = $('phantom-status');
    try {
      const job = await post('/api/jobs', { kind: 'data-phantom', args: phantomArgs() });
      onError(null);
      const ended = await watchJob(job, status, 'lvseg data phantom');
      if (ended.state === 'done') await refresh();
    } catch (error) {
      status.textContent = '';
      onError(error);
    }
  });

  return { refresh, get datasets() { return datasets; } };
}
