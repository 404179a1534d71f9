"""The dashboard page in a real headless Chromium, against a server started by start_dashboard:
the curves and the gradient-flow heatmap render, new steps appear without a reload, the page
passes its token on, and nothing is fetched from anywhere but the dashboard itself.

Needs Debian's ``chromium`` (``scripts/install-browser.sh``); skipped with a note where it is
absent. The screenshot of the live run is saved to ``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from synthetic_run import write_run

from lvseg.dashboard.launch import start_dashboard
from lvseg.errors import InvalidInputError
from lvseg.model.registry import build_model
from lvseg.runs.store import RunStore

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


class PageWatch:
    """A page with its console errors and any request that leaves the dashboard recorded."""

    def __init__(self, browser, base_url: str) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors: list[str] = []
        self.outside: list[str] = []
        origin = urlsplit(base_url).netloc
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on(
            "request",
            lambda r: (
                None
                if urlsplit(r.url).netloc == origin or r.url.startswith("data:")
                else self.outside.append(r.url)
            ),
        )

    def ready(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_function(
            "window.lvsegDashboard && window.lvsegDashboard.ready", timeout=20_000
        )

    def value(self, expression: str):
        return self.page.evaluate(expression)


class TrainingRun:
    """``lvseg train --dashboard``'s situation: a real short phantom training run in a
    subprocess, writing its store while the page watches it."""

    def __init__(self, run_dir: Path, data: Path) -> None:
        self.run_dir = run_dir
        config = run_dir.parent / "small.toml"
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            "[model]\noptions = { width = 8 }\n[optim]\nepochs = 60\nbatch_size = 2\n"
            "[monitor]\ninterval = 2\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lvseg", "train", "--data", str(data), "--config", str(config)]
            + ["--out", str(run_dir), "--device", "cpu"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    @property
    def steps_written(self) -> int:
        try:
            with RunStore.open(self.run_dir, readonly=True) as store:
                return store.last_step() or 0
        except InvalidInputError:
            return 0

    def wait_for_steps(self, count: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.steps_written < count:
            if self.process.poll() is not None:
                raise AssertionError(f"training ended early: {self.process.stderr.read()!r}")
            assert time.monotonic() < deadline, "training wrote no steps in time"
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.process.stderr.close()


@pytest.fixture
def training_run(tiny_phantom: Path, tmp_path: Path) -> Iterator[TrainingRun]:
    run = TrainingRun(tmp_path / "runs" / "phantom", tiny_phantom)
    try:
        yield run
    finally:
        run.stop()


def test_dashboard_draws_a_training_run_and_follows_it(browser, training_run) -> None:
    # the folder of runs, focused on the new run, as ``lvseg train --dashboard`` serves it
    dashboard = start_dashboard(training_run.run_dir.parent, focus=training_run.run_dir.name)
    watch = PageWatch(browser, dashboard.url)
    try:
        training_run.wait_for_steps(12)
        watch.ready(dashboard.url)
        watch.page.wait_for_function(
            "document.getElementById('chart-grad-heat').data"
            " && document.getElementById('chart-grad-heat').data.length > 0",
            timeout=20_000,
        )
        loss = watch.value(
            """(() => { const div = document.getElementById('chart-loss');
                 return { traces: div.data.length, points: div.data[0].x.length,
                          svg: Boolean(div.querySelector('.scatterlayer path')) }; })()"""
        )
        assert loss["traces"] >= 1 and loss["points"] >= 12 and loss["svg"], loss
        heat = watch.value(
            """(() => { const div = document.getElementById('chart-grad-heat');
                 const trace = div.data[0];
                 return { type: trace.type, layers: trace.y, steps: trace.x.length,
                          image: Boolean(div.querySelector('.hm image')),
                          ticks: trace.colorbar.ticktext }; })()"""
        )
        model = build_model("lvnet", width=8)
        layers = [name for name, m in model.named_modules() if list(m.parameters(False))]
        assert heat["type"] == "heatmap" and heat["layers"] == layers, heat["layers"][:5]
        assert heat["steps"] >= 2 and heat["image"], "the heatmap was not painted"
        assert all(tick.startswith("10<sup>") for tick in heat["ticks"]), heat["ticks"]

        before = watch.value("window.lvsegDashboard.pointsPlotted")
        step_before = watch.value("window.lvsegDashboard.lastDrawnStep")
        watch.page.wait_for_function(
            f"window.lvsegDashboard.pointsPlotted >= {before + 10}", timeout=30_000
        )
        assert watch.value("window.lvsegDashboard.lastDrawnStep") > step_before
        watch.page.wait_for_function(
            "[...document.querySelectorAll('#watch-grid img')].some(i => i.naturalWidth > 0)",
            timeout=30_000,
        )
        assert "on" in watch.value("document.getElementById('live').className")

        ARTIFACTS.mkdir(exist_ok=True)
        watch.page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        assert watch.errors == [] and watch.outside == []
    finally:
        watch.page.close()
        dashboard.stop()


def test_dashboard_with_a_token_shows_alerts_and_the_selected_checkpoint(
    browser, runs_root: Path
) -> None:
    dashboard = start_dashboard(runs_root, token="page-t0k-sixteen-chars")
    watch = PageWatch(browser, dashboard.url)
    try:
        watch.ready(f"{dashboard.url}&run=alpha")
        watch.page.wait_for_function(
            "document.getElementById('live').classList.contains('on')", timeout=10_000
        )
        assert watch.value("document.getElementById('alert-count').textContent") == "2"
        assert watch.value("document.querySelectorAll('#checkpoints tr.selected').length") == 1
        assert watch.value("document.getElementById('status').textContent") == "finished"
        assert watch.value("document.getElementById('chart-dice').data.length") >= 1
        assert watch.errors == [] and watch.outside == []
    finally:
        watch.page.close()
        dashboard.stop()


def test_dashboard_waits_for_the_run_it_was_started_for(browser, tmp_path: Path) -> None:
    # what ``lvseg train --dashboard`` does: serve the runs folder before the run exists
    (tmp_path / "runs").mkdir()
    dashboard = start_dashboard(tmp_path / "runs", focus="fresh")
    watch = PageWatch(browser, dashboard.url)
    try:
        assert dashboard.url.endswith("/?run=fresh")
        watch.ready(dashboard.url)
        assert "Waiting for run fresh" in watch.value(
            "document.getElementById('run-list').innerText"
        )
        write_run(tmp_path / "runs" / "fresh", epochs=1, steps_per_epoch=10, finished=False)
        watch.page.wait_for_function(
            "document.getElementById('run-title').textContent === 'fresh'"
            " && window.lvsegDashboard.pointsPlotted === 10",
            timeout=10_000,
        )
        assert watch.errors == [] and watch.outside == []
    finally:
        watch.page.close()
        dashboard.stop()
