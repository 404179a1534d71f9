"""What a listing shows of one run (:class:`RunSummary`): ``lvseg runs list`` and the dashboard's
list of runs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvseg import layout
from lvseg.errors import InvalidInputError
from lvseg.runs.store.errors import RunLockedError
from lvseg.runs.store.metrics import MetricLog
from lvseg.runs.store.status import RunStatus


@dataclass(frozen=True)
class RunSummary:
    """What a listing shows of one run. Times are Unix seconds; ``error`` explains the status
    "corrupt" (the database is damaged or unreadable) or "locked" (another process holds it)."""

    name: str
    path: Path
    status: str
    model: str | None = None
    epochs: int = 0
    best_val_dice: float | None = None
    best_epoch: int | None = None
    steps: int = 0
    last_step: int | None = None
    created: float | None = None
    updated: float | None = None
    selected: bool = False
    error: str | None = None


# The newest row of each table a writer touches as it goes: the run's last sign of life.
_LAST_TIMES = (
    "SELECT time FROM steps ORDER BY step DESC LIMIT 1",
    "SELECT max(time) FROM epochs",
    "SELECT time FROM events ORDER BY id DESC LIMIT 1",
    "SELECT time FROM status ORDER BY id DESC LIMIT 1",
)


class RunSummaries(RunStatus, MetricLog):
    """The summary of a run (a part of :class:`lvseg.runs.store.RunStore`)."""

    def summary(self) -> RunSummary:
        """The one-line facts of this run that ``lvseg runs list`` shows."""
        meta = self.meta
        epochs = self.epochs()
        best_dice: float | None = None
        best_epoch: int | None = None
        for row in epochs:
            dice = row.get("val_dice")
            if isinstance(dice, (int, float)) and math.isfinite(dice):
                if best_dice is None or dice > best_dice:
                    best_dice, best_epoch = float(dice), row["epoch"]
        times = [row[0] for sql in _LAST_TIMES for row in self._query(sql) if row[0] is not None]
        step_count, last_step = self._query("SELECT count(*), max(step) FROM steps")[0]
        created = meta.get("created")
        return RunSummary(
            name=self.path.name,
            path=self.path,
            status=self.live_status,
            model=self._model_name(meta),
            epochs=len(epochs),
            best_val_dice=best_dice,
            best_epoch=best_epoch,
            steps=step_count,
            last_step=last_step,
            created=float(created) if isinstance(created, (int, float)) else None,
            updated=max(times) if times else None,
            selected=(self.path / layout.SELECTED).is_file(),
        )

    def _model_name(self, meta: dict[str, Any]) -> str | None:
        """The model's name from meta, else from the config (``model`` or ``model.name``)."""
        if isinstance(meta.get("model"), str):
            return meta["model"]
        try:
            model = self.config.get("model")
        except InvalidInputError:
            return None
        if isinstance(model, dict):
            model = model.get("name")
        return model if isinstance(model, str) else None


def is_run(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a run database."""
    return (Path(path) / layout.RUN_DATABASE).is_file()


def unreadable_status(error: BaseException) -> str:
    """The listing status of a run that could not be read: "locked" or "corrupt"."""
    return "locked" if isinstance(error, RunLockedError) else "corrupt"
