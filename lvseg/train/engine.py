"""The training loop: plain code, top to bottom, in clearly separated phases.

1. **Set up**: process group (under torchrun), device, seeds, determinism.
2. **Data**: load, split by patient, plan, cache (:mod:`lvseg.train.data`).
3. **Model and optimiser**: a registry model, AdamW (no decay on norms and biases), a per-step
   schedule; mixed precision (bf16 autocast, or fp16 with a grad scaler) on CUDA.
4. **Run store**: a new run directory (``--overwrite`` replaces a run lvseg wrote), or
   ``--resume`` from its ``last.pt`` (:func:`_resume_store` says what a resume does with a
   damaged run.db, a run without a checkpoint and partial files).
5. **Epochs**: augmented batches, the loss of :mod:`lvseg.train.losses`, a step per batch
   (skipped and recorded when the loss or gradients are not finite), validation Dice, a
   checkpoint (``last.pt``, and ``best.pt`` when validation Dice improves), early stopping.
   On rank 0 the live monitor (:mod:`lvseg.monitor.recorder`) probes the layers every few
   steps, raises alerts, and records the watch slices after each validation.

Epochs are numbered from 1 in the store, checkpoints and messages (epoch 1 is the first one
trained). Every random draw of an epoch comes from ``(seed, epoch)`` (batch order and crop
offsets) or ``(seed, epoch, batch, rank)`` (augmentation); the global torch RNG (dropout) is
saved in each checkpoint. So a run killed at any point and resumed from its last checkpoint
replays the lost part exactly: in deterministic mode on CPU it ends with the same weights as an
uninterrupted run (``tests/train/test_resume.py`` kills one with SIGKILL to prove it).

Checkpoints are written best first, then last: ``last.pt`` is the resume point, so once it
says epoch N everything of epoch N is on disk. A write that fails (a full disk) leaves the
previous files whole and raises the ``OSError`` (or SQLite's "database or disk is full") as it
is, which the CLI reports in one line; the run can then be resumed.
"""

from __future__ import annotations

import math
import os
import random
import socket
import sqlite3
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lvseg import __version__, layout
from lvseg.config import TrainConfig
from lvseg.data.augment import AugmentConfig, Augmenter
from lvseg.data.preprocess import CachedSlices
from lvseg.errors import InvalidInputError, TrainingError
from lvseg.model.registry import build_model, config_of, size_report
from lvseg.monitor.recorder import TrainingMonitor
from lvseg.runs.checkpoint import (
    Checkpoint,
    TrainingState,
    all_finite,
    load_checkpoint,
    load_initial_weights,
)
from lvseg.runs.folder import (
    check_replaceable_run,
    remove_stale_temporaries,
    replace_run,
    set_aside_database,
)
from lvseg.runs.store import CorruptRunError, RunStore
from lvseg.train import distributed
from lvseg.train.data import TrainingData, prepare
from lvseg.train.losses import dice_per_image, segmentation_loss
from lvseg.train.rng import restore_rng_state, rng_state

KILL_AT_STEP_ENV = "LVSEG_TEST_KILL_AT_STEP"
"""Test hook: the process SIGKILLs itself right after this optimiser step (resume tests)."""
DUMP_WEIGHTS_ENV = "LVSEG_TEST_DUMP_WEIGHTS"
"""Test hook: every rank saves its final weights to ``$LVSEG_TEST_DUMP_WEIGHTS/rank<R>.pt``
(distributed tests compare them; rank 0 alone writes the run itself)."""


@dataclass
class TrainResult:
    run_dir: Path
    status: str
    epochs: int
    steps: int
    best_dice: float | None
    best_epoch: int | None
    seconds: float


@dataclass
class Progress:
    """What the loop reports as it goes; the CLI draws it, library callers may ignore it."""

    on_start: Callable[[int, int, int], None] = lambda total_steps, start_step, epochs: None
    on_step: Callable[[int, int, dict[str, float]], None] = lambda step, epoch, metrics: None
    on_epoch: Callable[[int, dict[str, Any]], None] = lambda epoch, metrics: None
    on_message: Callable[[str], None] = lambda text: None
    on_alert: Callable[[str], None] = lambda text: None


@dataclass
class _State:
    """The trainer's own counters, saved in every checkpoint."""

    epoch: int = 0
    """Completed epochs."""
    step: int = 0
    best_dice: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    nonfinite_in_row: int = 0
    nonfinite_total: int = 0


# --------------------------------------------------------------------------------------------
# 1. Set up


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


