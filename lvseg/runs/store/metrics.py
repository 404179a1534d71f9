"""The training curves: one row of metrics per optimiser step (``steps``) and per epoch
(``epochs``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from lvseg.runs.store.database import RunDatabase, dumps

_RESERVED_STEP_NAMES = frozenset({"step", "epoch", "time"})
_RESERVED_EPOCH_NAMES = frozenset({"epoch", "time"})


def _check_names(metrics: dict[str, Any], reserved: frozenset[str]) -> None:
    """Metric names may not shadow a row's own columns, and values must be numbers."""
    clash = reserved.intersection(metrics)
    if clash:
        raise ValueError(f"metric names {sorted(clash)} are reserved")
    for name, value in metrics.items():
        if isinstance(value, (str, bytes)):
            raise TypeError(f"metric {name!r} must be a number, got {value!r}")


class MetricLog(RunDatabase):
    """Step and epoch metrics of a run (a part of :class:`lvseg.runs.store.RunStore`)."""

    def log_step(self, step: int, epoch: int, **metrics: float | None) -> None:
        """Record one optimiser step (loss, lr, grad_norm, images_per_s, skipped, ...).

        Logging a step again replaces its row. NaN and infinities are kept as they are.
        """
        _check_names(metrics, _RESERVED_STEP_NAMES)
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO steps (step, epoch, time, metrics) VALUES (?, ?, ?, ?)",
                (int(step), int(epoch), time.time(), dumps(metrics)),
            )

    def steps(
        self, names: Iterable[str] | None = None, since_step: int | None = None
    ) -> list[dict[str, Any]]:
        """Step rows, oldest first, as dicts of step, epoch, time and the metrics logged.

        ``since_step`` keeps steps strictly after it (what a live poller last saw); ``names``
        keeps only those metrics (a row lacks a metric its step did not log).
        """
        rows = self._query_after(
            "SELECT step, epoch, time, metrics FROM steps", "step", since_step, order="step"
        )
        loads = json.loads
        with self._decoding("steps"):
            if names is None:
                return [
                    {"step": step, "epoch": epoch, "time": t, **loads(text)}
                    for step, epoch, t, text in rows
                ]
            wanted = (names,) if isinstance(names, str) else tuple(names)
            result = []
            for step, epoch, t, text in rows:
                metrics = loads(text)
                row = {"step": step, "epoch": epoch, "time": t}
                row.update((name, metrics[name]) for name in wanted if name in metrics)
                result.append(row)
            return result

    def last_step(self) -> int | None:
        """The highest step logged, or None before the first."""
        return self._query("SELECT max(step) FROM steps")[0][0]

    def log_epoch(self, epoch: int, **metrics: float | None) -> None:
        """Record one epoch (train_loss, val_loss, val_dice, seconds, ...); again replaces it."""
        _check_names(metrics, _RESERVED_EPOCH_NAMES)
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO epochs (epoch, time, metrics) VALUES (?, ?, ?)",
                (int(epoch), time.time(), dumps(metrics)),
            )

    def epochs(self) -> list[dict[str, Any]]:
        """Epoch rows, oldest first, as dicts of epoch, time and the metrics logged."""
        rows = self._query("SELECT epoch, time, metrics FROM epochs ORDER BY epoch")
        with self._decoding("epochs"):
            return [{"epoch": epoch, "time": t, **json.loads(text)} for epoch, t, text in rows]
