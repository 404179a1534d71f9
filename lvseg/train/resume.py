"""Resuming a run: what it starts from, and the run store it goes on writing.

A run killed at any point and resumed from its last checkpoint replays the lost part exactly:
the checkpoint holds the optimiser, schedule, scaler, counters and random states, and every
draw of an epoch comes from the seed and the epoch (:mod:`lvseg.train.loop`). In deterministic
mode on CPU it ends with the same weights as an uninterrupted run
(``tests/train/test_resume.py`` kills one with SIGKILL to prove it).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from lvseg import layout
from lvseg.config import TrainConfig
from lvseg.errors import InvalidInputError
from lvseg.runs.checkpoint import Checkpoint, load_checkpoint
from lvseg.runs.folder import remove_stale_temporaries, set_aside_database
from lvseg.runs.store import CorruptRunError, RunStore
from lvseg.train.checkpointing import record_checkpoints
from lvseg.train.state import Start, Trainer


def resume_source(run_dir: Path) -> tuple[Checkpoint | None, TrainConfig]:
    """What a resume starts from: ``checkpoints/last.pt`` and the config saved in it, or, for a
    run killed before its first checkpoint, nothing and the run's saved config.json."""
    path = layout.checkpoint_path(run_dir, layout.LAST_CHECKPOINT)
    if path.is_file():
        resumed = load_checkpoint(path)
        if resumed.training is None or resumed.train_config is None:
            raise InvalidInputError(path, "nothing to resume: the checkpoint has no training state")
        return resumed, resumed.train_config
    saved = run_dir / layout.RUN_CONFIG
    if not (run_dir / layout.RUN_DATABASE).is_file() and not saved.is_file():
        raise InvalidInputError(
            run_dir, f"nothing to resume: not a run directory (no {layout.RUN_DATABASE})"
        )
    try:
        return None, TrainConfig.load(saved)
    except InvalidInputError as error:
        raise InvalidInputError(
            run_dir,
            f"nothing to resume: the run has no checkpoint yet and its saved config cannot be "
            f"used ({error}); start it again with lvseg train --out {run_dir} --overwrite",
        ) from None


def resume_store(trainer: Trainer, start: Start, meta: dict[str, Any]) -> RunStore:
    """The run store a resume writes to, ready for the epochs after the checkpoint.

    - A run another live process is training is refused (a run has one writer).
    - Partial files of killed atomic writes (``checkpoints/.last.pt.XXXXXXXX.tmp``) go.
    - A readable run.db forgets what was logged after the checkpoint (:meth:`truncate_after`).
    - A damaged run.db (any page: it is checked whole) is renamed ``run.db.damaged-<time>``,
      never deleted, and a new one is made from the checkpoint: config, meta, the checkpoint
      records and their epochs' metrics; a warning says so. A missing run.db is made the same
      way. Training goes on exactly from the checkpoint either way.
    - Without a checkpoint (``start.checkpoint`` None), the run starts again from scratch, and
      says so.
    """
    run_dir, progress, counters = start.run_dir, trainer.progress, trainer.counters
    store, problem = _open_readable(run_dir)
    removed = remove_stale_temporaries(run_dir)
    if removed:
        names = ", ".join(path.relative_to(run_dir).as_posix() for path in removed)
        progress.on_message(
            f"removed {len(removed)} partial file(s) of an interrupted write: {names}"
        )
    restart = None
    if start.checkpoint is None:
        restart = (
            f"{run_dir} has no checkpoint yet: restarting it from scratch with its saved config "
            f"({run_dir / layout.RUN_CONFIG})"
        )
    if store is None:
        store = _new_store(trainer, start, meta, problem)
    elif restart is not None:
        store.truncate_after(0, 0, message="restarted from scratch: no checkpoint yet")
        store.set_meta(**meta, **_this_process())
        store.set_status("running")
    else:
        store.truncate_after(counters.step, counters.epoch)
        store.set_meta(**_this_process())
        store.set_status("running")
    if restart is not None:
        progress.on_message(restart)
    return store


def _open_readable(run_dir: Path) -> tuple[RunStore | None, str | None]:
    """The run's store if it is whole (None if there is none), or None and what is wrong with
    it. A store another live process writes is refused."""
    if not (run_dir / layout.RUN_DATABASE).is_file():
        return None, None
    store: RunStore | None = None
    try:
        store = RunStore.open(run_dir)
        _refuse_live_writer(store, run_dir)
        store.check_integrity()
    except CorruptRunError as error:
        if store is not None:
            store.close()
        return None, error.problem
    except BaseException:
        if store is not None:
            store.close()
        raise
    return store, None


def _new_store(
    trainer: Trainer, start: Start, meta: dict[str, Any], problem: str | None
) -> RunStore:
    """A new run store for a run whose run.db is damaged (``problem``) or missing; the damaged
    one is set aside. It holds the checkpoints on disk, and a warning says what was lost."""
    run_dir, counters = start.run_dir, trainer.counters
    database = run_dir / layout.RUN_DATABASE
    aside = set_aside_database(run_dir)
    what = f"{database} is damaged ({problem})" if problem else f"{run_dir} has no {database.name}"
    kept = f"; it is kept as {aside.name}" if aside is not None else ""
    if start.checkpoint is not None:
        origin = (
            f"from {layout.checkpoint_relative(layout.LAST_CHECKPOINT)} (epoch {counters.epoch}, "
            f"step {counters.step}): what was logged before is not in it; training continues "
            "exactly from the checkpoint"
        )
    else:
        origin = "for the restart"
    warning = f"{what}{kept}. Started a new run database {origin}"
    store = RunStore.create(
        run_dir, trainer.config.to_dict(), meta={**meta, "recovered_from": aside and aside.name}
    )
    try:
        if start.checkpoint is not None:
            record_checkpoints(store, run_dir, start.checkpoint, trainer.report.parameters)
        where = f"step {counters.step}, epoch {counters.epoch}"
        store.truncate_after(
            counters.step, counters.epoch, message=f"resumed from {where} in a new run database"
        )
        store.event("recovered", warning, damaged=aside and aside.name, problem=problem)
    except BaseException:
        store.close()
        raise
    trainer.progress.on_message(f"warning: {warning}")
    return store


def _refuse_live_writer(store: RunStore, run_dir: Path) -> None:
    pid = store.meta.get("pid")
    if store.status == "running" and pid != os.getpid() and store.writer_alive():
        raise InvalidInputError(
            run_dir, f"is being trained right now (process {pid}): stop it before resuming"
        )


def _this_process() -> dict[str, Any]:
    """The writer a run store records, so that another trainer can tell it is alive."""
    return {"pid": os.getpid(), "host": socket.gethostname()}
