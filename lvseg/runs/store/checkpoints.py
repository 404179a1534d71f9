"""The records of a run's checkpoint files (``checkpoints`` table): the trainer writes the files
(:mod:`lvseg.runs.checkpoint`), the store records what and where they are."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from lvseg.runs.store.database import RunDatabase, dumps

CHECKPOINT_KINDS = ("last", "best", "epoch")
SINGLE_CHECKPOINT_KINDS = ("last", "best")

_COLUMNS = (
    "kind",
    "path",
    "epoch",
    "step",
    "metrics",
    "parameters",
    "size_bytes",
    "finite",
    "time",
)
"""The columns a checkpoint record is read from, in the order of its keys."""


def _relative_path(run_dir: Path, path: str | Path) -> str:
    path = Path(path)
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(run_dir.resolve())
        except ValueError:
            raise ValueError(f"checkpoint {path} is not inside the run folder {run_dir}") from None
    return path.as_posix()


class CheckpointRecords(RunDatabase):
    """Checkpoint records of a run (a part of :class:`lvseg.runs.store.RunStore`)."""

    def add_checkpoint(
        self,
        kind: str,
        path: str | Path,
        epoch: int,
        step: int,
        metrics: dict[str, Any],
        parameters: int,
        size_bytes: int,
        finite: bool = True,
    ) -> None:
        """Record a checkpoint file the trainer has written (``path`` relative to the run).

        There is one "last" and one "best": adding either replaces the previous one. Adding a
        checkpoint of a kind and path already recorded replaces that row too (the file was
        overwritten). ``finite`` says whether every weight was finite.
        """
        if kind not in CHECKPOINT_KINDS:
            raise ValueError(f"checkpoint kind must be one of {', '.join(CHECKPOINT_KINDS)}")
        relative = _relative_path(self.path, path)
        with self._write() as db:
            if kind in SINGLE_CHECKPOINT_KINDS:
                db.execute("DELETE FROM checkpoints WHERE kind = ?", (kind,))
            else:
                db.execute("DELETE FROM checkpoints WHERE kind = ? AND path = ?", (kind, relative))
            db.execute(
                "INSERT INTO checkpoints (kind, path, epoch, step, metrics, parameters,"
                " size_bytes, finite, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    kind,
                    relative,
                    int(epoch),
                    int(step),
                    dumps(metrics),
                    int(parameters),
                    int(size_bytes),
                    int(bool(finite)),
                    time.time(),
                ),
            )

    def checkpoints(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Checkpoint records ordered by step: kind, path, epoch, step, metrics, parameters,
        size_bytes, finite, time."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM checkpoints"
        parameters: tuple[Any, ...] = ()
        if kind is not None:
            sql += " WHERE kind = ?"
            parameters = (kind,)
        rows = self._query(sql + " ORDER BY step, id", parameters)
        records = [dict(zip(_COLUMNS, row, strict=True)) for row in rows]
        with self._decoding("checkpoints"):
            for record in records:
                record["metrics"] = dict(json.loads(record["metrics"]))
                record["finite"] = bool(record["finite"])
        return records

    def best_checkpoint(self) -> dict[str, Any] | None:
        """The "best" checkpoint record, or None if none was saved."""
        rows = self.checkpoints("best")
        return rows[0] if rows else None
