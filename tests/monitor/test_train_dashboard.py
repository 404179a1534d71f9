"""``lvseg train --dashboard`` end to end: the URL is printed before training starts, the
dashboard serves the new run while it trains, keeps serving after it ends, and Ctrl-C stops
both cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def read_line(process: subprocess.Popen, pattern: str, timeout_s: float = 120.0) -> re.Match:
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no line matching {pattern!r} in: {''.join(seen)!r}")


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_train_with_dashboard_serves_the_run_during_and_after_training(tiny_phantom, tmp_path):
    out = tmp_path / "runs" / "watched"
    process = subprocess.Popen(
        [sys.executable, "-m", "lvseg", "train", "--data", str(tiny_phantom), "--out", str(out)]
        + ["--epochs", "2", "--batch-size", "4", "--device", "cpu", "--dashboard"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        url = read_line(process, r"dashboard: (http://127\.0\.0\.1:\d+/\S*)").group(1)
        assert url.endswith("?run=watched")
        base = url.split("/?")[0]
        assert get_json(base + "/api/health")["ok"] is True
        read_line(process, r"dashboard still serving at http://127\.0\.0\.1")
        runs = get_json(base + "/api/runs")["runs"]
        assert [(r["name"], r["status"], r["epochs"]) for r in runs] == [("watched", "finished", 2)]
        steps = get_json(base + "/api/runs/watched/steps")["columns"]["step"]
        assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 2
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        stdout = process.stdout.read()
        assert "finished: 2 epochs" in stdout
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    # the dashboard process went with it
    time.sleep(0.5)
    try:
        urllib.request.urlopen(base + "/api/health", timeout=2)
    except OSError:
        pass
    else:
        raise AssertionError("the dashboard still answers after lvseg train exited")
    assert Path(out / "run.db").is_file()
