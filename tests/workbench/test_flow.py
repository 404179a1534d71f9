"""The whole workbench flow in a real headless Chromium, on real lvseg commands: the server as
``lvseg workbench`` runs it (its runner starts real ``python -m lvseg`` jobs), driven only through
the page.

Data (a phantom generated, a dataset registered, its inspection), Network (the architecture
picture of a width-8 LVNet, which the job form then trains), Training (a job whose live curves
update, stopped, resumed to its end; a second job with another learning rate), Compare (the two
runs side by side, their curves overlaid), then Select (the reason shown), Evaluate and Export,
and the exported files found in the workspace.
Screenshots of each stage go to ``test-artifacts/flow-*.png``. Training uses the tiny phantom
and a width-8 LVNet (a recipe file holds the rest of its settings), so the whole flow takes a
couple of minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from lvseg.runs.store import RunStore
from lvseg.workbench.launch import WorkbenchServer

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
README_SHOTS = os.environ.get("LVSEG_README_SHOTS")
"""A folder (docs/images) for the README's pictures of the workbench, taken from this flow:
``LVSEG_README_SHOTS=docs/images .venv/bin/python -m pytest tests/workbench/test_flow.py``."""
TOKEN = "f" * 32
JOB_S = 240  # s: a job's wait (a busy CI machine runs the suite beside it)
JOB_MS = JOB_S * 1000
RECIPE = """
[augment]
p_noise = 0.15
noise_std_range = [0.0, 0.15]

[optim]
batch_size = 8

[runtime]
device = "cpu"
"""


@pytest.fixture
def served(tmp_path, tiny_phantom):
    root = tmp_path / "ws"
    if README_SHOTS is not None:  # the pictures show a workspace path a reader would use
        root = Path("/tmp/workbench")
        shutil.rmtree(root, ignore_errors=True)
    server = WorkbenchServer(root, port=0, token=TOKEN)
    shutil.copytree(tiny_phantom, server.workspace.datasets / "tiny")
    (server.workspace.root / "recipe.toml").write_text(RECIPE)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(60)


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"flow-{name}.png"), full_page=True)


def _readme_shot(page, name: str, selector: str, height: int | None = None) -> None:
    """The README's picture ``name`` (see :data:`README_SHOTS`): the element at ``selector``, or
    ``height`` pixels of the page from its top."""
    if README_SHOTS is None:
        return
    path = str(Path(README_SHOTS) / name)
    element = page.locator(selector)
    element.scroll_into_view_if_needed()
    if height is None:
        element.screenshot(path=path)
        return
    box = element.bounding_box()
    scroll = page.evaluate("window.scrollY")
    clip = {"x": 0, "y": box["y"] + scroll - 12, "width": page.viewport_size["width"]}
    page.screenshot(path=path, full_page=True, clip={**clip, "height": height})


def _api(page, path: str):
    """The workbench's JSON answer to ``path``, fetched by the page (with its token)."""
    script = "async (path) => (await fetch(path, {headers: {Authorization: 'Bearer %s'}})).json()"
    return page.evaluate(script % TOKEN, path)


def _wait_job(page, job_id: int, states=("done",)) -> dict:
    deadline = time.monotonic() + JOB_S
    while (job := _api(page, f"/api/jobs/{job_id}"))["state"] not in states:
        assert time.monotonic() < deadline, f"job {job_id} stayed {job['state']}"
        time.sleep(0.25)
    return job


def _newest_job(page, kind: str) -> dict:
    return next(job for job in _api(page, "/api/jobs")["jobs"] if job["kind"] == kind)


def _monitor(page, selector: str):
    """The monitor iframe's page, once its dashboard is ready."""
    handle = page.wait_for_selector(f"{selector}:not([hidden])")
    frame = handle.content_frame()
    frame.wait_for_function("window.lvsegDashboard && window.lvsegDashboard.ready", timeout=60_000)
    return frame


def test_the_whole_flow_in_a_browser(browser, served) -> None:
    workspace = served.workspace
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{served.url}")
        page.wait_for_function("window.lvsegWorkbench && window.lvsegWorkbench.ready")
        tiny, split = _data(page, workspace)
        _network(page)
        first, second = _training(page, workspace, tiny)
        with RunStore.open(workspace.runs / first, readonly=True) as store:
            meta = store.meta  # the run trained on the split made and read in the Data panel
        assert (meta["train_patients"], meta["val_patients"]) == (split["train"], split["val"])
        _compare(page, first, second)
        _deploy(page, workspace, tiny, (first, second))
        if README_SHOTS is not None:  # the job list, and the resumed run's page with its monitor
            resumed = max(j["id"] for j in _api(page, "/api/jobs")["jobs"] if j["run"] == first)
            page.click(f"#jobs tbody tr[data-job='{resumed}']")
            _monitor(page, "#job-monitor").wait_for_function(
                "window.lvsegDashboard.pointsPlotted > 0", timeout=JOB_MS
            )
            _readme_shot(page, "workbench.png", "#jobs-panel", height=1516)
    finally:
        page.close()
    assert errors == []


