"""The training loop: plain code, top to bottom, in clearly separated phases.

1. **Set up** (:mod:`lvseg.train.setup`): what the run starts from (new, replacing the run in
   ``out``, or resuming it), process group under torchrun, seeds and determinism, the data
   (:mod:`lvseg.train.data`), the model, AdamW and a per-step schedule; mixed precision on
   CUDA (bf16 autocast, or fp16 with a gradient scaler).
2. **Run store** (rank 0 only): a new run directory, or the resumed one
   (:mod:`lvseg.train.resume`), and the live monitor (:mod:`lvseg.monitor.recorder`), which
   probes the layers every few steps, raises alerts and records the watch slices.
3. **Epochs**: augmented batches and an optimiser step per batch (:mod:`lvseg.train.loop`),
   validation Dice, the epoch logged, checkpoints (:mod:`lvseg.train.checkpointing`), early
   stopping.
4. **Finish**: the run's status, and what it did.

Epochs are numbered from 1 in the store, checkpoints and messages (epoch 1 is the first one
trained). Everything the phases share is one :class:`~lvseg.train.state.Trainer`.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, replace
from pathlib import Path

from lvseg import layout
from lvseg.config import TrainConfig
from lvseg.errors import InvalidInputError
from lvseg.monitor.recorder import TrainingMonitor
from lvseg.runs.folder import replace_run
from lvseg.runs.store import RunStore
from lvseg.train import distributed
from lvseg.train.checkpointing import save_checkpoints
from lvseg.train.loop import train_epoch, validate
from lvseg.train.resume import resume_store
from lvseg.train.setup import run_meta, setup, starting_point
from lvseg.train.state import Progress, Start, Trainer

__all__ = ["Progress", "TrainResult", "train"]


@dataclass
class TrainResult:
    run_dir: Path
    status: str
    """``finished``, or ``stopped`` early (no better validation Dice for a while)."""
    epochs: int
    steps: int
    best_dice: float | None
    best_epoch: int | None
    seconds: float


def train(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> TrainResult:
    """Train one model as ``config`` says, into the run directory ``out``.

    ``resume`` continues the run in ``out`` from its ``checkpoints/last.pt``, with the config
    saved there (``config`` is ignored); a run with no checkpoint yet starts again from scratch
    with its saved config.json (:func:`lvseg.train.resume.resume_store`). Without ``resume`` a
    folder that holds a run is refused, unless ``overwrite``: then the run is deleted first, if
    it is a run lvseg wrote and no trainer is writing it
    (:func:`lvseg.runs.folder.check_replaceable_run`).
    """
    started = time.perf_counter()
    context, device = distributed.setup(config.runtime.device)
    trainer: Trainer | None = None
    try:
        # 1. set up: what the run starts from, seeds, data, model and optimiser
        start = starting_point(config, Path(out), resume, overwrite, context)
        trainer = setup(start, context, device, progress or Progress())
        # 2. the run store and the monitor (rank 0 only)
        open_run(trainer, start)
        # 3. epochs
        optim = trainer.config.optim
        stop: str | None = None  # why the run stopped early, if it did
        for epoch in range(trainer.counters.epoch + 1, optim.epochs + 1):
            metrics = train_epoch(trainer, epoch)
            metrics.update(validate(trainer))
            improved = trainer.counters.end_epoch(epoch, metrics.get("val_dice"), optim.min_delta)
            metrics["best"] = improved
            if trainer.store:
                trainer.store.log_epoch(epoch, **metrics)
                save_checkpoints(trainer, metrics, improved)
            if trainer.monitor:
                trainer.monitor.end_epoch(trainer.model, epoch, metrics)
            trainer.progress.on_epoch(epoch, metrics)
            stop = early_stop(trainer)
            if stop:
                break
        # 4. finish
        return finish(trainer, stop, started)
    except BaseException as error:
        if trainer is not None and trainer.store is not None:
            _mark_ended_by(trainer.store, error)
        raise
    finally:
        if trainer is not None:
            trainer.close()
        distributed.shutdown(context)


def open_run(trainer: Trainer, start: Start) -> None:
    """Rank 0 opens the run store (new, replacing the run there, or resumed) and the monitor;
    every rank then says where it starts."""
    config, run_dir, progress = trainer.config, trainer.run_dir, trainer.progress
    if trainer.context.is_main:
        meta = run_meta(trainer)
        if start.mode == "resume":
            trainer.store = resume_store(trainer, start, meta)
        else:
            if start.mode == "overwrite" and replace_run(run_dir, keep=[config.data.path]):
                progress.on_message(f"replaced the run that was in {run_dir}")
            trainer.store = RunStore.create(run_dir, config.to_dict(), meta=meta)
        (run_dir / layout.CHECKPOINTS).mkdir(exist_ok=True)
        if config.monitor.enabled:
            # Activation hooks would break a compiled graph: gradients only under compile.
            monitor = config.monitor
            if config.runtime.compile:
                monitor = replace(monitor, activations=False)
            trainer.monitor = TrainingMonitor(
                monitor, trainer.model, trainer.store, trainer.data.val, trainer.device
            )
    counters = trainer.counters
    progress.on_start(
        config.optim.epochs * trainer.steps_per_epoch, counters.step, config.optim.epochs
    )
    if start.checkpoint is not None:
        progress.on_message(f"resumed {run_dir} at epoch {counters.epoch}, step {counters.step}")
    if trainer.initialised_from is not None:
        said = f"started from the weights of {trainer.initialised_from}"
        progress.on_message(said)
        if trainer.store:
            trainer.store.event("init", said)


def early_stop(trainer: Trainer) -> str | None:
    """Why the run stops after this epoch (``optim.early_stopping`` epochs without a better
    validation Dice), or None: it goes on."""
    counters, patience = trainer.counters, trainer.config.optim.early_stopping
    if not patience or trainer.data.val is None or counters.bad_epochs < patience:
        return None
    message = (
        f"early stopping after epoch {counters.epoch}: no better validation Dice for "
        f"{counters.bad_epochs} epochs (best {counters.best_dice:.4f} at epoch "
        f"{counters.best_epoch})"
    )
    if trainer.store:
        trainer.store.event("early_stop", message, epoch=counters.epoch, step=counters.step)
    trainer.progress.on_message(message)
    return message


def finish(trainer: Trainer, stop: str | None, started: float) -> TrainResult:
    """Record how the run ended (``stop``: why it stopped early) and say what it did."""
    status = "stopped" if stop else "finished"
    if trainer.store:
        trainer.store.set_status(status, stop)
    counters = trainer.counters
    return TrainResult(
        run_dir=trainer.run_dir,
        status=status,
        epochs=counters.epoch,
        steps=counters.step,
        best_dice=counters.best_dice,
        best_epoch=counters.best_epoch,
        seconds=time.perf_counter() - started,
    )


def _mark_ended_by(store: RunStore, error: BaseException) -> None:
    """Mark the run this call opened as stopped (Ctrl-C) or failed (a run found in ``out``,
    "already holds a run", is never touched). Best effort: on a full disk or a damaged database
    the status cannot be written, and the error that stopped the run is the one to report."""
    interrupted = isinstance(error, KeyboardInterrupt)
    reason = str(error) or type(error).__name__
    try:
        store.set_status("stopped" if interrupted else "failed", reason)
    except (InvalidInputError, sqlite3.Error):
        pass
