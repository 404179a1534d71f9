"""The checkpoints of a run: written after each epoch and recorded in its run store.

Checkpoints are written best first, then last: ``last.pt`` is the resume point, so once it says
epoch N everything of epoch N is on disk. A write that fails (a full disk) leaves the previous
files whole and raises the ``OSError`` (or SQLite's "database or disk is full") as it is, which
the CLI reports in one line; the run can then be resumed.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from lvseg import __version__, layout
from lvseg.errors import InvalidInputError
from lvseg.model.registry import config_of
from lvseg.runs.checkpoint import Checkpoint, TrainingState, all_finite, load_checkpoint
from lvseg.runs.store import RunStore
from lvseg.train.rng import rng_state
from lvseg.train.state import Trainer


def save_checkpoints(trainer: Trainer, metrics: dict[str, Any], improved: bool) -> None:
    """``last.pt``, and ``best.pt`` when the epoch ``improved`` the validation Dice; each one
    recorded in the run store with the epoch's ``metrics``. Weights that are not finite are
    not saved: an event says so."""
    store, counters = trainer.store, trainer.counters
    assert store is not None  # rank 0 only
    state_dict = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
    if not all_finite(state_dict):
        store.event(
            "nonfinite_weights",
            f"epoch {counters.epoch}: weights are not finite; no checkpoint saved",
            epoch=counters.epoch,
            step=counters.step,
        )
        return
    clean = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    saved = Checkpoint(
        model_name=trainer.config.model.name,
        model_config=config_of(trainer.model),
        state_dict=state_dict,
        plan=trainer.data.plan,
        train_config=trainer.config,
        split=trainer.data.split,  # so an evaluation can leave the training patients out
        epoch=counters.epoch,
        step=counters.step,
        metrics=clean,
        lvseg_version=__version__,
        training=TrainingState(
            optimizer=trainer.optimizer.state_dict(),
            scheduler=trainer.scheduler.state_dict(),
            scaler=trainer.scaler.state_dict(),
            rng=rng_state(),
            trainer=asdict(counters),
        ),
    )
    for kind, name, wanted in (
        ("best", layout.BEST_CHECKPOINT, improved),
        ("last", layout.LAST_CHECKPOINT, True),
    ):
        if not wanted:
            continue
        size = saved.save(layout.checkpoint_path(trainer.run_dir, name))
        store.add_checkpoint(
            kind,
            layout.checkpoint_relative(name),
            epoch=counters.epoch,
            step=counters.step,
            metrics=clean,
            parameters=trainer.report.parameters,
            size_bytes=size,
        )


def record_checkpoints(store: RunStore, run_dir: Path, last: Checkpoint, parameters: int) -> None:
    """Record in a new store the checkpoints on disk (``last``, and best where it loads), with
    their epochs' metrics, as the store of the run that wrote them had them."""
    found: list[tuple[str, str, Checkpoint]] = [("last", layout.LAST_CHECKPOINT, last)]
    best = layout.checkpoint_path(run_dir, layout.BEST_CHECKPOINT)
    if best.is_file():
        try:
            found.insert(0, ("best", layout.BEST_CHECKPOINT, load_checkpoint(best)))
        except InvalidInputError:
            pass  # an unreadable best.pt is not recorded; the next better epoch replaces it
    for kind, name, checkpoint in found:
        epoch, step = int(checkpoint.epoch or 0), int(checkpoint.step or 0)
        if checkpoint.metrics:
            store.log_epoch(epoch, **checkpoint.metrics)
        store.add_checkpoint(
            kind,
            layout.checkpoint_relative(name),
            epoch=epoch,
            step=step,
            metrics=checkpoint.metrics,
            parameters=parameters,
            size_bytes=layout.checkpoint_path(run_dir, name).stat().st_size,
        )
