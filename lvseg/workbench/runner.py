"""The runner: runs the queue's jobs as subprocesses, one at a time on a CPU machine, one per
GPU where there are several (:func:`gpu_slots`), and stops them on request.

A job's process gets its own process group (a Ctrl-C to the server does not reach it) and
writes stdout and stderr to the job's log. A stop is a Ctrl-C first (SIGINT to the group:
``lvseg train`` checkpoints and exits 130), then SIGTERM, then SIGKILL if it does not end.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from lvseg.errors import InvalidInputError, LvsegError
from lvseg.runs.store import RunStore
from lvseg.workbench.queue import Job, JobQueue

ArgvFactory = Callable[[Job], list[str]]
"""A job's command line; the runner's default is the queue's (lvseg's own verbs)."""

_log = logging.getLogger(__name__)

# How a run that ended unseen (its process outlived an earlier server) finished, by its status.
_RUN_OUTCOME = {"finished": "done", "stopped": "stopped", "failed": "failed"}


CPU_ONLY: tuple[str | None, ...] = (None,)
"""One slot, no GPU named: a job at a time, seeing whatever devices the server sees."""


def gpu_slots(environ: Mapping[str, str] | None = None) -> tuple[str | None, ...]:
    """A slot per GPU (``CUDA_VISIBLE_DEVICES`` for each job), or :data:`CPU_ONLY`.

    The GPUs are those ``CUDA_VISIBLE_DEVICES`` lists where it is set, else those
    ``nvidia-smi -L`` lists: asking PyTorch would load it into the server, which stays
    torch-free. One GPU (or none) keeps one slot, as on a CPU machine."""
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    else:
        devices = [str(i) for i in range(_nvidia_smi_count())]
    return tuple(devices) if len(devices) > 1 else CPU_ONLY


def _nvidia_smi_count() -> int:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in listed.stdout.splitlines())


@dataclass
class _Tracked:
    """A running job the runner watches: ``process`` where this runner started it, None for
    one an earlier server started (watched by its pid); ``slot``, the GPU it was given."""

    job_id: int
    pid: int
    process: subprocess.Popen | None = None
    slot: str | None = None
    sigint_at: float | None = None
    sigterm_at: float | None = None
    sigkill_sent: bool = False
    closing: bool = False  # the runner closes: the job ends as interrupted (resumable)


class Runner:
    """Runs queued jobs, as many at once as ``slots`` (default one; :func:`gpu_slots` gives
    one per GPU, each job seeing only its own through ``CUDA_VISIBLE_DEVICES``). :meth:`tick`
    is one scheduling step; :meth:`start` runs ticks on a background thread until
    :meth:`close`."""

    def __init__(
        self,
        queue: JobQueue,
        *,
        argv_for: ArgvFactory | None = None,
        stop_timeout_s: float = 60.0,
        kill_timeout_s: float = 10.0,
        poll_s: float = 0.5,
        slots: Sequence[str | None] = CPU_ONLY,
    ) -> None:
        if not slots:
            raise ValueError("a runner needs at least one slot")
        self.queue = queue
        self.slots = tuple(slots)
        self._argv_for = argv_for or queue.argv
        self.stop_timeout_s = stop_timeout_s  # SIGINT to SIGTERM: time to write a checkpoint
        self.kill_timeout_s = kill_timeout_s  # SIGTERM to SIGKILL
        self.poll_s = poll_s
        self._tracked: dict[int, _Tracked] = {}
        self._lock = threading.Lock()  # a tick at a time: the thread's, a test's, close's
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one step

    def tick(self) -> None:
        """Watch the running jobs (end them, or carry on stopping them); start the oldest
        queued jobs while a slot is free."""
        with self._lock:
            busy = self._watch_running()
            while busy < len(self.slots) and not self._closing.is_set():
                if not self._start_next(self._free_slot()):
                    break
                busy += 1

    def _watch_running(self) -> int:
        """How many jobs still run after this look at every running one."""
        busy = 0
        for job in self.queue.list_jobs("running"):
            tracked = self._tracked.setdefault(job.id, _Tracked(job.id, job.pid or 0))
            if self._ended(job, tracked):
                self._tracked.pop(job.id, None)
                continue
            busy += 1
            if job.stop_requested or tracked.closing:
                self._escalate(tracked)
        return busy

    def _free_slot(self) -> str | None:
        """A slot no job of ours holds (a job an earlier server started counts as busy but
        holds no known slot: it ran on whichever GPU it was given then)."""
        held = [tracked.slot for tracked in self._tracked.values() if tracked.process]
        return next((slot for slot in self.slots if slot not in held), self.slots[0])

    def _ended(self, job: Job, tracked: _Tracked) -> bool:
        """Record the job's end if its process ended; whether it did."""
        if tracked.process is not None:
            code = tracked.process.poll()
            if code is None:
                return False
            state = "interrupted" if tracked.closing and not job.stop_requested else None
            self.queue.mark_ended(job.id, code, state)
            return True
        if self.queue.is_alive(job):
            return False
        state = "stopped" if job.stop_requested else _run_outcome(job)
        self.queue.mark_ended(job.id, None, state)  # not our child: no exit code to read
        return True

    def _escalate(self, tracked: _Tracked) -> None:
        """SIGINT once; SIGTERM after stop_timeout_s; SIGKILL after kill_timeout_s more."""
        now = time.monotonic()
        if tracked.sigint_at is None:
            tracked.sigint_at = now
            _signal_group(tracked.pid, signal.SIGINT)
        elif tracked.sigterm_at is None:
            if now - tracked.sigint_at >= self.stop_timeout_s:
                tracked.sigterm_at = now
                _signal_group(tracked.pid, signal.SIGTERM)
        elif not tracked.sigkill_sent and now - tracked.sigterm_at >= self.kill_timeout_s:
            tracked.sigkill_sent = True
            _signal_group(tracked.pid, signal.SIGKILL)

    def _start_next(self, slot: str | None) -> bool:
        """Start the oldest queued job on ``slot``; whether there was one to take."""
        job = self.queue.next_queued()
        if job is None:
            return False
        try:
            argv = self._argv_for(job)
            process = self._launch(job, argv, slot)
        except (InvalidInputError, OSError) as error:
            # A job that cannot start (a dataset path that now leads out, a missing
            # interpreter) fails, saying why in its log; the queue goes on.
            _append(job, f"lvseg workbench: cannot start job {job.id}: {error}\n")
            self.queue.mark_ended(job.id, None, "failed")
            return True
        try:
            self.queue.mark_running(job.id, process.pid)
        except InvalidInputError:
            # Stopped or deleted while it was launched: it has done nothing worth keeping.
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
            return True
        self._tracked[job.id] = _Tracked(job.id, process.pid, process, slot)
        return True

    def _launch(self, job: Job, argv: list[str], slot: str | None) -> subprocess.Popen:
        log_path = job.log_path or self.queue.workspace.logs / f"job-{job.id:04d}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the log follows as it prints
        if slot is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot  # the job's own GPU, its cuda:0
        with open(log_path, "ab") as log:  # the child keeps its own copy of the handle
            return subprocess.Popen(
                argv,  # a list, never a shell string
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.queue.workspace.root,
                env=env,
                start_new_session=True,  # its own process group, to signal it whole
            )

    # -- the background thread

    def start(self) -> Runner:
        """Run ticks every ``poll_s`` seconds (or at once on :meth:`wake`) on a thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="lvseg-runner", daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        """Tick now rather than at the next poll (after a submit or a stop request)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._closing.is_set():
            try:
                self.tick()
            except Exception:  # a locked or full database: log it, try again next poll
                _log.exception("workbench runner: a scheduling step failed")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def close(self, timeout_s: float | None = None) -> None:
        """Stop the thread, then stop the job this runner started (SIGINT first, as a stop
        request) and mark it interrupted, so it can be resumed. Waits for it to end."""
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            ours = [t for t in self._tracked.values() if t.process is not None]
            for tracked in ours:
                tracked.closing = True
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while ours and (deadline is None or time.monotonic() < deadline):
            with self._lock:
                self._watch_running()
            ours = [t for t in ours if t.job_id in self._tracked]
            time.sleep(0.05)

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    if pid <= 1:  # killpg(0) would signal our own group
        return
    try:
        os.killpg(pid, sig)  # the job leads its group: its data workers get it too
    except ProcessLookupError:
        pass


def _append(job: Job, text: str) -> None:
    if job.log_path is None:
        return
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log_path, "a", encoding="utf-8") as log:
        log.write(text)


def _run_outcome(job: Job) -> str:
    """How the run of a job that ended unseen finished, from its run.db; interrupted where
    the run says nothing (it never started, or died without a word)."""
    try:
        with RunStore.open(job.run_dir, readonly=True) as store:
            return _RUN_OUTCOME.get(store.status, "interrupted")
    except (LvsegError, sqlite3.Error, OSError):  # no run, a damaged run.db: nothing to learn
        return "interrupted"
