""":class:`RunStore`, one run's whole store: each family of tables is a part of it (a module of
:mod:`lvseg.runs.store`); resuming, which cuts every table at once, lives here, with the
listing of a folder's runs."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from lvseg import layout
from lvseg.errors import InvalidInputError
from lvseg.runs.store.checkpoints import CheckpointRecords
from lvseg.runs.store.database import dumps
from lvseg.runs.store.events import EventLog
from lvseg.runs.store.metrics import MetricLog
from lvseg.runs.store.probes import ProbeLog
from lvseg.runs.store.status import RunStatus
from lvseg.runs.store.summary import RunSummaries, RunSummary, is_run, unreadable_status
from lvseg.runs.store.watch import WatchLog


class RunStore(RunSummaries, ProbeLog, RunStatus, MetricLog, CheckpointRecords, EventLog, WatchLog):
    """One run directory: its config, its database and the records of its checkpoints.

    Make one with :meth:`create` (a new run) or :meth:`open` (resume, or read). Every public
    write is one transaction; methods may be called from several threads of one process.
    """

    def truncate_after(self, step: int, epoch: int, message: str | None = None) -> dict[str, int]:
        """Forget what a killed run logged after the checkpoint it resumes from.

        Deletes steps, layer statistics and histograms after ``step``, epochs and watch
        pictures after ``epoch``, and events after either (events with neither a step nor an
        epoch are kept). Checkpoint records are kept: their files are still on disk. Records a
        "resumed" event and the status "running" (both saying ``message``, by default where it
        resumed from), and returns how many rows of each kind went. ``truncate_after(0, 0)``
        restarts a run from scratch. A live poller that sees the "resumed" event should drop
        what it holds after that event's step.
        """
        step, epoch = int(step), int(epoch)
        with self._write() as db:
            removed = {
                "steps": db.execute("DELETE FROM steps WHERE step > ?", (step,)).rowcount,
                "epochs": db.execute("DELETE FROM epochs WHERE epoch > ?", (epoch,)).rowcount,
                "layer_stats": db.execute(
                    "DELETE FROM layer_stats WHERE step > ?", (step,)
                ).rowcount,
                "histograms": db.execute("DELETE FROM histograms WHERE step > ?", (step,)).rowcount,
                "watch": db.execute("DELETE FROM watch WHERE epoch > ?", (epoch,)).rowcount,
                "events": db.execute(
                    "DELETE FROM events WHERE step > ? OR (step IS NULL AND epoch > ?)",
                    (step, epoch),
                ).rowcount,
            }
            now = time.time()
            message = message or f"resumed from step {step}, epoch {epoch}"
            db.execute(
                "INSERT INTO events (time, kind, message, step, epoch, data)"
                " VALUES (?, 'resumed', ?, ?, ?, ?)",
                (now, message, step, epoch, dumps({"removed": removed})),
            )
            db.execute(
                "INSERT INTO status (time, status, message) VALUES (?, 'running', ?)",
                (now, message),
            )
        return removed


def summarise_run(run_dir: str | Path) -> RunSummary:
    """The summary of one run; one that cannot be read gets the status "locked" (another
    process holds its database; the listing waits :data:`READ_BUSY_TIMEOUT_S` at most) or
    "corrupt", and the reason in ``error``. Never raises for a bad run: a listing shows the
    others whatever one of them holds."""
    run_dir = Path(run_dir)
    try:
        with RunStore.open(run_dir, readonly=True) as store:
            return store.summary()
    except (InvalidInputError, sqlite3.Error, OSError, ValueError) as error:
        return RunSummary(
            name=run_dir.name,
            path=run_dir,
            status=unreadable_status(error),
            selected=(run_dir / layout.SELECTED).is_file(),
            error=str(error),
        )


def list_runs(root: str | Path) -> list[RunSummary]:
    """Summaries of every run directly under ``root`` (or of ``root`` itself if it is a run).

    Folders without a run.db are skipped; a run whose database cannot be read is listed with
    status "corrupt" or "locked" and the reason (:func:`summarise_run`). Runs are sorted by
    name.
    """
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError(root, "no such runs folder")
    if is_run(root):
        return [summarise_run(root)]
    return [summarise_run(child) for child in sorted(root.iterdir()) if is_run(child)]
