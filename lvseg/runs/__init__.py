"""The run store: a run directory (config, SQLite database, checkpoints) and its one API.

The trainer and its probes write through :class:`RunStore`; the dashboard, listings, selection
and reports read through it. Standard library only, so readers never import torch.
"""

from lvseg.runs.store import (
    CHECKPOINT_KINDS,
    READ_BUSY_TIMEOUT_S,
    SCHEMA_VERSION,
    STATUSES,
    CorruptRunError,
    RunLockedError,
    RunStore,
    RunSummary,
    is_run,
    list_runs,
    summarise_run,
)

__all__ = [
    "CHECKPOINT_KINDS",
    "READ_BUSY_TIMEOUT_S",
    "SCHEMA_VERSION",
    "STATUSES",
    "CorruptRunError",
    "RunLockedError",
    "RunStore",
    "RunSummary",
    "is_run",
    "list_runs",
    "summarise_run",
]
