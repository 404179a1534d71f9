"""The runner, on tiny Python scripts instead of real training (an argv factory given to the
runner): one job at a time, exit codes, stops that reach the child as SIGINT, escalation, a
job left running by an earlier server, and a clean close."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from lvseg.workbench.api import job_record
from lvseg.workbench.queue import JobQueue
from lvseg.workbench.runner import CPU_ONLY, Runner, gpu_slots

CHILD = """
import os, signal, sys, time
mode = sys.argv[1]
if mode.startswith("exit:"):
    print("started", flush=True)
    sys.exit(int(mode[5:]))
def on_sigint(*_):
    print("got SIGINT", flush=True)
    sys.exit(130)
signal.signal(signal.SIGINT, signal.SIG_IGN if mode == "stubborn" else on_sigint)
print("ready on GPU", os.environ.get("CUDA_VISIBLE_DEVICES", "none"), flush=True)
time.sleep(60)
"""


class Scripts:
    """The test's argv factory: job id -> the child script's mode (default: exit 0)."""

    def __init__(self, folder):
        self.script = folder / "child.py"
        self.script.write_text(CHILD)
        self.modes: dict[int, str] = {}

    def __call__(self, job):
        return [sys.executable, str(self.script), self.modes.get(job.id, "exit:0")]


@pytest.fixture
def scripts(tmp_path):
    return Scripts(tmp_path)


def _until(runner, done, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        runner.tick()
        time.sleep(0.02)


def _log_says(job, text):
    return lambda: job.log_path.exists() and text in job.log_path.read_text()


def test_a_job_runs_to_done(queue, scripts):
    job = queue.submit("train", {})
    with Runner(queue, argv_for=scripts) as runner:
        runner.tick()
        running = queue.get(job.id)
        assert running.state == "running" and running.pid > 1 and running.started
        _until(runner, lambda: queue.get(job.id).state != "running")
    done = queue.get(job.id)
    assert (done.state, done.exit_code) == ("done", 0)
    assert "started" in done.log_path.read_text()


def test_a_failing_job_is_failed_with_its_exit_code(queue, scripts):
    job = queue.submit("train", {})
    scripts.modes[job.id] = "exit:3"
    with Runner(queue, argv_for=scripts) as runner:
        _until(runner, lambda: queue.get(job.id).state not in ("queued", "running"))
    assert (queue.get(job.id).state, queue.get(job.id).exit_code) == ("failed", 3)


def test_one_job_at_a_time_and_a_stop_reaches_it_as_sigint(queue, scripts):
    first, second = queue.submit("train", {}), queue.submit("train", {})
    scripts.modes[first.id] = "sleep"
    with Runner(queue, argv_for=scripts) as runner:
        _until(runner, _log_says(first, "ready"))
        runner.tick()
        assert queue.get(second.id).state == "queued"  # the first still runs
        queue.request_stop(first.id)
        _until(runner, lambda: queue.get(second.id).state == "done")
    stopped = queue.get(first.id)
    assert (stopped.state, stopped.exit_code) == ("stopped", 130)
    assert "got SIGINT" in stopped.log_path.read_text()


def test_a_job_that_ignores_sigint_is_terminated(queue, scripts):
    job = queue.submit("train", {})
    scripts.modes[job.id] = "stubborn"
    with Runner(queue, argv_for=scripts, stop_timeout_s=0.2) as runner:
        _until(runner, _log_says(job, "ready"))
        queue.request_stop(job.id)
        _until(runner, lambda: queue.get(job.id).state != "running")
    assert (queue.get(job.id).state, queue.get(job.id).exit_code) == ("stopped", -15)


def test_closing_the_runner_interrupts_its_job_which_can_be_resumed(queue, scripts):
    job = queue.submit("train", {})
    scripts.modes[job.id] = "sleep"
    runner = Runner(queue, argv_for=scripts, poll_s=0.02).start()
    deadline = time.monotonic() + 20
    while not _log_says(job, "ready")():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    runner.close()
    ended = queue.get(job.id)
    assert (ended.state, ended.exit_code) == ("interrupted", 130)
    assert "got SIGINT" in ended.log_path.read_text()
    assert queue.resume(job.id).state == "queued"


def test_the_thread_runs_what_is_submitted(queue, scripts):
    with Runner(queue, argv_for=scripts, poll_s=5).start() as runner:
        job = queue.submit("train", {})
        runner.wake()  # no waiting for the 5 s poll
        deadline = time.monotonic() + 20
        while queue.get(job.id).state != "done":
            assert time.monotonic() < deadline
            time.sleep(0.02)


def test_a_job_that_cannot_start_fails_saying_why(queue, space, tmp_path):
    (space.datasets / "acdc").mkdir()
    job = queue.submit("train", {"data": "datasets/acdc"})
    (space.datasets / "acdc").rmdir()
    (space.datasets / "acdc").symlink_to(tmp_path)  # now it leads out
    with Runner(queue) as runner:  # lvseg's own argv: refused before anything starts
        runner.tick()
    assert queue.get(job.id).state == "failed"
    assert "outside the workspace" in job.log_path.read_text()
    # the page shows why, from the log: the runner's line here
    reason = job_record(queue.get(job.id), space)["reason"]
    assert reason.startswith(f"lvseg workbench: cannot start job {job.id}: ")
    assert "outside the workspace" in reason


def test_a_failed_jobs_reason_is_lvsegs_error_line_else_its_last(queue, space):
    failed = [queue.submit("train", {}) for _ in range(3)]
    logs = [
        "epoch 1/3 ...\nerror: data/x: patient 'p1' of the fixed split is not in the data\n\n",
        "Traceback (most recent call last):\n  ...\nMemoryError: out of memory\n",
        "",
    ]
    for job, text in zip(failed, logs, strict=True):
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        job.log_path.write_text(text)
        queue.mark_running(job.id, 1)
        queue.mark_ended(job.id, 2)
    reasons = [job_record(queue.get(job.id), space)["reason"] for job in failed]
    assert reasons == [
        "error: data/x: patient 'p1' of the fixed split is not in the data",
        "MemoryError: out of memory",
        None,
    ]
    done = queue.submit("train", {})
    assert job_record(done, space)["reason"] is None  # only a failed job has one


FAKE_LVSEG = """
import signal, sys, time
signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
print("ready", flush=True)
time.sleep(60)
"""


def test_a_job_an_earlier_server_started_is_watched_and_stopped(space, scripts, tmp_path):
    # A process that looks like `python -m lvseg train --out=RUN` (a fake lvseg package first
    # on its path), left running by a server that is gone.
    fake = tmp_path / "fake" / "lvseg"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(textwrap.dedent(FAKE_LVSEG))
    with JobQueue.open(space) as queue:
        job = queue.submit("train", {})
        waiting = queue.submit("train", {})
        argv = [sys.executable, "-m", "lvseg", "train", f"--out={job.run_dir}"]
        log = open(job.log_path, "ab")
        process = subprocess.Popen(argv, cwd=fake.parent, stdout=log, start_new_session=True)
        queue.mark_running(job.id, process.pid)
    try:
        with JobQueue.open(space) as queue, Runner(queue, argv_for=scripts) as runner:
            _until(runner, _log_says(job, "ready"))
            assert queue.get(job.id).state == "running"  # alive, and lvseg: kept
            runner.tick()
            assert queue.get(waiting.id).state == "queued"  # still one at a time
            queue.request_stop(job.id)
            runner.tick()
            assert process.wait(timeout=20) == 130
            _until(runner, lambda: queue.get(waiting.id).state == "done")
            assert queue.get(job.id).state == "stopped"
    finally:
        process.kill()
        log.close()


def test_one_job_per_gpu_each_seeing_only_its_own(queue, scripts):
    jobs = [queue.submit("train", {}) for _ in range(3)]
    for job in jobs:
        scripts.modes[job.id] = "sleep"
    with Runner(queue, argv_for=scripts, slots=("2", "5")) as runner:
        runner.tick()
        first, second, third = (queue.get(job.id) for job in jobs)
        assert (first.state, second.state, third.state) == ("running", "running", "queued")
        _until(runner, _log_says(first, "ready on GPU 2"))
        _until(runner, _log_says(second, "ready on GPU 5"))
        queue.request_stop(first.id)
        _until(runner, _log_says(third, "ready on GPU 2"))  # the freed GPU, not a third
        assert queue.get(second.id).state == "running"
        for job in (second, third):
            queue.request_stop(job.id)
        _until(runner, lambda: not queue.list_jobs("running"))


def test_a_cpu_machine_runs_one_job_seeing_the_servers_devices(queue, scripts, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    job = queue.submit("train", {})
    scripts.modes[job.id] = "sleep"
    with Runner(queue, argv_for=scripts) as runner:
        _until(runner, _log_says(job, "ready on GPU none"))
        queue.request_stop(job.id)
        _until(runner, lambda: queue.get(job.id).state != "running")


@pytest.mark.parametrize(
    ("visible", "slots"),
    [("0,1,3", ("0", "1", "3")), ("1", CPU_ONLY), ("", CPU_ONLY), ("-1", CPU_ONLY)],
)
def test_gpu_slots_follow_cuda_visible_devices(visible, slots):
    assert gpu_slots({"CUDA_VISIBLE_DEVICES": visible}) == slots


def test_without_nvidia_smi_there_is_one_slot(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert gpu_slots({}) == CPU_ONLY
