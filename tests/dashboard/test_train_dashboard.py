"""``lvseg train --dashboard`` end to end: the URL is printed before training starts, the
dashboard serves the new run while it trains, keeps serving after it ends, and Ctrl-C stops
both cleanly; ``--host``, ``--port`` and ``--token`` work as for ``lvseg dashboard``, and a port
in use or a short token is one line before training starts."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def ctrl_c_stops() -> None:
    """Give the child the default Ctrl-C action. A suite started from a background shell job
    (``nohup make test &``) runs with SIGINT ignored, which children inherit: the trainer's
    Python then never turns the test's Ctrl-C into KeyboardInterrupt, and serves on."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def start_training(data: Path, out: Path, *options: str) -> Iterator[subprocess.Popen]:
    """``lvseg train --dashboard`` on ``data`` into ``out`` (batch 4, CPU), its output piped;
    killed on the way out if it is still running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lvseg", "train", "--data", str(data), "--out", str(out)]
        + ["--batch-size", "4", "--device", "cpu", "--dashboard", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        preexec_fn=ctrl_c_stops,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


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
    with start_training(tiny_phantom, out, "--epochs", "2") as process:
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
    # the dashboard process went with it
    time.sleep(0.5)
    try:
        urllib.request.urlopen(base + "/api/health", timeout=2)
    except OSError:
        pass
    else:
        raise AssertionError("the dashboard still answers after lvseg train exited")
    assert Path(out / "run.db").is_file()


def run_train(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lvseg", "train", "--epochs", "1", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "COLUMNS": "200"},
        preexec_fn=ctrl_c_stops,
    )


def test_train_dashboard_on_a_port_in_use_is_one_line_naming_the_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = tmp_path / "runs" / "busy"
        result = run_train("--out", str(out), "--dashboard", "--port", str(port))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == (
        f"error: port {port} on 127.0.0.1 is already in use; choose another with --port\n"
    )
    assert not out.exists()  # refused before training started


def test_train_dashboard_refuses_a_short_token_and_options_without_dashboard(
    tmp_path: Path,
) -> None:
    out = str(tmp_path / "runs" / "x")
    result = run_train("--out", out, "--dashboard", "--host", "0.0.0.0", "--token", "")
    assert result.returncode == 2 and result.stderr == (
        "error: dashboard token too short (0 characters): use at least 16, "
        "or leave --token out to have one generated\n"
    )
    for option in (["--port", "9999"], ["--host", "0.0.0.0"], ["--token", "x" * 20]):
        result = run_train("--out", out, *option)
        assert result.returncode == 2 and result.stderr == (
            "error: --host, --port and --token are options of --dashboard; add --dashboard\n"
        )
    assert not Path(out).exists()


def test_train_and_dashboard_commands_share_host_port_and_token_options() -> None:
    import typer.main

    from lvseg.cli import app

    commands = typer.main.get_command(app).commands
    options = {
        name: {p.name: (p.opts, p.default, p.help) for p in commands[name].params}
        for name in ("train", "dashboard")
    }
    for name in ("host", "port", "token"):
        assert options["train"][name] == options["dashboard"][name]
    assert options["dashboard"]["host"][1] == "127.0.0.1"
    assert options["dashboard"]["port"][1] == 8765


def test_train_dashboard_with_a_port_and_token_serves_with_that_token(
    tiny_phantom, tmp_path
) -> None:
    token = "train-dashboard-token-0123"
    out = tmp_path / "runs" / "guarded"
    with start_training(
        tiny_phantom, out, "--epochs", "1", "--port", "0", "--token", token
    ) as process:
        url = read_line(process, r"dashboard: (http://127\.0\.0\.1:\d+/\S*)").group(1)
        assert url.endswith(f"/?token={token}&run=guarded")
        base = url.split("/?")[0]
        try:
            urllib.request.urlopen(base + "/api/health", timeout=10)
        except urllib.error.HTTPError as error:
            assert error.code == 401
        else:
            raise AssertionError("the dashboard answered without its token")
        assert get_json(f"{base}/api/health?token={token}")["ok"] is True
        read_line(process, r"dashboard still serving at http://127\.0\.0\.1")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
