"""The monitor as the training loop sees it: probes, alerts, watch slices and TensorBoard.

The engine (rank 0 only) makes one :class:`TrainingMonitor` per run and calls, in order:

- :meth:`~TrainingMonitor.begin_step` before each forward pass (arms the probes when due);
- :meth:`~TrainingMonitor.after_backward` between the backward pass and gradient clipping;
- :meth:`~TrainingMonitor.end_step` after the optimiser step: one device-to-host transfer, the
  rows written to the run store, alerts judged and returned for the console;
- :meth:`~TrainingMonitor.end_epoch` after validation: the watch slices' pictures;
- :meth:`~TrainingMonitor.close`.

Everything it writes goes through the run store (and, on request, TensorBoard event files in
``RUN/tensorboard``); nothing here changes the model, the optimiser or any random state, so a
monitored run trains exactly as an unmonitored one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lvseg.config import MonitorConfig
from lvseg.data.preprocess import CachedSlices
from lvseg.runs.store import RunStore

from .alerts import Alert, AlertRules
from .probes import HISTOGRAM_EDGES, LayerProbes
from .watch import WatchSlices


class TrainingMonitor:
    def __init__(
        self,
        config: MonitorConfig,
        model: nn.Module,
        store: RunStore,
        val: CachedSlices | None,
        device: torch.device,
    ) -> None:
        self.config = config
        self.store = store
        self.device = device
        self.probes = LayerProbes(
            model,
            interval=config.interval,
            histogram_every=config.histogram_every,
            activations=config.activations,
        )
        self.alerts = AlertRules(config)
        self.watch = (
            WatchSlices.from_cache(val, config.watch_slices)
            if val is not None and config.watch_slices
            else None
        )
        self.tensorboard = None
        if config.tensorboard:
            from .tensorboard import TensorBoardWriter

            self.tensorboard = TensorBoardWriter(store.path / "tensorboard")
        if self.watch is not None and not store.watch_frames():
            self.watch.record_inputs(self._write_watch)

    def begin_step(self, step: int) -> None:
        self.probes.begin_step(step)

    def after_backward(self) -> None:
        self.probes.measure_gradients()

    def end_step(self, step: int, epoch: int, lr: float, metrics: dict[str, float]) -> list[Alert]:
        """Write the step's statistics (if it was a logging step); the alerts that started."""
        if self.tensorboard is not None:
            self.tensorboard.step(step, metrics)
        rows, histograms = self.probes.collect(lr)
        if not rows:
            return []
        self.store.log_layer_stats(step, rows)
        if histograms:
            self.store.log_histograms(step, HISTOGRAM_EDGES, histograms)
        alerts = self.alerts.check(step, rows)
        for alert in alerts:
            self.store.event(
                "alert", alert.message, step=step, epoch=epoch, **alert.as_event_data()
            )
        if self.tensorboard is not None:
            self.tensorboard.layers(step, rows, histograms)
        return alerts

    def end_epoch(self, model: nn.Module, epoch: int, metrics: dict[str, Any]) -> None:
        if self.watch is not None:
            self.watch.record(model, epoch, self.device, self._write_watch)
        if self.tensorboard is not None:
            self.tensorboard.epoch(epoch, metrics)

    def close(self) -> None:
        self.probes.remove()
        if self.tensorboard is not None:
            self.tensorboard.close()

    def _write_watch(self, epoch: int, slot: int, kind: str, png: bytes, **data: Any) -> None:
        self.store.log_watch(epoch, slot, kind, png, **data)
        if self.tensorboard is not None:
            self.tensorboard.picture(f"watch/{slot}/{kind}", epoch, png)