def _data(page, workspace) -> tuple[str, dict]:
    """Generate a phantom, register the tiny phantom copied into datasets/, look at its
    inspection and plan, make a split, read it and hand it to the job form."""
    page.fill("#phantom-patients", "2")
    page.click("#phantom-form button[type=submit]")
    phantom = _newest_job(page, "data-phantom")
    assert _wait_job(page, phantom["id"], ("done", "failed"))["state"] == "done"
    page.wait_for_function(
        "document.getElementById('phantom-status').textContent.includes('done')", timeout=JOB_MS
    )
    name = Path(phantom["output"]).name
    page.wait_for_selector(f"#datasets tbody tr[data-dataset='{name}']")
    assert (workspace.root / phantom["output"] / "link.csv").is_file()

    page.fill("#data-path", "datasets/tiny")
    page.fill("#data-name", "tiny")
    page.click("#data-form button[type=submit]")
    page.wait_for_selector("#datasets tbody tr[data-dataset='tiny']")
    tiny = str(workspace.datasets / "tiny")
    assert page.input_value("#job-data") == tiny

    page.click("#datasets tbody tr[data-dataset='tiny']")
    page.wait_for_function(
        "(() => { const m = document.getElementById('dataset-montage');"
        " return !m.hidden && m.complete && m.naturalWidth > 0; })()",
        timeout=JOB_MS,
    )
    page.wait_for_function(
        "document.getElementById('plan-command').textContent.includes('lvseg data plan')",
        timeout=JOB_MS,
    )
    assert "lvseg data inspect" in page.text_content("#inspect-command")
    assert "4" in page.text_content("#dataset-counts")  # the tiny phantom's 4 patients
    page.fill("#split-val", "0.25")  # of 4 patients: 2 train, 1 validates, 1 is held out
    page.fill("#split-test", "0.25")
    page.click("#split-form button[type=submit]")
    split = _newest_job(page, "data-split")
    assert _wait_job(page, split["id"], ("done", "failed"))["state"] == "done"
    row = f"#splits tbody tr[data-split='{Path(split['output']).name}']"
    page.click(row, timeout=JOB_MS)
    page.wait_for_selector("#split-patients:not([hidden])")
    written = json.loads((workspace.root / split["output"]).read_text())
    shown = page.text_content("#split-patients")
    assert all(patient in shown for patient in written["train"] + written["val"])
    assert [len(written[part]) for part in ("train", "val", "test")] == [2, 1, 1]
    page.click("#split-train")  # the job form takes this split's dataset and file
    assert (page.input_value("#job-data"), page.input_value("#job-val")) == (tiny, "")
    assert page.input_value("#job-split") == split["output"]  # splits/split-0002.json
    _shot(page, "1-data")
    _readme_shot(page, "workbench-data.png", "#dataset-detail")
    return tiny, written


def _network(page) -> None:
    assert page.input_value("#network-size") == "64"  # the tiny phantom's planned crop
    page.select_option("#network-model", "lvnet")
    page.fill("#network-width", "8")
    page.click("#network-form button[type=submit]")
    page.wait_for_function(
        "(() => { const p = document.getElementById('network-picture');"
        " return !p.hidden && p.complete && p.naturalWidth > 0; })()",
        timeout=120_000,
    )
    assert "receptive field" in page.text_content("#network-summary")
    assert "input_size=64" in page.get_attribute("#network-picture", "src")
    _shot(page, "2-network")
    page.click("#network-train")  # the network shown is the one the job form trains
    assert page.input_value("#job-model") == "lvnet"
    assert page.input_value("#job-model-options") == "width=8"


