"""The run directory and its SQLite database: the one API that writes and reads a training run.

A run is a folder::

    runs/NAME/
      config.json     the exact config the run ran with (written once, atomically)
      run.db          SQLite in WAL mode: readable by other processes while training writes
      checkpoints/    last.pt, best.pt, ... (the trainer writes the files; the store records them)
      selected.json   written by model selection
      run.db.damaged-<time>   a damaged run.db a resume kept aside (:mod:`lvseg.runs.folder`)

The trainer and its probes write rows; the dashboard, ``lvseg runs`` listings, selection and
reports read them. Standard library only (no torch, no numpy), so a reader starts fast on a
machine without a GPU stack.

**One writer.** Only one process may write a run (rank 0 in distributed training). SQLite would
serialise two writers without corrupting the file, but their rows would interleave meaninglessly.
Any number of readers may open the run with ``readonly=True`` at the same time, from any process.

:class:`RunStore` is made of one part per family of tables: ``database`` (opening,
transactions), ``schema``, ``errors``, ``status`` (config, meta, status), ``metrics`` (steps,
epochs), ``checkpoints``, ``events``, ``probes`` (layer statistics, histograms), ``watch``
(pictures) and ``summary`` (what a listing shows); ``run`` puts them together.

>>> import tempfile, pathlib
>>> run_dir = pathlib.Path(tempfile.mkdtemp()) / "demo"
>>> with RunStore.create(run_dir, {"lr": 0.001}, meta={"model": "lvnet"}) as store:
...     store.log_step(0, 0, loss=0.9, lr=0.001)
...     store.log_epoch(0, train_loss=0.8, val_dice=0.5)
>>> with RunStore.open(run_dir, readonly=True) as store:
...     [row["loss"] for row in store.steps()], store.status, store.config
([0.9], 'running', {'lr': 0.001})
"""

from lvseg.runs.store.checkpoints import CHECKPOINT_KINDS, SINGLE_CHECKPOINT_KINDS
from lvseg.runs.store.database import BUSY_TIMEOUT_S, READ_BUSY_TIMEOUT_S
from lvseg.runs.store.errors import (
    CorruptRunError,
    RunLockedError,
    database_error,
    raise_database_error,
)
from lvseg.runs.store.run import RunStore, list_runs, summarise_run
from lvseg.runs.store.schema import SCHEMA_VERSION
from lvseg.runs.store.status import STATUSES
from lvseg.runs.store.summary import RunSummary, is_run, unreadable_status

__all__ = [
    "BUSY_TIMEOUT_S",
    "CHECKPOINT_KINDS",
    "READ_BUSY_TIMEOUT_S",
    "SCHEMA_VERSION",
    "SINGLE_CHECKPOINT_KINDS",
    "STATUSES",
    "CorruptRunError",
    "RunLockedError",
    "RunStore",
    "RunSummary",
    "database_error",
    "is_run",
    "list_runs",
    "raise_database_error",
    "summarise_run",
    "unreadable_status",
]
