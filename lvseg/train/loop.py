"""One epoch of training: the batches drawn for it, an optimiser step per batch (skipped and
recorded when the loss or the gradients are not finite), and validation.

Every random draw of an epoch comes from ``(seed, epoch)`` (batch order and crop offsets) or
``(seed, epoch, batch, rank)`` (augmentation), never from a state carried over from the epochs
before; so a resumed run draws exactly what the run it continues would have drawn.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from lvseg.config import TrainConfig
from lvseg.errors import TrainingError
from lvseg.train import distributed
from lvseg.train.data import TrainingData
from lvseg.train.losses import dice_per_image, segmentation_loss
from lvseg.train.state import Trainer

VALIDATION_BATCH_SIZE = 32


def train_epoch(trainer: Trainer, epoch: int) -> dict[str, Any]:
    """Train epoch ``epoch`` (counted from 1): its mean train loss, seconds and last rate."""
    started = time.perf_counter()
    config, counters = trainer.config, trainer.counters
    trainer.network.train()
    losses = []
    for number, batch in enumerate(epoch_batches(trainer.data, config, epoch, trainer.context)):
        step_started = time.perf_counter()
        images, target = augmented_batch(trainer, epoch, number, batch)
        if trainer.monitor:
            trainer.monitor.begin_step(counters.step + 1)
        lr = trainer.lr
        metrics = optimiser_step(trainer, images, target)
        counters.step += 1
        if metrics["skipped"]:
            _count_skipped_step(trainer, epoch, metrics)
        else:
            counters.nonfinite_in_row = 0
            trainer.scheduler.step()
            losses.append(metrics["loss"])
        metrics["lr"] = trainer.lr
        images_seen = len(batch[0]) * trainer.context.world_size
        metrics["images_per_s"] = images_seen / (time.perf_counter() - step_started)
        _log_step(trainer, epoch, lr, metrics)
    # every rank validates, checkpoints and stops with the same model from here on
    distributed.sync_buffers(trainer.model, trainer.context)
    return {
        "train_loss": float(np.mean(losses)) if losses else float("nan"),
        "seconds": time.perf_counter() - started,
        "lr": trainer.lr,
    }


def epoch_batches(
    data: TrainingData, config: TrainConfig, epoch: int, context: distributed.Context
) -> list[tuple[np.ndarray, np.ndarray]]:
    """This rank's (indices, crop offsets) per batch of epoch ``epoch`` (counted from 1), drawn
    from (seed, epoch)."""
    # keyed by the epoch counted from 0: the draws of every run made before stay the same
    rng = np.random.default_rng([config.seed, epoch - 1])
    order = rng.permutation(data.train_indices)
    offsets = data.train.random_offsets(len(order), rng)
    if config.data.far_crops > 0:  # drawn only when asked: runs without far crops keep theirs
        data.train.far_offsets(offsets, config.data.far_crops, rng)
    positions = distributed.shard(np.arange(len(order)), context)
    order, offsets = order[positions], offsets[positions]
    # Drop a last batch of one: BatchNorm cannot normalise a single sample.
    size = config.optim.batch_size
    stop = len(order) - (1 if len(order) % size == 1 and len(order) > 1 else 0)
    return [
        (order[i : min(i + size, stop)], offsets[i : min(i + size, stop)])
        for i in range(0, stop, size)
    ]


def steps_per_epoch(data: TrainingData, batch_size: int, context: distributed.Context) -> int:
    """How many batches :func:`epoch_batches` gives each rank, without drawing them."""
    n = -(-len(data.train_indices) // context.world_size)
    n -= 1 if n % batch_size == 1 and n > 1 else 0
    return -(-n // batch_size)


def augmented_batch(
    trainer: Trainer, epoch: int, number: int, batch: tuple[np.ndarray, np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and LV targets of batch ``number`` of ``epoch``, augmented, on the device."""
    config, device = trainer.config, trainer.device
    cached = trainer.data.train.batch(*batch)
    seed = _mix(config.seed, epoch - 1, number, trainer.context.rank)
    images, masks = trainer.augmenter(
        cached.images, cached.masks, torch.Generator().manual_seed(seed)
    )
    images = images.to(device, non_blocking=True)
    target = masks[:, 0].to(device, non_blocking=True)
    if device.type == "cuda" and config.runtime.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, target


