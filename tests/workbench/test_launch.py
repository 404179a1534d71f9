"""``lvseg workbench`` end to end: the real server in a subprocess answers its JSON API, refuses
a change without the token or a session, stops cleanly on Ctrl-C or SIGTERM with its database
intact; a bad workspace or ``--allow`` is one line and exit code 2."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from lvseg.workbench.queue import JobQueue
from lvseg.workbench.workspace import Workspace

TOKEN = "a-workbench-token-of-some-length"


def ctrl_c_stops() -> None:
    # A suite started in the background runs with SIGINT ignored, which children inherit.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def lvseg(*args: str) -> list[str]:
    return [sys.executable, "-m", "lvseg", *args]


@contextmanager
def workbench(*args: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """``lvseg workbench ARGS --port 0``: the process and its base URL, once it answers."""
    process = subprocess.Popen(
        lvseg("workbench", *args, "--port", "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
        preexec_fn=ctrl_c_stops,
    )
    try:
        line = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/(\S*)", line)
        assert match, f"no URL in {line!r}; stderr: {process.stderr.read() if not line else ''}"
        base, process.url_line = match.group(1), line
        wait_until_answering(base, process)
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def request(url: str, method: str = "GET", body: dict | None = None, headers=None):
    """(status, JSON answer) of one request."""
    data = None if body is None else json.dumps(body).encode()
    call = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        call.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(call, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_until_answering(base: str, process: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "/", timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answers (a refusal is an answer)
        except OSError:
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.1)
    raise AssertionError(f"the workbench did not answer at {base}")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_the_workbench_serves_refuses_and_stops_cleanly(tmp_path, stop):
    root = tmp_path / "ws"
    with workbench(str(root)) as (process, base):
        assert request(base + "/api/jobs") == (200, {"jobs": []})
        train = {"kind": "train", "args": {"data": "phantom", "epochs": 1}}
        status, answer = request(base + "/api/jobs", "POST", train)
        assert status == 403 and "token" in answer["error"]
        process.send_signal(stop)
        assert process.wait(timeout=30) == 0, process.stderr.read()
    with JobQueue.open(Workspace.open(root)) as queue:
        assert queue.list_jobs() == []
    assert (root / "workbench.db").is_file()


def test_with_a_token_the_url_carries_it_and_every_request_needs_it(tmp_path):
    with workbench(str(tmp_path / "ws"), "--token", TOKEN) as (process, base):
        assert f"?token={TOKEN}" in process.url_line
        assert request(base + "/api/jobs")[0] == 401  # the dashboard's guard: no token
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert request(base + "/api/jobs", headers=bearer) == (200, {"jobs": []})
        # Through both guards to the queue, which refuses a verb that is not lvseg's.
        status, answer = request(base + "/api/jobs", "POST", {"kind": "sh"}, bearer)
        assert status == 400, answer
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, process.stderr.read()


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_a_bad_workspace_is_one_line(tmp_path, where):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    root = afile if where == "file" else afile / "ws"
    result = subprocess.run(
        lvseg("workbench", str(root), "--port", "0"), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot make the workspace" in lines[0], result.stderr


def test_a_bad_allowed_folder_is_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for allowed in (afile, tmp_path / "missing"):
        result = subprocess.run(
            lvseg("workbench", str(tmp_path / "ws"), "--allow", str(allowed), "--port", "0"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "must be an existing folder" in lines[0], result.stderr


SLEEPER = """
import signal, sys, time
signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
print("ready", flush=True)
time.sleep(60)
"""


def test_stopping_the_server_interrupts_its_job_resumably(tmp_path):
    """In this process, on a script instead of training: the job that runs when the server
    stops is stopped (Ctrl-C first) and left ``interrupted``, and can be resumed."""
    from lvseg.workbench.launch import WorkbenchServer
    from lvseg.workbench.runner import Runner

    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    server = WorkbenchServer(tmp_path / "ws", port=0)
    # The test's runner: the same queue, a script for argv (the app wakes the old one: unused).
    server.runner = Runner(server.queue, argv_for=lambda job: [sys.executable, str(script)])
    job = server.queue.submit("train", {"data": "phantom", "epochs": 1})
    serving = threading.Thread(target=server.run)
    serving.start()
    deadline = time.monotonic() + 30
    while job.log_path is None or "ready" not in _text(job.log_path):
        assert time.monotonic() < deadline, "the job did not start"
        job = server.queue.get(job.id)
        time.sleep(0.1)
    server.stop()
    serving.join(timeout=30)
    assert not serving.is_alive()
    with JobQueue.open(Workspace.open(tmp_path / "ws")) as queue:
        assert queue.get(job.id).state == "interrupted"
        assert queue.resume(job.id).state == "queued"


def _text(path):
    return path.read_text() if path.exists() else ""
