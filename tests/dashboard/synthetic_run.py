"""Synthetic training runs written through the run store API, for the dashboard's tests and
benchmark: steps, epochs, per-layer statistics, gradient histograms, alerts, watch pictures and
checkpoints shaped like what the trainer writes, without torch or a real training run.

>>> import tempfile, pathlib
>>> run_dir = write_run(pathlib.Path(tempfile.mkdtemp()) / "run", epochs=2, steps_per_epoch=5)
>>> from lvseg.runs import RunStore
>>> with RunStore.open(run_dir, readonly=True) as store:
...     len(store.steps()), len(store.epochs()), store.status
(10, 2, 'finished')
"""

from __future__ import annotations

import io
import math
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

from lvseg.runs.store import RunStore

HISTOGRAM_EDGES = [-10 + 0.25 * i for i in range(41)]
"""The probes' bins: log10 |gradient| in quarter decades from 1e-10 to 1."""
CONFIG = {"model": {"name": "lvnet", "width": 16}, "optim": {"lr": 0.003, "epochs": 3}, "seed": 0}


def layer_names(parameterised: int = 8, activations: int = 4) -> tuple[list[str], list[str]]:
    """Layer names in model order, like LVNet's: ("stem.0.0", ..., "head") and ("stem.0.2", ...)."""
    params = ["stem.0.0"]
    params += [f"encoder.{i // 3}.{i % 3}.depthwise" for i in range(max(0, parameterised - 2))]
    params.append("head")
    acts = [f"encoder.{i // 2}.{i % 2}.act1" for i in range(activations)]
    return params[:parameterised], acts


@dataclass
class SyntheticRun:
    """Writes one run's rows step by step, with numbers that look like a run that learns."""

    store: RunStore
    parameterised: list[str]
    activations: list[str]
    steps_per_epoch: int = 20
    layer_every: int = 5
    histogram_every: int = 10
    seed: int = 0
    step: int = 0
    epoch: int = 1
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def loss(self, step: int) -> float:
        return 0.15 + 0.85 * math.exp(-step / 150) + 0.02 * self.rng.random()

    def write_step(self) -> int:
        """One optimiser step (and its layer rows when due); returns the step written."""
        step, rng = self.step, self.rng
        loss = self.loss(step)
        self.store.log_step(
            step,
            self.epoch,
            loss=loss,
            loss_dice=0.7 * loss,
            loss_ce=0.25 * loss,
            loss_presence=0.05 * loss,
            lr=0.003 * min(1.0, (step + 1) / 50),
            grad_norm=0.5 * math.exp(-step / 400) + 0.05 * rng.random(),
            images_per_s=400 + 20 * rng.random(),
            skipped=0,
        )
        if step % self.layer_every == 0:
            self.write_layer_stats(step)
        if step % (self.layer_every * self.histogram_every) == 0:
            self.write_histograms(step)
        self.step += 1
        if self.step % self.steps_per_epoch == 0:
            self.write_epoch()
        return step

    def write_layer_stats(self, step: int) -> None:
        rng, decay = self.rng, math.exp(-step / 500)
        rows = []
        for depth, layer in enumerate(self.parameterised):
            grad = 10 ** (-1 - 3 * depth / max(1, len(self.parameterised))) * decay
            grad *= 1 + 0.2 * rng.random()
            weight = 1.0 + 0.1 * depth
            rows += [
                (layer, "grad_norm", grad),
                (layer, "weight_norm", weight),
                (layer, "update_ratio", 0.003 * grad / weight),
            ]
        for depth, layer in enumerate(self.activations):
            rows += [
                (layer, "act_mean", 0.3 + 0.05 * depth + 0.01 * rng.random()),
                (layer, "act_std", 0.5 + 0.1 * rng.random()),
                (layer, "act_zero_fraction", min(1.0, 0.4 + 0.1 * depth * (1 - decay))),
            ]
        self.store.log_layer_stats(step, rows)

    def write_histograms(self, step: int) -> None:
        counts = {}
        for depth, layer in enumerate(self.parameterised):
            # about the layer's gradient norm, in bins of a quarter decade from 1e-10
            log_grad = -1 - 3 * depth / max(1, len(self.parameterised)) - step / 500 / math.log(10)
            centre = (log_grad + 10) * 4 - 4
            counts[layer] = [round(1000 * math.exp(-(((i - centre) / 3) ** 2))) for i in range(40)]
        self.store.log_histograms(step, HISTOGRAM_EDGES, counts)

    def write_epoch(self) -> None:
        epoch, rng = self.epoch, self.rng
        dice = 0.9 - 0.6 * math.exp(-epoch / 3)
        self.store.log_epoch(
            epoch,
            train_loss=self.loss(self.step),
            val_loss=self.loss(self.step) + 0.05,
            val_dice=dice,
            val_dice_std=0.05 + 0.02 * rng.random(),
            seconds=12.0,
            lr=0.003,
        )
        for slot in range(2):
            self.store.log_watch(
                epoch,
                slot,
                "prediction",
                picture("prediction", slot, epoch),
                dice=dice,
                presence=0.9,
            )
            self.store.log_watch(
                epoch,
                slot,
                "cam",
                picture("cam", slot, epoch),
                vmin=-3.0,
                vmax=3.0,
                colormap="RdBu_r",
            )
        self.store.add_checkpoint(
            "last", "checkpoints/last.pt", epoch, self.step - 1, {"val_dice": dice}, 91_000, 380_000
        )
        if epoch == 1 or dice >= max(row.get("val_dice", 0) for row in self.store.epochs()):
            self.store.add_checkpoint(
                "best",
                "checkpoints/best.pt",
                epoch,
                self.step - 1,
                {"val_dice": dice},
                91_000,
                380_000,
            )
        self.epoch += 1


