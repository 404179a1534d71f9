// The workbench page: wires the Data, Network, Training jobs and Runs panels, polls the job list,
// and shows an error's one-line message.
import { createDataPanel } from './data.js';
import { createJobsPanel } from './jobs.js';
import { createNetworkPanel } from './network.js';
import { createRunsPanel } from './runs.js';

const POLL_MS = 1500;
const problems = document.getElementById('problems');

function onError(error) {
  problems.hidden = error === null;
  problems.textContent = error === null ? '' : error.message;
}

const jobs = createJobsPanel({ onError });
const data = createDataPanel({ onChange: jobs.setDatasets, onError });
const network = createNetworkPanel({ onError });
const runs = createRunsPanel({ onError }); // refreshes itself every few seconds

let polling = false;
async function poll() {
  if (polling) return; // a slow answer: skip a beat rather than pile requests up
  polling = true;
  try {
    await jobs.refresh();
  } catch (error) {
    onError(error);
  } finally {
    polling = false;
  }
}

async function start() {
  try {
    const [, models] = await Promise.all([data.refresh(), network.refresh(), runs.refresh()]);
    jobs.setModels(models); // the registry's models, as lvseg model info lists them
  } catch (error) {
    onError(error);
  }
  await poll();
  window.setInterval(poll, POLL_MS);
  window.lvsegWorkbench = { ready: true };
}

start();
