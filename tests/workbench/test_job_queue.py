"""The job queue in the workspace's SQLite database: jobs made, stopped, cloned, resumed and
deleted, and a queue that outlives its server (a job whose process is gone is interrupted)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from lvseg.errors import InvalidInputError
from lvseg.workbench.queue import SCHEMA_VERSION, JobQueue


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_submitted_job_is_queued_with_its_run_folder_and_log(queue, space):
    job = queue.submit("train", {"epochs": 2, "data": "phantom"})
    assert job.state == "queued" and job.kind == "train" and not job.resume
    assert job.args == {"epochs": 2, "data": "phantom"}
    assert job.run_dir == space.runs / f"job-{job.id:04d}"
    assert job.log_path == space.logs / f"job-{job.id:04d}.log"
    assert queue.next_queued() == job
    assert queue.list_jobs() == [job] and queue.list_jobs("running") == []


def test_a_bad_job_is_refused_and_nothing_is_queued(queue):
    with pytest.raises(InvalidInputError, match="unknown job kind 'sh'"):
        queue.submit("sh", {})
    with pytest.raises(InvalidInputError, match="unknown option 'program'"):
        queue.submit("train", {"program": "/bin/sh"})
    assert queue.list_jobs() == []


def test_the_queue_is_first_come_first_served(queue):
    first, second = queue.submit("train", {}), queue.submit("train", {})
    assert queue.next_queued().id == first.id
    queue.mark_running(first.id, os.getpid())
    assert queue.next_queued().id == second.id
    with pytest.raises(InvalidInputError, match=f"job {first.id} is no longer queued"):
        queue.mark_running(first.id, os.getpid())


def test_ending_a_job_records_how(queue):
    for code, state in ((0, "done"), (1, "failed"), (130, "failed")):
        job = queue.submit("train", {})
        queue.mark_running(job.id, 1234)
        ended = queue.mark_ended(job.id, code)
        assert (ended.state, ended.exit_code) == (state, code)
        assert ended.started <= ended.ended
    job = queue.submit("train", {})
    queue.mark_running(job.id, 1234)
    assert queue.request_stop(job.id).stop_requested
    assert queue.mark_ended(job.id, 130).state == "stopped"


def test_a_queued_job_stops_at_once_and_runs_again_as_it_was(queue):
    job = queue.submit("train", {"epochs": 4})
    assert queue.request_stop(job.id).state == "stopped"
    with pytest.raises(InvalidInputError, match="nothing to stop"):
        queue.request_stop(job.id)
    again = queue.resume(job.id)
    # Never started: no run to continue, so the same options on the same folder.
    assert (again.state, again.resume, again.args) == ("queued", False, {"epochs": 4})
    assert again.run_dir == job.run_dir and again.id != job.id


def test_the_queue_survives_a_restart(space):
    with JobQueue.open(space) as queue:
        job = queue.submit("train", {"epochs": 2})
        waiting = queue.submit("train", {"epochs": 3})
        queue.mark_running(job.id, _dead_pid())
        job.run_dir.mkdir()
        (job.run_dir / "config.json").write_text("{}")  # the run started
    with JobQueue.open(space) as queue:  # the server again
        lost = queue.get(job.id)
        assert (lost.state, lost.exit_code) == ("interrupted", None)
        assert queue.get(waiting.id).state == "queued"
        resumed = queue.resume(job.id)
        assert (resumed.state, resumed.resume, resumed.run_dir) == ("queued", True, job.run_dir)
        assert queue.argv(resumed)[4:] == [f"--out={job.run_dir}", "--resume"]
        with pytest.raises(InvalidInputError, match=f"job {resumed.id} already works on"):
            queue.resume(job.id)


def test_a_running_job_whose_pid_is_another_program_is_interrupted(space):
    with JobQueue.open(space) as queue:
        job = queue.submit("train", {})
        queue.mark_running(job.id, os.getpid())  # alive, but pytest, not lvseg train
    with JobQueue.open(space) as queue:
        assert queue.get(job.id).state == "interrupted"


def test_only_a_stopped_or_interrupted_job_is_resumed(queue):
    job = queue.submit("train", {})
    with pytest.raises(InvalidInputError, match="is queued; only a stopped or interrupted"):
        queue.resume(job.id)


def test_a_clone_takes_changes_and_a_folder_of_its_own(queue, space):
    job = queue.submit("train", {"epochs": 2, "lr": 0.01, "model": "lvnet"})
    clone = queue.clone(job.id, {"lr": 0.001, "model": None, "seed": 3})
    assert clone.args == {"epochs": 2, "lr": 0.001, "seed": 3}
    assert clone.run_dir != job.run_dir and clone.state == "queued"
    with pytest.raises(InvalidInputError, match="train --seed: an integer"):
        queue.clone(job.id, {"seed": "3"})
    with pytest.raises(InvalidInputError, match="no job 99"):
        queue.clone(99)


def test_delete_removes_the_run_and_its_jobs_never_the_data(queue, space):
    data = space.datasets / "acdc"
    data.mkdir()
    (data / "image.png").write_bytes(b"png")
    job = queue.submit("train", {"data": "datasets/acdc"})
    queue.mark_running(job.id, 1234)
    with pytest.raises(InvalidInputError, match="stop it first"):
        queue.delete(job.id)
    queue.mark_ended(job.id, 130, "stopped")
    job.run_dir.mkdir()
    (job.run_dir / "config.json").write_text("{}")
    job.log_path.write_text("log")
    resumed = queue.resume(job.id)
    queue.mark_running(resumed.id, 1234)
    queue.mark_ended(resumed.id, 0)
    assert sorted(queue.delete(job.id)) == [job.id, resumed.id]
    assert not job.run_dir.exists() and not job.log_path.exists()
    assert queue.list_jobs() == []
    assert (data / "image.png").read_bytes() == b"png"


def test_delete_never_follows_a_run_folder_that_is_a_symlink(queue, space, tmp_path):
    job = queue.submit("train", {})
    queue.request_stop(job.id)
    precious = tmp_path / "precious"
    precious.mkdir()
    job.run_dir.symlink_to(precious)
    with pytest.raises(InvalidInputError, match="is a symlink"):
        queue.delete(job.id)
    assert precious.is_dir() and queue.get(job.id)


def test_a_database_from_a_newer_lvseg_is_refused(space):
    JobQueue.open(space).close()
    with sqlite3.connect(space.database) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(InvalidInputError, match="newer than this lvseg's"):
        JobQueue.open(space)


def test_the_database_is_wal_with_a_schema_version(queue, space):
    with sqlite3.connect(space.database) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_other_kinds_write_into_their_own_workspace_folders(queue, space):
    (space.runs / "old").mkdir()
    export = queue.submit("export", {"model": ["runs/old"], "int8": True})
    phantom = queue.submit("data-phantom", {"patients": 2})
    select = queue.submit("select", {"runs": ["runs/old"]})
    assert export.run_dir == space.exports / f"job-{export.id:04d}"
    assert phantom.run_dir == space.datasets / f"phantom-{phantom.id:04d}"
    assert select.run_dir is None  # select writes RUN/selected.json
    assert queue.argv(export)[3:] == [
        "export",
        str(space.runs / "old"),
        "--int8",
        f"--out={export.run_dir}",
    ]
    assert queue.argv(phantom)[3:] == ["data", "phantom", "--patients=2", str(phantom.run_dir)]


def test_only_a_training_run_is_resumed_or_deleted_with_its_output(queue, space):
    (space.runs / "old").mkdir()
    job = queue.submit("export", {"model": ["runs/old"]})
    queue.mark_running(job.id, os.getpid())
    queue.mark_ended(job.id, None, state="interrupted")
    with pytest.raises(InvalidInputError, match=r"\(export\) cannot be resumed: clone it"):
        queue.resume(job.id)
    job.run_dir.mkdir()
    (job.run_dir / "model.onnx").write_bytes(b"kept")
    assert queue.delete(job.id) == [job.id]
    assert (job.run_dir / "model.onnx").read_bytes() == b"kept"  # only runs are deleted


def test_a_process_that_is_not_the_jobs_lvseg_verb_is_not_taken_for_it(space):
    queue = JobQueue.open(space)
    (space.runs / "old").mkdir()
    job = queue.submit("export", {"model": ["runs/old"]})
    argv = queue.argv(job)
    script = "import time; time.sleep(30)"
    # A stand-in that wears the job's command line: python -c ... -m lvseg export ... --out=...
    process = subprocess.Popen([sys.executable, "-c", script, *argv[1:]])
    try:
        queue.mark_running(job.id, process.pid)
        running = queue.get(job.id)
        assert not queue.is_alive(running)  # argv[1] is -c, not -m lvseg
    finally:
        process.kill()
        process.wait()
    queue.close()
