"""The job queue: jobs in the workspace's SQLite database (``workbench.db``), which outlives
the server. A job runs one lvseg verb (:mod:`lvseg.workbench.kinds`) into an output of its own
(a training job's run folder); it is queued, then running, then done, failed, stopped or
interrupted (its process died unseen)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvseg import layout
from lvseg.errors import InvalidInputError
from lvseg.workbench.kinds import job_kind
from lvseg.workbench.workspace import Workspace, resolve_inside

SCHEMA_VERSION = 1
STATES = ("queued", "running", "done", "failed", "stopped", "interrupted")
ENDED = ("done", "failed", "stopped", "interrupted")
RESUMABLE = ("stopped", "interrupted")
BUSY_TIMEOUT_S = 10.0

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a job's run folder is named by it
    kind TEXT NOT NULL,
    args TEXT NOT NULL,                    -- the checked options, as JSON
    resume INTEGER NOT NULL DEFAULT 0,     -- continue run_dir from its checkpoint
    state TEXT NOT NULL CHECK (state IN {STATES}),
    stop_requested INTEGER NOT NULL DEFAULT 0,
    pid INTEGER,
    exit_code INTEGER,
    run_dir TEXT,                          -- the job's output (a run folder, an export...)
    log_path TEXT,
    created REAL NOT NULL,
    started REAL,
    ended REAL
);
"""


@dataclass(frozen=True)
class Job:
    """A row of the queue; times are Unix seconds."""

    id: int
    kind: str
    args: dict[str, Any]
    resume: bool
    state: str
    stop_requested: bool
    pid: int | None
    exit_code: int | None
    run_dir: Path | None
    log_path: Path | None
    created: float
    started: float | None
    ended: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        values = dict(row)
        values["args"] = json.loads(values["args"])
        values["resume"] = bool(values["resume"])
        values["stop_requested"] = bool(values["stop_requested"])
        for name in ("run_dir", "log_path"):
            values[name] = Path(values[name]) if values[name] else None
        return cls(**values)


