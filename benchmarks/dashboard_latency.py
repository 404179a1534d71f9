"""Dashboard latency: how long a row written to the run store takes to be drawn in the page, and
how long the page takes to load a run of 10,000 logged steps, in a real headless Chromium.

1. **Write to draw.** The dashboard serves a small live run (started by ``start_dashboard``, a
   subprocess, as ``lvseg train --dashboard`` does). A step row with a known step number is
   written to the store; the page's ``window.lvsegDashboard.lastDrawnStep`` is awaited and its
   ``lastDrawnAt`` (epoch milliseconds, taken right after the chart was extended) minus the write
   time is the latency. Writes are spaced at random over the stream's 0.5 s poll, so the figure
   includes the wait for the next poll. Median and 95th percentile of ``--repeats`` writes.
2. **Page load.** A run shaped like LVNet training: ``--steps`` step rows, layer statistics every
   10th step for 60 parameterised layers x 3 statistics and 60 activation layers x 3 statistics,
   gradient histograms (40 bins) of the 60 parameterised layers every 100th step, an epoch with
   watch pictures every 100 steps. Time from navigation to ``window.lvsegDashboard.ready`` (all
   charts drawn), each load in a fresh browser context (cold cache, plotly.min.js included);
   median of ``--loads``.

Needs Debian's chromium (``scripts/install-browser.sh``). Run from the project root::

    .venv/bin/python -m benchmarks.dashboard_latency [--repeats 20] [--loads 3] [--steps 10000]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from lvseg.dashboard.launch import start_dashboard
from lvseg.dashboard.stream import POLL_S
from tests.dashboard.synthetic_run import start_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def write_to_draw(browser, folder: Path, repeats: int) -> list[float]:
    """Milliseconds from a step row committed to the store to the page having drawn it."""
    run = start_run(folder / "live", steps_per_epoch=50)
    for _ in range(200):
        run.write_step()
    dashboard = start_dashboard(folder / "live")
    page = browser.new_page()
    try:
        page.goto(dashboard.url)
        page.wait_for_function("window.lvsegDashboard.ready", timeout=60_000)
        rng = random.Random(0)
        latencies = []
        for _ in range(repeats):
            time.sleep(rng.uniform(0.2, 0.2 + 2 * POLL_S))
            step = run.step
            run.store.log_step(step, run.epoch, loss=run.loss(step), lr=0.003)
            written = time.time()
            run.step += 1
            page.wait_for_function(f"window.lvsegDashboard.lastDrawnStep >= {step}", timeout=30_000)
            drawn = page.evaluate("window.lvsegDashboard.lastDrawnAt") / 1000
            latencies.append(1000 * (drawn - written))
        return latencies
    finally:
        page.close()
        dashboard.stop()
        run.store.close()


def big_run(folder: Path, steps: int) -> Path:
    run = start_run(
        folder / "big",
        parameterised=60,
        activations=60,
        steps_per_epoch=100,
        layer_every=10,
        histogram_every=10,
    )
    for _ in range(steps):
        run.write_step()
    run.store.set_status("finished")
    run.store.close()
    return folder / "big"


def page_loads(browser, run_dir: Path, loads: int) -> tuple[list[float], float]:
    """Milliseconds from navigation to all charts drawn, and megabytes of API data per load."""
    dashboard = start_dashboard(run_dir)
    times, megabytes = [], 0.0
    try:
        for _ in range(loads):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(dashboard.url)
            page.wait_for_function("window.lvsegDashboard.ready", timeout=120_000)
            times.append(page.evaluate("window.lvsegDashboard.readyAt"))
            megabytes = (
                page.evaluate(
                    "performance.getEntriesByType('resource')"
                    ".filter(e => e.name.includes('/api/runs'))"
                    ".reduce((sum, e) => sum + e.decodedBodySize, 0)"
                )
                / 1e6
            )
            context.close()
        return times, megabytes
    finally:
        dashboard.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10_000)
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit("no chromium: run scripts/install-browser.sh first")
    with tempfile.TemporaryDirectory() as temporary, sync_playwright() as playwright:
        folder = Path(temporary)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            latencies = write_to_draw(browser, folder, args.repeats)
            started = time.perf_counter()
            run_dir = big_run(folder, args.steps)
            built_s = time.perf_counter() - started
            loads, megabytes = page_loads(browser, run_dir, args.loads)
            version = browser.version
        finally:
            browser.close()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"dashboard latency, headless Chromium {version}, stream poll {POLL_S} s, "
        f"{platform.machine()}, {os.cpu_count()} cores, load average {load:.1f}"
    )
    print()
    print("| measure | median | p95 | min | max | n |")
    print("|---|---|---|---|---|---|")
    print(
        f"| row written -> drawn in the page (ms) | {statistics.median(latencies):.0f} | "
        f"{percentile(latencies, 0.95):.0f} | {min(latencies):.0f} | {max(latencies):.0f} | "
        f"{len(latencies)} |"
    )
    print(
        f"| page load, {args.steps:,} steps, to all charts drawn (ms) | "
        f"{statistics.median(loads):.0f} | - | {min(loads):.0f} | {max(loads):.0f} | "
        f"{len(loads)} |"
    )
    print()
    print(
        f"The {args.steps:,}-step run: {args.steps // 10:,} layer-statistics rows of 360 series, "
        f"{args.steps // 100} x 60 histograms; {megabytes:.1f} MB of JSON per page load "
        f"(written in {built_s:.0f} s)."
    )


if __name__ == "__main__":
    main()
