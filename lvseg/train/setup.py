"""Setting a run up: where it starts from, seeds and determinism, the data, the model and its
optimiser. :func:`setup` builds them in one fixed order, so a resumed run rebuilds them the same
way before it loads the checkpoint's states over them."""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lvseg import layout
from lvseg.config import TrainConfig
from lvseg.data.augment import AugmentConfig, Augmenter
from lvseg.errors import InvalidInputError
from lvseg.model.registry import build_model, size_report
from lvseg.runs.checkpoint import Checkpoint, load_initial_weights
from lvseg.runs.folder import check_replaceable_run
from lvseg.train import distributed
from lvseg.train.data import TrainingData, prepare
from lvseg.train.loop import steps_per_epoch
from lvseg.train.resume import resume_source
from lvseg.train.rng import restore_rng_state
from lvseg.train.state import Counters, Progress, Start, Trainer


def starting_point(
    config: TrainConfig, run_dir: Path, resume: bool, overwrite: bool, context: distributed.Context
) -> Start:
    """What the run in ``run_dir`` starts from: a new run, one that replaces the run there, or
    the run there resumed (with its saved config). A folder that holds a run is refused
    otherwise."""
    if resume and overwrite:
        raise InvalidInputError(
            None, "--resume continues a run and --overwrite replaces it: give one of them"
        )
    if resume:
        checkpoint, saved = resume_source(run_dir)
        return Start(saved, run_dir, "resume", checkpoint)
    if overwrite:
        if context.is_main:  # checked now, replaced once data and model are ready
            check_replaceable_run(run_dir, keep=[config.data.path])
        return Start(config, run_dir, "overwrite")
    if (run_dir / layout.RUN_DATABASE).exists() or layout.checkpoint_path(run_dir).exists():
        raise InvalidInputError(
            run_dir,
            "already holds a run: use --resume to continue it, --overwrite to start it "
            "again from scratch, or another --out",
        )
    return Start(config, run_dir, "new")


def setup(
    start: Start, context: distributed.Context, device: torch.device, progress: Progress
) -> Trainer:
    """Seeds, data, model, optimiser and schedule, and a resumed run's states loaded over them.
    Nothing here writes the run folder (the run store is opened next)."""
    config = start.config
    init = config.model.init if start.checkpoint is None else None
    if init is not None:
        # a bad or mismatched checkpoint fails before the data are read (a throwaway model,
        # built before the seed is set, so the run's own draws are untouched)
        throwaway = build_model(config.model.name, **config.model.options)
        load_initial_weights(throwaway, init, config.model.name)
    if config.runtime.threads:
        torch.set_num_threads(config.runtime.threads)
    seed_everything(config.seed, config.runtime.deterministic)
    amp = autocast_dtype(config.runtime.precision, device)
    data = _prepare_data(config, context)
    per_epoch = steps_per_epoch(data, config.optim.batch_size, context)
    augmenter = Augmenter(AugmentConfig.from_dict(config.augment))

    model = build_model(config.model.name, **config.model.options)
    initialised = None if init is None else load_initial_weights(model, init, config.model.name)
    report = size_report(model)
    model.to(device)
    if device.type == "cuda" and config.runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config.optim.lr, config.optim.weight_decay)
    scheduler = make_scheduler(optimizer, config, per_epoch)
    scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)
    trainer = Trainer(
        config=config,
        run_dir=start.run_dir,
        context=context,
        device=device,
        amp=amp,
        data=data,
        augmenter=augmenter,
        model=model,
        network=model,  # compiled and wrapped below, once a resume has loaded its weights
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        report=report,
        steps_per_epoch=per_epoch,
        progress=progress,
        initialised_from=initialised,
    )
    if start.checkpoint is not None:
        _restore(trainer, start.checkpoint)
    trainer.network = _network(model, config, context, device)
    return trainer


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None: plain fp32)."""
    if device.type != "cuda":
        if precision in ("bf16", "fp16"):
            raise InvalidInputError(None, f"--precision {precision} needs a CUDA device")
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; weight decay on convolution weights only (not on norms, biases or scalars)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    other = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0}]
    return torch.optim.AdamW(groups, lr=lr)


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning rate per step: ``optim.schedule`` after ``optim.warmup_epochs``."""
    optim = config.optim
    total = max(1, optim.epochs * steps_per_epoch)
    warmup = min(int(round(optim.warmup_epochs * steps_per_epoch)), total - 1)
    if optim.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=optim.lr, total_steps=total, pct_start=max(warmup / total, 0.05)
        )

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if optim.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def run_meta(trainer: Trainer) -> dict[str, Any]:
    """What the run store records of the set-up: model, device, data and plan."""
    config, data, report = trainer.config, trainer.data, trainer.report
    return {
        "model": config.model.name,
        "parameters": report.parameters,
        "macs": report.macs,
        "torch_version": torch.__version__,
        "device": str(trainer.device),
        "world_size": trainer.context.world_size,
        "precision": str(trainer.amp).replace("torch.", "") if trainer.amp else "fp32",
        "data_source": data.source,
        "train_patients": list(data.split.train),
        "val_patients": list(data.split.val),
        "train_slices": int(len(data.train_indices)),
        "val_slices": 0 if data.val is None else len(data.val),
        "plan": data.plan.to_dict(),
    }


def _prepare_data(config: TrainConfig, context: distributed.Context) -> TrainingData:
    # rank 0 builds the cache first; the other ranks then read it
    if context.is_main:
        data = prepare(config.data, config.seed)
    distributed.barrier(context)
    if not context.is_main:
        data = prepare(config.data, config.seed)
    if len(data.train_indices) < 2:
        raise InvalidInputError(config.data.path, "fewer than 2 training slices")
    return data


def _restore(trainer: Trainer, checkpoint: Checkpoint) -> None:
    """Load a resumed run's weights, optimiser, schedule, scaler, counters and random states."""
    assert checkpoint.training is not None
    trainer.model.load_state_dict(checkpoint.state_dict)
    trainer.optimizer.load_state_dict(checkpoint.training.optimizer)
    trainer.scheduler.load_state_dict(checkpoint.training.scheduler)
    trainer.scaler.load_state_dict(checkpoint.training.scaler)
    trainer.counters = Counters(**checkpoint.training.trainer)
    restore_rng_state(checkpoint.training.rng)


def _network(
    model: nn.Module, config: TrainConfig, context: distributed.Context, device: torch.device
) -> nn.Module:
    """What trains: the model, compiled and wrapped in DDP where asked."""
    network = model
    if config.runtime.compile:
        network = torch.compile(network)
    if context.distributed:
        network = DistributedDataParallel(
            network, device_ids=[device.index] if device.type == "cuda" else None
        )
    return network