def picture(kind: str, slot: int, epoch: int, size: int = 48) -> bytes:
    """A small RGB PNG standing for a watch picture: a disc, contours, or a colour overlay."""
    image = Image.new("RGB", (size, size), (20, 20, 20))
    draw = ImageDraw.Draw(image)
    centre, radius = size // 2, size // 4 + slot
    draw.ellipse([centre - radius, centre - radius, centre + radius, centre + radius], (150,) * 3)
    if kind == "prediction":
        grown = radius + max(0, 6 - epoch)
        draw.ellipse([centre - radius] * 2 + [centre + radius] * 2, outline=(40, 220, 90))
        draw.ellipse([centre - grown] * 2 + [centre + grown] * 2, outline=(240, 50, 50))
    elif kind == "cam":
        for x in range(size):
            draw.line([(x, 0), (x, 4)], fill=(min(255, 5 * x), 40, 255 - min(255, 5 * x)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def start_run(
    run_dir: Path,
    parameterised: int = 8,
    activations: int = 4,
    steps_per_epoch: int = 20,
    layer_every: int = 5,
    histogram_every: int = 10,
) -> SyntheticRun:
    """Create the run (config, meta, the watch inputs at epoch 0) and return its writer."""
    store = RunStore.create(run_dir, CONFIG, meta={"model": "lvnet", "device": "cpu"})
    params, acts = layer_names(parameterised, activations)
    for slot in range(2):
        store.log_watch(
            0,
            slot,
            "image",
            picture("image", slot, 0),
            patient_id=f"SC-HF-I-0{slot + 1}",
            slice_index=3 + slot,
            phase="ED",
        )
    return SyntheticRun(store, params, acts, steps_per_epoch, layer_every, histogram_every)


def write_run(
    run_dir: Path,
    epochs: int = 3,
    steps_per_epoch: int = 20,
    *,
    parameterised: int = 8,
    activations: int = 4,
    layer_every: int = 5,
    histogram_every: int = 10,
    finished: bool = True,
    alerts: bool = True,
) -> Path:
    """A complete run: ``epochs`` epochs of steps, layer rows, histograms, pictures, alerts,
    checkpoints, and (when ``finished``) the status "finished" and a selected.json."""
    run = start_run(
        run_dir, parameterised, activations, steps_per_epoch, layer_every, histogram_every
    )
    for _ in range(epochs * steps_per_epoch):
        run.write_step()
    if alerts:
        run.store.event(
            "alert",
            f"vanishing gradient in {run.parameterised[-1]}: 1e-09 < 1e-08",
            step=5,
            epoch=1,
            rule="vanishing",
            layer=run.parameterised[-1],
            value=1e-9,
            threshold=1e-8,
        )
        run.store.event(
            "alert",
            "non-finite gradient in head",
            step=6,
            epoch=1,
            rule="nonfinite",
            layer="head",
            value=math.nan,
            threshold=None,
        )
        run.store.event("nonfinite_step", "loss was nan; step skipped", step=7, epoch=1)
    if finished:
        run.store.set_status("finished", f"{epochs} epochs")
        (run_dir / "selected.json").write_text('{"checkpoint": "checkpoints/best.pt"}\n')
    run.store.close()
    return run_dir


class LiveWriter:
    """Writes a run in a background thread as training would: one step every ``interval_s``,
    layer rows every few steps, an epoch (with pictures) every ``steps_per_epoch`` steps.

    The browser test and the stream tests use it through the ``live_run`` fixture; a real short
    training subprocess can replace it by offering the same ``run_dir``, ``start()``, ``stop()``
    and ``steps_written``.
    """

    def __init__(self, run_dir: Path, interval_s: float = 0.2, initial_steps: int = 30) -> None:
        self.run_dir = run_dir
        self.interval_s = interval_s
        self.run = start_run(run_dir, steps_per_epoch=10, layer_every=2, histogram_every=2)
        for _ in range(initial_steps):
            self.run.write_step()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)

    @property
    def steps_written(self) -> int:
        return self.run.step

    def start(self) -> LiveWriter:
        self._thread.start()
        return self

    def _write(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.run.write_step()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.run.store.set_status("finished")
        self.run.store.close()


def wait_for(predicate, timeout_s: float = 5.0, interval_s: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)
