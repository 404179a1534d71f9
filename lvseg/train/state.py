"""What the phases of a training run share: the progress callbacks, where the run starts from,
the counters saved in every checkpoint, and the :class:`Trainer` that holds it all."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lvseg.config import TrainConfig
from lvseg.data.augment import Augmenter
from lvseg.model.registry import SizeReport
from lvseg.monitor.recorder import TrainingMonitor
from lvseg.runs.checkpoint import Checkpoint
from lvseg.runs.store import RunStore
from lvseg.train import distributed
from lvseg.train.data import TrainingData


@dataclass
class Progress:
    """What the loop reports as it goes; the CLI draws it, library callers may ignore it."""

    on_start: Callable[[int, int, int], None] = lambda total_steps, start_step, epochs: None
    on_step: Callable[[int, int, dict[str, float]], None] = lambda step, epoch, metrics: None
    """Called after each step is logged (``step`` counts from 1 over the whole run)."""
    on_epoch: Callable[[int, dict[str, Any]], None] = lambda epoch, metrics: None
    """Called after each epoch is validated, logged and checkpointed."""
    on_message: Callable[[str], None] = lambda text: None
    on_alert: Callable[[str], None] = lambda text: None


@dataclass(frozen=True)
class Start:
    """What a run starts from, settled before anything is built."""

    config: TrainConfig
    """The config it runs with (a resume's is the one saved with the run)."""
    run_dir: Path
    mode: str
    """``new``, ``overwrite`` (replace the run in ``run_dir``) or ``resume``."""
    checkpoint: Checkpoint | None = None
    """The ``last.pt`` a resume continues from (None: the run starts from scratch)."""


@dataclass
class Counters:
    """The trainer's own counters, saved in every checkpoint (every field, by name)."""

    epoch: int = 0
    """Completed epochs."""
    step: int = 0
    best_dice: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    nonfinite_in_row: int = 0
    nonfinite_total: int = 0

    def end_epoch(self, epoch: int, dice: float | None, min_delta: float) -> bool:
        """Count ``epoch`` as done; whether its validation Dice is the best so far (by more
        than ``min_delta``). Early stopping counts the epochs that were not."""
        self.epoch = epoch
        if dice is None or not math.isfinite(dice):
            return False
        if self.best_dice is None or dice > self.best_dice + min_delta:
            self.best_dice, self.best_epoch, self.bad_epochs = dice, epoch, 0
            return True
        self.bad_epochs += 1
        return False


@dataclass
class Trainer:
    """Everything the phases of one run share, built by :func:`lvseg.train.setup.setup`."""

    config: TrainConfig
    run_dir: Path
    context: distributed.Context
    device: torch.device
    amp: torch.dtype | None
    """The autocast dtype (None: plain fp32)."""
    data: TrainingData
    augmenter: Augmenter
    model: nn.Module
    """The weights: what is validated, probed and saved."""
    network: nn.Module
    """What trains: the model, compiled and wrapped in DDP where asked."""
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    report: SizeReport
    steps_per_epoch: int
    progress: Progress
    counters: Counters = field(default_factory=Counters)
    initialised_from: Path | None = None
    """The checkpoint whose weights the run started from (``--init``), if any."""
    store: RunStore | None = None
    """The run store: rank 0 writes it, the other ranks have none."""
    monitor: TrainingMonitor | None = None
    """The live monitor (rank 0, unless turned off)."""

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()
        if self.store is not None:
            self.store.close()