class JobQueue:
    """The jobs of one workspace. Open with :meth:`open`; one connection, used from any
    thread (the runner's and the server's) under SQLite's own locking."""

    def __init__(self, workspace: Workspace, connection: sqlite3.Connection) -> None:
        self.workspace = workspace
        self._db = connection
        # One connection for the server's threads and the runner's: a transaction must not
        # take in another thread's statements, so every use holds this lock.
        self._lock = threading.RLock()

    @classmethod
    def open(cls, workspace: Workspace) -> JobQueue:
        """Open (or make) the workspace's queue; a job left running by a process that is gone
        becomes ``interrupted``."""
        path = workspace.database
        try:
            connection = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            connection.row_factory = sqlite3.Row
            # WAL: the server reads while the runner writes, neither waits.
            connection.execute("PRAGMA journal_mode=WAL")
            _migrate(connection, path)
        except sqlite3.Error as error:
            raise InvalidInputError(path, f"cannot open the job database: {error}") from error
        queue = cls(workspace, connection)
        queue.recover()
        return queue

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> JobQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE: a read-then-write (a state check, then its change) is one step.
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, parameters: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    # -- reading

    def get(self, job_id: int) -> Job:
        rows = self._rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise InvalidInputError(None, f"no job {job_id}")
        return Job.from_row(rows[0])

    def list_jobs(self, state: str | None = None) -> list[Job]:
        """Every job (or those in ``state``), newest first."""
        if state is None:
            rows = self._rows("SELECT * FROM jobs ORDER BY id DESC")
        else:
            rows = self._rows("SELECT * FROM jobs WHERE state = ? ORDER BY id DESC", (state,))
        return [Job.from_row(row) for row in rows]

    def next_queued(self) -> Job | None:
        """The oldest queued job: the queue is first come, first served."""
        rows = self._rows("SELECT * FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1")
        return Job.from_row(rows[0]) if rows else None

    def argv(self, job: Job) -> list[str]:
        """The job's command line, its arguments checked again against the whitelist."""
        kind = job_kind(job.kind)
        args = kind.validate(job.args, self.workspace.resolve)
        return kind.argv(args, job.run_dir, resume=job.resume)

    # -- making jobs

    def submit(self, kind: str, args: Mapping[str, Any]) -> Job:
        """Queue a new job of ``kind`` (a verb) with ``args`` (checked, else refused)."""
        checked = job_kind(kind).validate(args, self.workspace.resolve)
        return self._insert(kind, checked, run_dir=None, resume=False)

    def clone(self, job_id: int, changes: Mapping[str, Any] | None = None) -> Job:
        """A new queued job like ``job_id`` with ``changes`` (None removes an option), on a
        run folder of its own."""
        job = self.get(job_id)
        args = {**job.args, **(changes or {})}
        checked = job_kind(job.kind).validate(args, self.workspace.resolve)
        return self._insert(job.kind, checked, run_dir=None, resume=False)

    def resume(self, job_id: int) -> Job:
        """A new queued job that continues a stopped or interrupted job's run folder."""
        job = self.get(job_id)
        if not job_kind(job.kind).resumable:
            raise InvalidInputError(None, f"job {job_id} ({job.kind}) cannot be resumed: clone it")
        if job.state not in RESUMABLE:
            raise InvalidInputError(
                None,
                f"job {job_id} is {job.state}; only a stopped or interrupted job can be resumed",
            )
        busy = [j.id for j in self._on_run(job.run_dir) if j.state in ("queued", "running")]
        if busy:
            raise InvalidInputError(None, f"job {busy[0]} already works on {job.run_dir}")
        # A job stopped before it started has no run to continue: run it again as it was.
        started = job.run_dir is not None and (job.run_dir / layout.RUN_CONFIG).exists()
        return self._insert(job.kind, job.args, run_dir=job.run_dir, resume=started)

    def _insert(
        self, kind: str, args: dict[str, Any], *, run_dir: Path | None, resume: bool
    ) -> Job:
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO jobs (kind, args, resume, state, created) "
                "VALUES (?, ?, ?, 'queued', ?)",
                (kind, json.dumps(args), int(resume), time.time()),
            )
            job_id = cursor.lastrowid
            output = job_kind(kind).output
            if run_dir is None and output is not None:
                run_dir = self.workspace.root / output.folder / output.name(job_id)
            log = self.workspace.logs / f"job-{job_id:04d}.log"
            db.execute(
                "UPDATE jobs SET run_dir = ?, log_path = ? WHERE id = ?",
                (str(run_dir) if run_dir is not None else None, str(log), job_id),
            )
        return self.get(job_id)

    # -- the runner's side

    def mark_running(self, job_id: int, pid: int) -> None:
        """The queued job ``job_id`` was started as process ``pid``."""
        with self._write() as db:
            changed = db.execute(
                "UPDATE jobs SET state = 'running', pid = ?, started = ? "
                "WHERE id = ? AND state = 'queued'",
                (pid, time.time(), job_id),
            ).rowcount
        if not changed:
            raise InvalidInputError(None, f"job {job_id} is no longer queued")

    def mark_ended(self, job_id: int, exit_code: int | None, state: str | None = None) -> Job:
        """The running job's process ended with ``exit_code``: stopped if a stop was asked,
        else done on 0 and failed otherwise (unless ``state`` says)."""
        with self._write() as db:
            job = self._get_in(db, job_id)
            if state is None:
                ok = exit_code == 0
                state = "stopped" if job.stop_requested else ("done" if ok else "failed")
            db.execute(
                "UPDATE jobs SET state = ?, exit_code = ?, ended = ? WHERE id = ?",
                (state, exit_code, time.time(), job_id),
            )
        return self.get(job_id)

    def request_stop(self, job_id: int) -> Job:
        """Stop a job: a queued one at once, a running one by its runner (SIGINT first)."""
        with self._write() as db:
            job = self._get_in(db, job_id)
            if job.state == "queued":
                db.execute(
                    "UPDATE jobs SET state = 'stopped', stop_requested = 1, ended = ? WHERE id = ?",
                    (time.time(), job_id),
                )
            elif job.state == "running":
                db.execute("UPDATE jobs SET stop_requested = 1 WHERE id = ?", (job_id,))
            else:
                raise InvalidInputError(None, f"job {job_id} is {job.state}; nothing to stop")
        return self.get(job_id)

    def delete(self, job_id: int) -> list[int]:
        """Delete a job: a training job's run folder too, and every job on that folder (a run
        and its resumes), with their logs. Another kind's output (an export, a dataset) stays:
        only runs are deleted. Refused while one of them is running or queued. Returns the
        ids deleted."""
        job = self.get(job_id)
        jobs = self._on_run(job.run_dir) if job.run_dir else [job]
        live = [j.id for j in jobs if j.state in ("queued", "running")]
        if live:
            raise InvalidInputError(None, f"job {live[0]} is queued or running; stop it first")
        if job.run_dir is not None and job_kind(job.kind).resumable:
            self._remove_run(job.run_dir)
        with self._write() as db:
            db.executemany("DELETE FROM jobs WHERE id = ?", [(j.id,) for j in jobs])
        for gone in jobs:
            if gone.log_path is not None:
                gone.log_path.unlink(missing_ok=True)
        return [j.id for j in jobs]

    def _remove_run(self, run_dir: Path) -> None:
        # Only a folder under runs/ itself (not a symlink out of it) is ever deleted.
        if run_dir.is_symlink():
            raise InvalidInputError(run_dir, "a run folder that is a symlink is not deleted")
        folder = resolve_inside(run_dir, [self.workspace.runs])
        if folder == self.workspace.runs.resolve():
            raise InvalidInputError(run_dir, "is the runs folder itself")
        if folder.exists():
            shutil.rmtree(folder)

    def _on_run(self, run_dir: Path | None) -> list[Job]:
        rows = self._rows("SELECT * FROM jobs WHERE run_dir = ?", (str(run_dir),))
        return [Job.from_row(row) for row in rows]

    def _get_in(self, db: sqlite3.Connection, job_id: int) -> Job:
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise InvalidInputError(None, f"no job {job_id}")
        return Job.from_row(row)

    # -- after a restart

    def recover(self) -> list[int]:
        """Mark ``interrupted`` every running job whose process is gone (or is no longer that
        job's lvseg process: a pid the system gave to another program). Returns their ids."""
        lost = [job for job in self.list_jobs("running") if not self.is_alive(job)]
        for job in lost:
            self.mark_ended(job.id, None, state="interrupted")
        return [job.id for job in lost]

    def is_alive(self, job: Job) -> bool:
        """Whether the job's process still runs, as the job's lvseg command."""
        if job.pid is None or not _pid_alive(job.pid):
            return False
        command = _command_line(job.pid)
        if command is None:  # no /proc (macOS): the pid is all we know
            return True
        # python -m lvseg VERB ... OUTPUT: the interpreter's path may differ.
        kind = job_kind(job.kind)
        expected = ["-m", "lvseg", *kind.verb]
        if command[1 : 3 + len(kind.verb)] != expected:
            return False
        if kind.output is None or job.run_dir is None:
            return True
        return kind.output.argv(job.run_dir)[0] in command


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    """Make the schema, or check a database made before is one this lvseg reads."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise InvalidInputError(
            path, f"job database version {version} is newer than this lvseg's {SCHEMA_VERSION}"
        )
    if version < SCHEMA_VERSION:
        connection.executescript(_SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: not one we started
        return False
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _command_line(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None if not Path("/proc/self").exists() else []
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
