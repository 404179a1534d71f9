// The Data panel: register a dataset folder by path; list the registered datasets.
import { cell, get, post, when } from './api.js';

export function createDataPanel({ onChange, onError }) {
  const form = document.getElementById('data-form');
  const path = document.getElementById('data-path');
  const name = document.getElementById('data-name');
  const body = document.querySelector('#datasets tbody');
  let datasets = [];

  function render() {
    body.replaceChildren(
      ...datasets.map((d) => {
        const row = document.createElement('tr');
        row.append(cell(d.name), cell(d.path), cell(when(d.added)));
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

  return { refresh, get datasets() { return datasets; } };
}
