// The workbench page: wires the Data, Network, Jobs, Runs and Deploy panels, polls the
// job list, and shows an error's one-line message.
import { createDataPanel } from './data.js';
import { createDeployPanel } from './deploy.js';
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
const deploy = createDeployPanel({ onError });
const data = createDataPanel({
  onChange: (datasets, chosen) => {
    jobs.setDatasets(datasets, chosen);
    deploy.setDatasets(datasets);
  },
  onError,
});
const network = createNetworkPanel({ onError });
const runs = createRunsPanel({ onError }); // refreshes itself every few seconds

let polling = false;
async function poll() {
  if (polling) return; // a slow answer: skip a beat rather than pile requests up
  polling = true;
  try {
    await deploy.refresh(await jobs.refresh());
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