# --------------------------------------------------------------------------------------------
# 3. Model and optimiser


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; weight decay on convolution weights only (not on norms, biases or scalars)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    other = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0}]
    return torch.optim.AdamW(groups, lr=lr)


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
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


# --------------------------------------------------------------------------------------------
# 5. Epochs


def epoch_batches(
    cache: CachedSlices,
    indices: np.ndarray,
    batch_size: int,
    seed: int,
    epoch: int,
    context: distributed.Context,
    far_crops: float = 0.0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """This rank's (indices, crop offsets) per batch of one epoch, drawn from (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(indices)
    offsets = cache.random_offsets(len(order), rng)
    if far_crops > 0:  # drawn only when asked: runs without far crops keep their batches
        cache.far_offsets(offsets, far_crops, rng)
    positions = distributed.shard(np.arange(len(order)), context)
    order, offsets = order[positions], offsets[positions]
    # Drop a last batch of one: BatchNorm cannot normalise a single sample.
    stop = len(order) - (1 if len(order) % batch_size == 1 and len(order) > 1 else 0)
    return [
        (order[i : min(i + batch_size, stop)], offsets[i : min(i + batch_size, stop)])
        for i in range(0, stop, batch_size)
    ]


def steps_per_epoch(data: TrainingData, batch_size: int, context: distributed.Context) -> int:
    n = -(-len(data.train_indices) // context.world_size)
    n -= 1 if n % batch_size == 1 and n > 1 else 0
    return -(-n // batch_size)


@torch.no_grad()
def validate(
    model: nn.Module,
    cache: CachedSlices,
    device: torch.device,
    config: TrainConfig,
    amp: torch.dtype | None,
    batch_size: int = 32,
    per_slice: list[float] | None = None,
) -> dict[str, float]:
    """Validation on image-centred crops: mean and pooled Dice, loss, presence accuracy.
    Pass a list as ``per_slice`` to receive every slice's Dice, in cache order."""
    model.eval()
    dices, losses, hits = [], [], 0
    intersection = total = 0.0
    for batch in cache.batches(batch_size, shuffle=False, jitter=False):
        images = batch.images.to(device)
        target = batch.masks[:, 0].to(device)
        with torch.autocast(device.type, dtype=amp) if amp else nullcontext():
            output = model(images)
        parts = _loss(output, target, config)
        prediction = output.logits.argmax(dim=1).bool()
        truth = target.bool()
        dices.append(dice_per_image(prediction, truth).cpu())
        losses.append(float(parts.total) * len(images))
        hits += int(((output.presence_logit > 0) == truth.flatten(1).any(dim=1)).sum())
        intersection += float((prediction & truth).sum())
        total += float(prediction.sum() + truth.sum())
    dice = torch.cat(dices)
    if per_slice is not None:
        per_slice.extend(dice.tolist())
    return {
        "val_dice": float(dice.mean()),
        "val_dice_std": float(dice.std(unbiased=False)),
        "val_dice_pooled": 2 * intersection / total if total else 1.0,
        "val_loss": sum(losses) / len(dice),
        "val_presence_accuracy": hits / len(dice),
        "val_slices": len(dice),
    }


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
    with its saved config.json (:func:`_resume_store`). Without ``resume`` a folder that holds a
    run is refused, unless ``overwrite``: then the run is deleted first, if it is a run lvseg
    wrote and no trainer is writing it (:func:`lvseg.runs.folder.check_replaceable_run`).
    """
    progress = progress or Progress()
    started = time.perf_counter()

    # ---- 1. set up ------------------------------------------------------------------------
    context, device = distributed.setup(config.runtime.device)
    run_dir = Path(out)
    store: RunStore | None = None
    monitor: TrainingMonitor | None = None
    try:
        resumed: Checkpoint | None = None
        if resume and overwrite:
            raise InvalidInputError(
                None, "--resume continues a run and --overwrite replaces it: give one of them"
            )
        if resume:
            resumed, config = _resume_source(run_dir)
        elif overwrite:
            if context.is_main:  # checked now, replaced once data and model are ready
                check_replaceable_run(run_dir, keep=[config.data.path])
        elif (run_dir / layout.RUN_DATABASE).exists() or layout.checkpoint_path(run_dir).exists():
            raise InvalidInputError(
                run_dir,
                "already holds a run: use --resume to continue it, --overwrite to start it "
                "again from scratch, or another --out",
            )
        if config.model.init is not None and resumed is None:
            # a bad or mismatched checkpoint fails before the data are read (a throwaway model,
            # built before the seed is set, so the run's own draws are untouched)
            throwaway = build_model(config.model.name, **config.model.options)
            load_initial_weights(throwaway, config.model.init, config.model.name)
        if config.runtime.threads:
            torch.set_num_threads(config.runtime.threads)
        seed_everything(config.seed, config.runtime.deterministic)
        amp = autocast_dtype(config.runtime.precision, device)

        # ---- 2. data --------------------------------------------------------------------------
        if context.is_main:
            data = prepare(config.data, config.seed)
        distributed.barrier(context)
        if not context.is_main:
            data = prepare(config.data, config.seed)
        train_indices = data.train_indices
        if len(train_indices) < 2:
            raise InvalidInputError(config.data.path, "fewer than 2 training slices")
        per_epoch = steps_per_epoch(data, config.optim.batch_size, context)
        augmenter = Augmenter(AugmentConfig.from_dict(config.augment))

        # ---- 3. model and optimiser -------------------------------------------------------
        model = build_model(config.model.name, **config.model.options)
        initialised = None
        if config.model.init is not None and resumed is None:
            initialised = load_initial_weights(model, config.model.init, config.model.name)
        report = size_report(model)
        model.to(device)
        if device.type == "cuda" and config.runtime.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = make_optimizer(model, config.optim.lr, config.optim.weight_decay)
        scheduler = make_scheduler(optimizer, config, per_epoch)
        scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)
        state = _State()
        if resumed is not None:
            assert resumed.training is not None
            model.load_state_dict(resumed.state_dict)
            optimizer.load_state_dict(resumed.training.optimizer)
            scheduler.load_state_dict(resumed.training.scheduler)
            scaler.load_state_dict(resumed.training.scaler)
            state = _State(**resumed.training.trainer)
            restore_rng_state(resumed.training.rng)
        network: nn.Module = model
        if config.runtime.compile:
            network = torch.compile(network)
        if context.distributed:
            network = DistributedDataParallel(
                network, device_ids=[device.index] if device.type == "cuda" else None
            )

        # ---- 4. run store (rank 0 only) ---------------------------------------------------
        if context.is_main:
            meta = _run_meta(config, data, report, device, context, amp)
            if resume:
                store = _resume_store(run_dir, config, resumed, state, meta, report, progress)
            else:
                if overwrite and replace_run(run_dir, keep=[config.data.path]):
                    progress.on_message(f"replaced the run that was in {run_dir}")
                store = RunStore.create(run_dir, config.to_dict(), meta=meta)
            (run_dir / layout.CHECKPOINTS).mkdir(exist_ok=True)
            if config.monitor.enabled:
                # Activation hooks would break a compiled graph: gradients only under compile.
                monitor_config = (
                    replace(config.monitor, activations=False)
                    if config.runtime.compile
                    else config.monitor
                )
                monitor = TrainingMonitor(monitor_config, model, store, data.val, device)
        total_steps = config.optim.epochs * per_epoch
        progress.on_start(total_steps, state.step, config.optim.epochs)
        if resumed is not None:
            progress.on_message(f"resumed {run_dir} at epoch {state.epoch}, step {state.step}")
        if initialised is not None:
            progress.on_message(f"started from the weights of {initialised}")
            if store:
                store.event("init", f"started from the weights of {initialised}")

        # ---- 5. epochs --------------------------------------------------------------------
        status, message = "finished", None
        for epoch in range(state.epoch, config.optim.epochs):
            epoch_start = time.perf_counter()
            network.train()
            losses = []
            batches = epoch_batches(
                data.train,
                train_indices,
                config.optim.batch_size,
                config.seed,
                epoch,
                context,
                config.data.far_crops,
            )
            for batch_number, (indices, offsets) in enumerate(batches):
                step_start = time.perf_counter()
                batch = data.train.batch(indices, offsets)
                generator = torch.Generator().manual_seed(
                    _mix(config.seed, epoch, batch_number, context.rank)
                )
                images, masks = augmenter(batch.images, batch.masks, generator)
                images = images.to(device, non_blocking=True)
                target = masks[:, 0].to(device, non_blocking=True)
                if device.type == "cuda" and config.runtime.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                if monitor:
                    monitor.begin_step(state.step + 1)
                lr = optimizer.param_groups[0]["lr"]
                try:
                    metrics = _step(
                        network,
                        model,
                        optimizer,
                        scaler,
                        images,
                        target,
                        config,
                        amp,
                        device,
                        context,
                        monitor.after_backward if monitor else None,
                    )
                except torch.OutOfMemoryError:
                    raise TrainingError(
                        None,
                        f"out of memory on {device} at batch size {config.optim.batch_size}: "
                        "lower --batch-size",
                    ) from None
                state.step += 1
                if metrics["skipped"]:
                    state.nonfinite_in_row += 1
                    state.nonfinite_total += 1
                    if store:
                        store.event(
                            "nonfinite_step",
                            f"non-finite loss or gradients at step {state.step}: step skipped",
                            step=state.step,
                            epoch=epoch + 1,
                            loss=metrics["loss"],
                            grad_norm=metrics["grad_norm"],
                        )
                    if state.nonfinite_in_row >= config.optim.max_nonfinite_steps:
                        raise TrainingError(
                            None,
                            f"stopped at step {state.step}: {state.nonfinite_in_row} non-finite "
                            "steps in a row (the loss diverged; lower --lr or check the data)",
                        )
                else:
                    state.nonfinite_in_row = 0
                    scheduler.step()
                    losses.append(metrics["loss"])
                metrics["lr"] = optimizer.param_groups[0]["lr"]
                metrics["images_per_s"] = (
                    len(indices) * context.world_size / (time.perf_counter() - step_start)
                )
                if store:
                    store.log_step(state.step, epoch + 1, **metrics)
                if monitor:
                    for alert in monitor.end_step(state.step, epoch + 1, lr, metrics):
                        progress.on_alert(alert.message)
                progress.on_step(state.step, epoch + 1, metrics)
                if os.environ.get(KILL_AT_STEP_ENV) == str(state.step):
                    os.kill(os.getpid(), 9)

            # validation, checkpoint, early stopping (identical on every rank)
            distributed.sync_buffers(model, context)
            epoch_metrics: dict[str, Any] = {
                "train_loss": float(np.mean(losses)) if losses else float("nan"),
                "seconds": time.perf_counter() - epoch_start,
                "lr": optimizer.param_groups[0]["lr"],
            }
            if data.val is not None:
                epoch_metrics.update(validate(model, data.val, device, config, amp))
            state.epoch = epoch + 1
            improved = _update_best(state, epoch_metrics, config)
            epoch_metrics["best"] = improved
            if store:
                store.log_epoch(epoch + 1, **epoch_metrics)
                _save_checkpoints(
                    store,
                    run_dir,
                    model,
                    optimizer,
                    scheduler,
                    scaler,
                    state,
                    config,
                    data,
                    report,
                    epoch_metrics,
                    improved,
                )
            if monitor:
                monitor.end_epoch(model, epoch + 1, epoch_metrics)
            progress.on_epoch(epoch + 1, epoch_metrics)
            if (
                config.optim.early_stopping
                and data.val is not None
                and state.bad_epochs >= config.optim.early_stopping
            ):
                status = "stopped"
                message = (
                    f"early stopping after epoch {epoch + 1}: no better validation Dice for "
                    f"{state.bad_epochs} epochs (best {state.best_dice:.4f} at epoch "
                    f"{state.best_epoch})"
                )
                if store:
                    store.event("early_stop", message, epoch=epoch + 1, step=state.step)
                progress.on_message(message)
                break
        if store:
            store.set_status(status, message)
        if os.environ.get(DUMP_WEIGHTS_ENV):
            dump = Path(os.environ[DUMP_WEIGHTS_ENV]) / f"rank{context.rank}.pt"
            torch.save({k: v.cpu() for k, v in model.state_dict().items()}, dump)
        return TrainResult(
            run_dir=run_dir,
            status=status,
            epochs=state.epoch,
            steps=state.step,
            best_dice=state.best_dice,
            best_epoch=state.best_epoch,
            seconds=time.perf_counter() - started,
        )
    except BaseException as error:
        # Only the run this call opened is marked; "already holds a run" leaves that one alone.
        # Best effort: on a full disk or a damaged database the status cannot be written, and
        # the error that stopped the run is the one to report.
        if store is not None:
            interrupted = isinstance(error, KeyboardInterrupt)
            reason = str(error) or type(error).__name__
            try:
                store.set_status("stopped" if interrupted else "failed", reason)
            except (InvalidInputError, sqlite3.Error):
                pass
        raise
    finally:
        if monitor is not None:
            monitor.close()
        if store is not None:
            store.close()
        distributed.shutdown(context)


def _step(
    network: nn.Module,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    images: torch.Tensor,
    target: torch.Tensor,
    config: TrainConfig,
    amp: torch.dtype | None,
    device: torch.device,
    context: distributed.Context,
    after_backward: Callable[[], None] | None = None,
) -> dict[str, float]:
    """One optimiser step; skipped (no update) when the loss or the gradients are not finite.
    ``after_backward`` sees the un-scaled gradients before clipping (the monitor's probes)."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=amp) if amp else nullcontext():
        output = network(images)
    parts = _loss(output, target, config)
    scaler.scale(parts.total).backward()
    scaler.unscale_(optimizer)
    if after_backward is not None:
        after_backward()
    clip = config.optim.grad_clip or float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
    loss_value = float(parts.total.detach())
    bad = not (math.isfinite(loss_value) and math.isfinite(grad_norm))
    # Under DDP the gradients are already averaged, but a rank's loss may be the only bad one.
    skipped = distributed.any_rank(context, bad, device)
    if skipped:
        optimizer.zero_grad(set_to_none=True)
        if scaler.is_enabled():
            scaler.update()  # lowers the fp16 scale, as an overflow should
    else:
        scaler.step(optimizer)
        scaler.update()
    metrics = parts.as_floats()
    metrics["grad_norm"] = grad_norm
    metrics["skipped"] = float(skipped)
    return metrics


def _loss(output: Any, target: torch.Tensor, config: TrainConfig) -> Any:
    return segmentation_loss(
        output.logits,
        output.presence_logit,
        target,
        dice_weight=config.loss.dice,
        ce_weight=config.loss.cross_entropy,
        presence_weight=config.loss.presence,
        smooth=config.loss.smooth,
        boundary_weight=config.loss.boundary,
        auxiliary=getattr(output, "auxiliary", ()),
    )


def _update_best(state: _State, metrics: dict[str, Any], config: TrainConfig) -> bool:
    dice = metrics.get("val_dice")
    if dice is None or not math.isfinite(dice):
        return False
    if state.best_dice is None or dice > state.best_dice + config.optim.min_delta:
        state.best_dice, state.best_epoch, state.bad_epochs = dice, state.epoch, 0
        return True
    state.bad_epochs += 1
    return False


def _save_checkpoints(
    store: RunStore,
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    state: _State,
    config: TrainConfig,
    data: TrainingData,
    report: Any,
    metrics: dict[str, Any],
    improved: bool,
) -> None:
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if not all_finite(state_dict):
        store.event(
            "nonfinite_weights",
            f"epoch {state.epoch}: weights are not finite; no checkpoint saved",
            epoch=state.epoch,
            step=state.step,
        )
        return
    clean = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    saved = Checkpoint(
        model_name=config.model.name,
        model_config=config_of(model),
        state_dict=state_dict,
        plan=data.plan,
        train_config=config,
        split=data.split,  # so an evaluation can leave the training patients out
        epoch=state.epoch,
        step=state.step,
        metrics=clean,
        lvseg_version=__version__,
        training=TrainingState(
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            scaler=scaler.state_dict(),
            rng=rng_state(),
            trainer=state.__dict__.copy(),
        ),
    )
    # best first: last.pt, the resume point, is written once everything of its epoch is.
    for kind, name, wanted in (
        ("best", layout.BEST_CHECKPOINT, improved),
        ("last", layout.LAST_CHECKPOINT, True),
    ):
        if not wanted:
            continue
        size = saved.save(layout.checkpoint_path(run_dir, name))
        store.add_checkpoint(
            kind,
            layout.checkpoint_relative(name),
            epoch=state.epoch,
            step=state.step,
            metrics=clean,
            parameters=report.parameters,
            size_bytes=size,
        )


def _resume_source(run_dir: Path) -> tuple[Checkpoint | None, TrainConfig]:
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


def _resume_store(
    run_dir: Path,
    config: TrainConfig,
    resumed: Checkpoint | None,
    state: _State,
    meta: dict[str, Any],
    report: Any,
    progress: Progress,
) -> RunStore:
    """The run store a resume writes to, ready for the epochs after ``state``.

    - A run another live process is training is refused (a run has one writer).
    - Partial files of killed atomic writes (``checkpoints/.last.pt.XXXXXXXX.tmp``) go.
    - A readable run.db forgets what was logged after the checkpoint (:meth:`truncate_after`).
    - A damaged run.db (any page: it is checked whole) is renamed ``run.db.damaged-<time>``,
      never deleted, and a new one is made from the checkpoint: config, meta, the checkpoint
      records and their epochs' metrics; a warning says so. A missing run.db is made the same
      way. Training goes on exactly from the checkpoint either way.
    - Without a checkpoint (``resumed`` None), the run starts again from scratch, and says so.
    """
    database = run_dir / layout.RUN_DATABASE
    store: RunStore | None = None
    problem: str | None = None
    if database.is_file():
        try:
            store = RunStore.open(run_dir)
            _refuse_live_writer(store, run_dir)
            store.check_integrity()
        except CorruptRunError as error:
            problem = error.problem
        except BaseException:
            if store is not None:
                store.close()
            raise
        if problem is not None and store is not None:
            store.close()
            store = None
    removed = remove_stale_temporaries(run_dir)
    if removed:
        names = ", ".join(path.relative_to(run_dir).as_posix() for path in removed)
        progress.on_message(
            f"removed {len(removed)} partial file(s) of an interrupted write: {names}"
        )
    here = {"pid": os.getpid(), "host": socket.gethostname()}
    if resumed is None:
        restart = (
            f"{run_dir} has no checkpoint yet: restarting it from scratch with its saved config "
            f"({run_dir / layout.RUN_CONFIG})"
        )
    if store is not None:
        if resumed is None:
            store.truncate_after(0, 0, message="restarted from scratch: no checkpoint yet")
            store.set_meta(**meta, **here)
            progress.on_message(restart)
        else:
            store.truncate_after(state.step, state.epoch)
            store.set_meta(**here)
        store.set_status("running")
        return store

    aside = set_aside_database(run_dir)
    what = f"{database} is damaged ({problem})" if problem else f"{run_dir} has no {database.name}"
    kept = f"; it is kept as {aside.name}" if aside is not None else ""
    if resumed is not None:
        origin = (
            f"from {layout.checkpoint_relative(layout.LAST_CHECKPOINT)} (epoch {state.epoch}, "
            f"step {state.step}): what was logged before is not in it; training continues "
            "exactly from the checkpoint"
        )
    else:
        origin = "for the restart"
    warning = f"{what}{kept}. Started a new run database {origin}"
    store = RunStore.create(
        run_dir, config.to_dict(), meta={**meta, "recovered_from": aside and aside.name}
    )
    try:
        if resumed is not None:
            _record_checkpoints(store, run_dir, resumed, report)
        store.truncate_after(
            state.step,
            state.epoch,
            message=f"resumed from step {state.step}, epoch {state.epoch} in a new run database",
        )
        store.event("recovered", warning, damaged=aside and aside.name, problem=problem)
    except BaseException:
        store.close()
        raise
    progress.on_message(f"warning: {warning}")
    if resumed is None:
        progress.on_message(restart)
    return store


def _refuse_live_writer(store: RunStore, run_dir: Path) -> None:
    pid = store.meta.get("pid")
    if store.status == "running" and pid != os.getpid() and store.writer_alive():
        raise InvalidInputError(
            run_dir, f"is being trained right now (process {pid}): stop it before resuming"
        )


def _record_checkpoints(store: RunStore, run_dir: Path, resumed: Checkpoint, report: Any) -> None:
    """Record in a new store the checkpoints on disk (last, and best where it loads), with
    their epochs' metrics, as the store of the run that wrote them had them."""
    found: list[tuple[str, str, Checkpoint]] = [("last", layout.LAST_CHECKPOINT, resumed)]
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
            parameters=report.parameters,
            size_bytes=layout.checkpoint_path(run_dir, name).stat().st_size,
        )


def _run_meta(
    config: TrainConfig,
    data: TrainingData,
    report: Any,
    device: torch.device,
    context: distributed.Context,
    amp: torch.dtype | None,
) -> dict[str, Any]:
    return {
        "model": config.model.name,
        "parameters": report.parameters,
        "macs": report.macs,
        "torch_version": torch.__version__,
        "device": str(device),
        "world_size": context.world_size,
        "precision": str(amp).replace("torch.", "") if amp else "fp32",
        "data_source": data.source,
        "train_patients": list(data.split.train),
        "val_patients": list(data.split.val),
        "train_slices": int(len(data.train_indices)),
        "val_slices": 0 if data.val is None else len(data.val),
        "plan": data.plan.to_dict(),
    }


def _mix(*numbers: int) -> int:
    """A 63-bit seed from several integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence(list(numbers)).generate_state(1, np.uint64)[0] >> 1)