def _training(page, workspace, tiny: str) -> tuple[str, str]:
    """A job watched live, stopped, resumed to its end; a second with another learning rate."""
    assert page.input_value("#job-data") == tiny  # from the split, in _data
    page.fill("#job-epochs", "12")
    page.fill("#job-config", "recipe.toml")
    page.click("#job-form button[type=submit]")
    first = _newest_job(page, "train")
    assert first["args"]["model_option"] == ["width=8"]
    monitor = _monitor(page, "#job-monitor")
    monitor.wait_for_function("window.lvsegDashboard.pointsPlotted > 0", timeout=JOB_MS)
    plotted = monitor.evaluate("window.lvsegDashboard.pointsPlotted")
    monitor.wait_for_function(f"window.lvsegDashboard.pointsPlotted > {plotted}", timeout=JOB_MS)
    page.click("#job-stop")  # while it trains: its curves grew under our eyes
    stopped = _wait_job(page, first["id"], ("stopped", "done", "failed", "interrupted"))
    assert stopped["state"] == "stopped", stopped
    _shot(page, "3-stopped")
    page.click("#job-resume")
    resumed = _newest_job(page, "train")
    assert resumed["run"] == first["run"] and resumed["resume"]
    assert _wait_job(page, resumed["id"], ("done", "failed"))["state"] == "done"
    config = json.loads((workspace.runs / first["run"] / "config.json").read_text())
    assert config["model"] == {**config["model"], "name": "lvnet", "options": {"width": 8}}
    run = _api(page, f"/api/runs/{first['run']}")
    assert run["epochs"] == 12 and [row["epoch"] for row in run["per_epoch"]] == list(range(1, 13))

    page.fill("#job-epochs", "3")
    page.fill("#job-lr", "0.01")  # the other knob
    page.click("#job-form button[type=submit]")
    second = _newest_job(page, "train")
    assert second["args"]["lr"] == 0.01 and second["run"] != first["run"]
    assert _wait_job(page, second["id"], ("done", "failed"))["state"] == "done"
    command = _api(page, f"/api/jobs/{second['id']}/command")["command"]
    assert " -m lvseg train " in command and "--lr=0.01" in command
    return first["run"], second["run"]


def _compare(page, first: str, second: str) -> None:
    page.click("#runs-refresh")
    for run in (first, second):  # the panel redraws its rows as it refreshes: a locator
        page.locator(f"#runs tbody tr[data-run='{run}'] input.run-pick").check()
    page.click("#runs-compare-button")
    page.wait_for_selector("#runs-comparison:not([hidden])")
    header = page.text_content("#runs-compare thead")
    assert first in header and second in header
    monitor = _monitor(page, "#runs-monitor")
    monitor.wait_for_function(
        "([a, b]) => { const names = document.getElementById('chart-loss').data.map(t => t.name);"
        " return names.some(n => n.includes(a)) && names.some(n => n.includes(b)); }",
        arg=[first, second],
        timeout=60_000,
    )
    page.locator("#runs-panel").scroll_into_view_if_needed()
    _shot(page, "4-compare")


def _deploy(page, workspace, tiny: str, runs: tuple[str, str]) -> None:
    for run in runs:
        page.locator(f"#select-runs input[value='runs/{run}']").check()
    page.select_option("#select-prefer", "dice")
    page.click("#select-submit")
    page.wait_for_selector("#select-result:not([hidden])", timeout=JOB_MS)
    reason = page.text_content("#select-reason").strip()
    chosen_run = next(r for r in runs if (workspace.runs / r / "selected.json").exists())
    written = json.loads((workspace.runs / chosen_run / "selected.json").read_text())
    assert reason and reason in written["reason"] or written["reason"] in reason

    page.select_option("#evaluate-data", tiny)
    page.select_option("#evaluate-split", "all")
    page.fill("#evaluate-limit", "4")
    page.click("#evaluate-submit")
    page.wait_for_selector("#evaluate-result:not([hidden])", timeout=JOB_MS)
    evaluation = _newest_job(page, "evaluate")
    assert (workspace.root / evaluation["output"] / "report.html").is_file()

    page.select_option("#export-format", "onnx")
    # the card quotes the evaluation just made, of the same run and checkpoint
    page.wait_for_function(
        "(want) => document.getElementById('export-evaluation').value === want",
        arg=evaluation["output"],
    )
    page.click("#export-submit")
    page.wait_for_selector("#export-result:not([hidden])", timeout=JOB_MS)
    export = _newest_job(page, "export")
    folder = workspace.root / export["output"]
    files = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))  # a marker
    card = json.loads((folder / "model-card.json").read_text())
    quoted = workspace.root / evaluation["output"] / "metrics.json"
    assert card["evaluation"]["file"] == str(quoted)
    assert "No `lvseg evaluate` output" not in page.text_content("#export-card")
    assert any(name.endswith(".onnx") for name in files), files
    links = page.eval_on_selector_all("#export-files a", "as => as.map(a => a.textContent)")
    assert {name for name in files if (folder / name).is_file()} <= {
        link.split()[0] for link in links
    }, links
    _shot(page, "5-deploy")
    _readme_shot(page, "workbench-deploy.png", "#deploy-panel")
