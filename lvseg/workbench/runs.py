"""The workbench's Runs routes: the workspace's training runs (the folders under ``runs/`` that
hold a run.db) side by side, read from each run's store, read-only and torch-free.

- ``GET /api/runs``: ``{"runs": [row, ...]}`` in name order, a row (:func:`run_row`) being
  ``{"name", "status", "model", "epochs", "best_val_dice", "best_epoch", "train_loss",
  "val_dice", "parameters", "macs", "seconds_per_epoch", "slices_per_s", "wall_s", "steps",
  "created", "updated", "selected", "error"}``; a run that cannot be read has status "locked"
  or "corrupt" and its ``error``
- ``GET /api/runs/{name}``: its row and ``"per_epoch": [{"epoch", "train_loss", "val_loss",
  "val_dice"}, ...]``; 404 for an unknown run, 400 for a name that is not one folder of runs/

The runs are found and opened by the dashboard's :class:`~lvseg.dashboard.readers.Runs` (a run
folder or run.db that resolves outside runs/ is not served).
"""

from __future__ import annotations

import math
import statistics
import threading
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from lvseg.dashboard.readers import RunNotFound, Runs, clean, run_summary
from lvseg.dashboard.responses import json_response
from lvseg.errors import InvalidInputError
from lvseg.runs.store import RunStore, unreadable_status
from lvseg.workbench.workspace import Workspace, resolve_inside

EPOCH_COLUMNS = ("epoch", "train_loss", "val_loss", "val_dice")


def _number(value: Any) -> float | None:
    """``value`` if it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def wall_seconds(history: list[dict[str, Any]], updated: float | None) -> float | None:
    """The seconds the run spent running: from each "running" status to the next status, the
    last one (still running, or killed) to ``updated``, its last sign of life. A resumed run
    does not count the time it lay stopped."""
    total, since = 0.0, None
    for entry in history:
        if since is not None:
            total += max(0.0, entry["time"] - since)
        since = entry["time"] if entry["status"] == "running" else None
    if since is not None and updated is not None:
        total += max(0.0, updated - since)
    return total if history else None


class _Speeds:
    """The median of a run's per-step slices/s (its first, slow steps do not weigh), kept per
    run until a new step arrives: a finished run's steps are read once, not at every listing."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[RunStore, int | None, float | None]] = {}
        self._lock = threading.Lock()

    def slices_per_s(self, name: str, store: RunStore) -> float | None:
        last = store.last_step()
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and cached[0] is store and cached[1] == last:
            return cached[2]
        rates = [_number(row.get("images_per_s")) for row in store.steps(names=["images_per_s"])]
        finite = [rate for rate in rates if rate is not None]
        value = statistics.median(finite) if finite else None
        with self._lock:
            self._cache[name] = (store, last, value)
        return value

    def keep(self, names: set[str]) -> None:
        """Forget the runs not in ``names`` (deleted ones)."""
        with self._lock:
            for gone in set(self._cache) - names:
                del self._cache[gone]


def run_row(store: RunStore, name: str, root: Path, speeds: _Speeds) -> dict[str, Any]:
    """What the Runs table shows of one run (see the module)."""
    summary = run_summary(store, root)
    epochs = store.epochs()
    meta = store.meta
    last = epochs[-1] if epochs else {}
    seconds = [s for s in (_number(row.get("seconds")) for row in epochs) if s is not None]
    return {
        "name": name,
        "status": summary.status,
        "model": summary.model,
        "epochs": summary.epochs,
        "best_val_dice": summary.best_val_dice,
        "best_epoch": summary.best_epoch,
        "train_loss": _number(last.get("train_loss")),
        "val_dice": _number(last.get("val_dice")),
        "parameters": _number(meta.get("parameters")),
        "macs": _number(meta.get("macs")),
        # the trainer's own time of each epoch's training (validation not counted)
        "seconds_per_epoch": statistics.fmean(seconds) if seconds else None,
        "slices_per_s": speeds.slices_per_s(name, store),
        "wall_s": wall_seconds(store.status_history(), summary.updated),
        "steps": summary.steps,
        "created": summary.created,
        "updated": summary.updated,
        "selected": summary.selected,
        "error": None,
    }


def _unreadable_row(name: str, error: Exception) -> dict[str, Any]:
    return {"name": name, "status": unreadable_status(error), "error": str(error)}


def check_run_name(workspace: Workspace, name: str) -> str:
    """``name`` if it is one folder name under runs/ that stays there, else a 400."""
    if (
        not name
        or name in (".", "..")
        or any(c in name for c in "/\\\0")
        or not name.isprintable()
        or len(name) > 255
    ):
        raise InvalidInputError(None, f"{ascii(name)[:80]}: a run is named by one folder of runs/")
    resolve_inside(workspace.runs / name, [workspace.runs])  # a symlink out: 400
    return name


def run_routes(workspace: Workspace) -> APIRouter:
    """``GET /api/runs`` and ``GET /api/runs/{name}``, as the module says."""
    router = APIRouter()
    runs = Runs(workspace.runs)
    speeds = _Speeds()

    def row(name: str) -> dict[str, Any]:
        return runs.read(name, lambda store: run_row(store, name, runs.root, speeds))

    @router.get("/api/runs")
    def run_list() -> Response:
        rows = []
        names = runs.paths()
        speeds.keep(set(names))
        for name in names:
            try:
                rows.append(row(name))
            except RunNotFound:
                continue  # deleted while we looked
            except InvalidInputError as error:
                rows.append(_unreadable_row(name, error))
        return json_response({"runs": rows})

    @router.get("/api/runs/{name}")
    def run_detail(name: str) -> Response:
        check_run_name(workspace, name)
        try:
            result = row(name)
            epochs = runs.read(name, lambda store: store.epochs())
        except RunNotFound:
            raise HTTPException(404, f"no run {name!r} in the workspace's runs/") from None
        result["per_epoch"] = [clean({c: e.get(c) for c in EPOCH_COLUMNS}) for e in epochs]
        return json_response(result)

    return router