def optimiser_step(
    trainer: Trainer, images: torch.Tensor, target: torch.Tensor
) -> dict[str, float]:
    """One optimiser step and its metrics (loss parts, gradient norm, whether it was skipped);
    running out of memory stops the run with a :class:`TrainingError` that says what to do."""
    try:
        return _step(trainer, images, target)
    except torch.OutOfMemoryError:
        batch_size = trainer.config.optim.batch_size
        raise TrainingError(
            None,
            f"out of memory on {trainer.device} at batch size {batch_size}: lower --batch-size",
        ) from None


def _step(trainer: Trainer, images: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Skipped (no update) when the loss or the gradients are not finite. The monitor's probes
    see the un-scaled gradients before clipping."""
    config, device = trainer.config, trainer.device
    optimizer, scaler = trainer.optimizer, trainer.scaler
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=trainer.amp) if trainer.amp else nullcontext():
        output = trainer.network(images)
    parts = _loss(output, target, config)
    scaler.scale(parts.total).backward()
    scaler.unscale_(optimizer)
    if trainer.monitor:
        trainer.monitor.after_backward()
    clip = config.optim.grad_clip or float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), clip))
    loss_value = float(parts.total.detach())
    bad = not (math.isfinite(loss_value) and math.isfinite(grad_norm))
    # Under DDP the gradients are already averaged, but a rank's loss may be the only bad one.
    skipped = distributed.any_rank(trainer.context, bad, device)
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


@torch.no_grad()
def validate(trainer: Trainer) -> dict[str, float]:
    """Validation on image-centred crops: mean and pooled Dice, loss, presence accuracy (none
    without a validation set)."""
    cache, device, amp = trainer.data.val, trainer.device, trainer.amp
    if cache is None:
        return {}
    trainer.model.eval()
    dices, losses, hits = [], [], 0
    intersection = total = 0.0
    for batch in cache.batches(VALIDATION_BATCH_SIZE, shuffle=False, jitter=False):
        images = batch.images.to(device)
        target = batch.masks[:, 0].to(device)
        with torch.autocast(device.type, dtype=amp) if amp else nullcontext():
            output = trainer.model(images)
        parts = _loss(output, target, trainer.config)
        prediction = output.logits.argmax(dim=1).bool()
        truth = target.bool()
        dices.append(dice_per_image(prediction, truth).cpu())
        losses.append(float(parts.total) * len(images))
        hits += int(((output.presence_logit > 0) == truth.flatten(1).any(dim=1)).sum())
        intersection += float((prediction & truth).sum())
        total += float(prediction.sum() + truth.sum())
    dice = torch.cat(dices)
    return {
        "val_dice": float(dice.mean()),
        "val_dice_std": float(dice.std(unbiased=False)),
        "val_dice_pooled": 2 * intersection / total if total else 1.0,
        "val_loss": sum(losses) / len(dice),
        "val_presence_accuracy": hits / len(dice),
        "val_slices": len(dice),
    }


def _count_skipped_step(trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
    """Record a skipped step; stop the run after ``optim.max_nonfinite_steps`` in a row."""
    counters = trainer.counters
    counters.nonfinite_in_row += 1
    counters.nonfinite_total += 1
    if trainer.store:
        trainer.store.event(
            "nonfinite_step",
            f"non-finite loss or gradients at step {counters.step}: step skipped",
            step=counters.step,
            epoch=epoch,
            loss=metrics["loss"],
            grad_norm=metrics["grad_norm"],
        )
    if counters.nonfinite_in_row >= trainer.config.optim.max_nonfinite_steps:
        raise TrainingError(
            None,
            f"stopped at step {counters.step}: {counters.nonfinite_in_row} non-finite "
            "steps in a row (the loss diverged; lower --lr or check the data)",
        )


def _log_step(trainer: Trainer, epoch: int, lr: float, metrics: dict[str, float]) -> None:
    """The step's row in the run store, the monitor's probes and alerts (``lr``: the rate the
    step used), and the progress callback."""
    step = trainer.counters.step
    if trainer.store:
        trainer.store.log_step(step, epoch, **metrics)
    if trainer.monitor:
        for alert in trainer.monitor.end_step(step, epoch, lr, metrics):
            trainer.progress.on_alert(alert.message)
    trainer.progress.on_step(step, epoch, metrics)


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


def _mix(*numbers: int) -> int:
    """A 63-bit seed from several integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence(list(numbers)).generate_state(1, np.uint64)[0] >> 1)
