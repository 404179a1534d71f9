"""The runs a dashboard serves, and their stores read into the compact JSON the page draws.

:class:`Runs` finds the runs of a target (a run, or a folder of runs, rescanned as runs appear)
and opens each store once, ``readonly=True``. Run names are looked up among the discovered runs,
never joined into paths, and a run that resolves outside the target is not served. The functions
below turn store rows into the API's shapes:

- **Columnar**: ``{"step": [...], "loss": [...]}`` (:func:`columns`).
- **Compact**: layer matrices are written with four significant digits (:func:`encode` embeds the
  pre-encoded :class:`_Raw` text), so a 10,000-step run is about 5 MB and loads in about 2 s.
- **Strict JSON**: non-finite numbers become ``null`` (events keep them as the strings ``"NaN"``,
  ``"Infinity"``).

**Nothing is read from outside the runs folder** (the target, resolved). Every file read from a
run folder (run.db, config.json, selected.json) is resolved, symlinks followed, and read only if
it lies inside that folder (:func:`inside`). A run folder or run.db that points out is not served
(the run is absent, 404); a config.json or selected.json that points out is reported as an error
(``"errors"`` of the run's detail, ``{"error"}`` as its selection) and its target is never opened.

Only :mod:`lvseg.runs` and :mod:`lvseg.errors` are imported from lvseg: no torch, no web framework.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from lvseg import layout
from lvseg.errors import InvalidInputError
from lvseg.runs.store import RunStore, RunSummary, is_run, unreadable_status

LAYER_STATS = (
    "grad_norm",
    "weight_norm",
    "update_ratio",
    "act_mean",
    "act_std",
    "act_zero_fraction",
)
_RUN_JSON_MAX_BYTES = 1 << 20
_INF = math.inf


class RunNotFound(Exception):
    """A run name that is not among the runs served (or a run deleted while served)."""

    def __init__(self, name: str, reason: str = "no such run") -> None:
        self.name = name
        super().__init__(f"{name}: {reason}")


# ------------------------------------------------------------------------------- JSON plumbing


class _Raw(str):
    """JSON text already encoded (a big matrix), embedded as it is by :func:`encode`."""


def clean(value: Any, nonfinite_as_text: bool = False) -> Any:
    """``value`` with non-finite floats replaced by None (or by "NaN", "Infinity", "-Infinity")."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        if not nonfinite_as_text:
            return None
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): clean(v, nonfinite_as_text) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v, nonfinite_as_text) for v in value]
    return value


def encode(value: Any) -> str:
    """Compact JSON of ``value``; dicts may hold :class:`_Raw` pieces, non-finite floats go null."""
    if isinstance(value, _Raw):
        return value
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{encode(v)}" for k, v in value.items()) + "}"
    return json.dumps(clean(value), separators=(",", ":"), allow_nan=False)


def _matrix(rows: Iterable[Iterable[float | None]], digits: int = 4) -> _Raw:
    """A list of number lists as JSON with ``digits`` significant digits; NaN, inf, None -> null."""
    template = f"%.{digits}g"
    inf = _INF
    encoded = (
        "["
        + ",".join(
            ["null" if v is None or v != v or v == inf or v == -inf else template % v for v in row]
        )
        + "]"
        for row in rows
    )
    return _Raw("[" + ",".join(encoded) + "]")


def columns(rows: list[dict[str, Any]], first: tuple[str, ...]) -> dict[str, list[Any]]:
    """Rows (dicts) as columns: ``first`` names, then every other name in order of appearance."""
    names = dict.fromkeys(first)
    for row in rows:
        for name in row:
            if name not in names:
                names[name] = None
    columns: dict[str, list[Any]] = {}
    for name in names:
        column = [row.get(name) for row in rows]
        columns[name] = [
            v if not isinstance(v, float) or math.isfinite(v) else None for v in column
        ]
    return columns


def bin_centres(edges: list[float]) -> list[float]:
    """Centres of the histogram bins; an open-ended (infinite) bin gets a typical bin's width."""
    pairs = list(zip(edges[:-1], edges[1:], strict=True))
    widths = [b - a for a, b in pairs if math.isfinite(a) and math.isfinite(b)]
    width = sorted(widths)[len(widths) // 2] if widths else 1.0
    centres = []
    for a, b in pairs:
        if math.isfinite(a) and math.isfinite(b):
            centres.append((a + b) / 2)
        elif math.isfinite(b):
            centres.append(b - width / 2)
        elif math.isfinite(a):
            centres.append(a + width / 2)
        else:
            centres.append(0.0)
    return centres


# ------------------------------------------------------------------------------- the runs served


def _summary_dict(name: str, summary: RunSummary) -> dict[str, Any]:
    record = dataclasses.asdict(summary)
    record.pop("path")
    record["name"] = name
    return record


def run_summary(store: RunStore, root: Path | None = None) -> RunSummary:
    """``store.summary()``, less a model name that came from a config.json pointing outside
    ``root`` (default: the run folder)."""
    summary = store.summary()
    if (
        summary.model is not None
        and inside(store.path / layout.RUN_CONFIG, root or store.path) is None
    ):
        model = store.meta.get("model")
        summary = dataclasses.replace(summary, model=model if isinstance(model, str) else None)
    return summary


def inside(path: Path, root: Path) -> Path | None:
    """``path`` resolved (symlinks followed) if that lies within ``root`` (resolved), else None."""
    try:
        resolved = path.resolve()
        return resolved if resolved.is_relative_to(root.resolve()) else None
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (before Python 3.13)
        return None


def _read_run_json(run_dir: Path, name: str, root: Path | None) -> tuple[Any, str | None]:
    """The JSON in the run's file ``name`` as ``(value, None)``; ``(None, None)`` without one;
    ``(None, reason)`` if it points outside ``root`` (default: the run folder) or is unreadable.
    """
    resolved = inside(run_dir / name, run_dir if root is None else root)
    if resolved is None:
        return None, f"{name} points outside the runs folder; it is not read"
    try:
        if not resolved.is_file():
            return None, None
        with resolved.open("rb") as file:
            text = file.read(_RUN_JSON_MAX_BYTES + 1)
        if len(text) > _RUN_JSON_MAX_BYTES:
            return None, f"{name} is larger than 1 MiB"
        return json.loads(text.decode("utf-8")), None
    except (OSError, ValueError, RecursionError) as error:
        return None, f"unreadable {name}: {str(error)[:200]}"


def _read_selected(run_dir: Path, root: Path | None = None) -> dict[str, Any] | None:
    """The content of the run's selected.json, None without one, ``{"error"}`` if unreadable or
    pointing outside ``root`` (default: the run folder)."""
    selected, error = _read_run_json(run_dir, layout.SELECTED, root)
    if error is not None:
        return {"error": error}
    if selected is not None and not isinstance(selected, dict):
        return {"error": f"{layout.SELECTED} is not a JSON object"}
    return selected


def selected_stamp(run_dir: Path, root: Path | None = None) -> float | None:
    """The modification time of the run's selected.json (None without one, or one pointing
    outside ``root``, default the run folder): a change marker."""
    resolved = inside(run_dir / layout.SELECTED, run_dir if root is None else root)
    try:
        return None if resolved is None else resolved.stat().st_mtime
    except OSError:
        return None


def marked_checkpoints(
    store: RunStore, root: Path | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Checkpoint records with ``best`` and ``selected`` flags, and selected.json's content
    (read only if it resolves inside ``root``, default the run folder)."""
    rows = store.checkpoints()
    selected = _read_selected(store.path, root)
    chosen = selected.get("checkpoint") if selected else None
    chosen_path = PurePosixPath(str(chosen).replace("\\", "/")) if chosen else None
    best = next((row for row in rows if row["kind"] == "best"), None)
    for row in rows:
        row["best"] = best is not None and (
            row is best
            or row["path"] == best["path"]
            or (row["epoch"], row["step"]) == (best["epoch"], best["step"])
        )
        row["selected"] = chosen_path is not None and PurePosixPath(row["path"]) == chosen_path
    return rows, selected


class Runs:
    """The runs a dashboard serves, found afresh every second: ``target`` itself if it is a run,
    else every run directly inside it. A run folder or run.db that resolves outside ``target``
    (a symlink out) is not served. Stores are opened read-only once and shared by requests.
    """

    def __init__(self, target: str | Path, rescan_s: float = 1.0) -> None:
        self.target = Path(target)
        self.rescan_s = rescan_s
        self._lock = threading.Lock()
        self._paths: dict[str, Path] = {}
        self._scanned_at = -math.inf
        self._stores: dict[str, tuple[RunStore, tuple[int, int]]] = {}

    @property
    def root(self) -> Path:
        """The folder nothing served may resolve outside of: the target, resolved."""
        return self.target.resolve()

    def _scan(self) -> dict[str, Path]:
        target = self.target
        try:
            if is_run(target):
                return {target.resolve().name or str(target): target}
            if not target.is_dir():
                return {}
            root = target.resolve()
            found = {}
            for child in sorted(target.iterdir()):
                if not is_run(child):
                    continue
                inside = child.resolve().is_relative_to(root) and (
                    (child / layout.RUN_DATABASE).resolve().is_relative_to(root)
                )
                if inside:
                    found[child.name] = child
            return found
        except OSError:
            return {}

    def paths(self, fresh: bool = False) -> dict[str, Path]:
        """Run name -> run folder, rescanned when older than ``rescan_s`` (or ``fresh``)."""
        with self._lock:
            now = time.monotonic()
            if fresh or now - self._scanned_at >= self.rescan_s:
                self._paths = self._scan()
                self._scanned_at = now
                for gone in set(self._stores) - set(self._paths):
                    del self._stores[gone]
            return dict(self._paths)

    def path(self, name: str) -> Path:
        """The folder of run ``name``; :class:`RunNotFound` unless it was discovered."""
        paths = self.paths()
        if name not in paths:
            with self._lock:
                stale = time.monotonic() - self._scanned_at > 0.2
            if stale:
                paths = self.paths(fresh=True)
        if name not in paths:
            raise RunNotFound(name)
        return paths[name]

    def forget(self, name: str) -> None:
        with self._lock:
            self._stores.pop(name, None)

    def store(self, name: str) -> RunStore:
        """The read-only store of run ``name``, reopened if its run.db was replaced.

        Raises :class:`RunNotFound` (unknown or deleted run) or :class:`InvalidInputError`
        (a run.db that is not a readable lvseg run database).
        """
        path = self.path(name)
        if inside(path / layout.RUN_DATABASE, self.root) is None:  # replaced by a link out
            self.forget(name)
            raise RunNotFound(name)
        try:
            status = (path / layout.RUN_DATABASE).stat()
        except OSError:
            self.forget(name)
            raise RunNotFound(name, "the run was deleted") from None
        key = (status.st_dev, status.st_ino)
        with self._lock:
            cached = self._stores.get(name)
            if cached is not None and cached[1] == key:
                return cached[0]
        store = RunStore.open(path, readonly=True)
        with self._lock:
            self._stores[name] = (store, key)
        return store

    def read(self, name: str, function: Callable[[RunStore], Any]) -> Any:
        """``function(store)`` for run ``name``; a database error becomes InvalidInputError."""
        store = self.store(name)
        try:
            return function(store)
        except (sqlite3.Error, ValueError) as error:  # ValueError: a row that is not JSON
            self.forget(name)
            reason = f"unreadable run database: {error}"
            raise InvalidInputError(store.database_path, reason) from error

    def summaries(self) -> list[dict[str, Any]]:
        """The listing facts of every run; an unreadable run has status "locked" (another
        process holds its database; read-only stores wait only ``READ_BUSY_TIMEOUT_S`` for it)
        or "corrupt", and an error."""
        result = []
        for name, path in self.paths().items():
            try:
                summary = self.read(name, lambda s: run_summary(s, self.root))
                result.append(_summary_dict(name, summary))
            except (InvalidInputError, RunNotFound) as error:
                gone = isinstance(error, RunNotFound)
                if gone and not path.exists():
                    continue  # deleted while we looked
                summary = RunSummary(
                    name=name,
                    path=path,
                    status=unreadable_status(error),
                    selected=(path / layout.SELECTED).is_file(),
                    error=str(error),
                )
                result.append(_summary_dict(name, summary))
        return result


# ------------------------------------------------------------------------------- run data


def step_columns(store: RunStore, since: int | None) -> dict[str, list[Any]]:
    """The steps rows after step ``since`` as columns, ``step``, ``epoch``, ``time`` first."""
    return columns(store.steps(since_step=since), ("step", "epoch", "time"))


def epoch_columns(store: RunStore, since: int | None = None) -> dict[str, list[Any]]:
    """The epochs rows after epoch ``since`` as columns, ``epoch`` and ``time`` first."""
    rows = [row for row in store.epochs() if since is None or row["epoch"] > since]
    return columns(rows, ("epoch", "time"))


def layer_matrix(store: RunStore, stat: str, since: int | None) -> dict[str, Any]:
    """One layer statistic as ``{stat, layers, steps, by_layer}``, ``by_layer[layer][step]``."""
    matrix = store.layer_matrix(stat, since_step=since)
    values = matrix["values"]
    by_layer = zip(*values, strict=True) if values else ([] for _ in matrix["layers"])
    return {
        "stat": stat,
        "layers": matrix["layers"],
        "steps": matrix["steps"],
        "by_layer": _matrix(by_layer),
    }


def layer_delta(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """layer_stats rows as ``{stat: {layers, steps, by_layer}}`` holding only the layers seen."""
    grouped: dict[str, tuple[dict[str, int], list[int], dict[tuple[int, int], float]]] = {}
    for row in rows:
        layers, steps, values = grouped.setdefault(row["stat"], ({}, [], {}))
        column = layers.setdefault(row["layer"], len(layers))
        if not steps or steps[-1] != row["step"]:
            steps.append(row["step"])
        values[(column, len(steps) - 1)] = row["value"]
    result = {}
    for stat, (layers, steps, values) in grouped.items():
        by_layer = [[values.get((c, s)) for s in range(len(steps))] for c in range(len(layers))]
        result[stat] = {
            "stat": stat,
            "layers": list(layers),
            "steps": steps,
            "by_layer": _matrix(by_layer),
        }
    return result


def histogram_layers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """histogram rows as ``{layer: {steps, counts}}``, counts with six significant digits."""
    layers: dict[str, tuple[list[int], list[list[float]]]] = {}
    for row in rows:
        steps, counts = layers.setdefault(row["layer"], ([], []))
        steps.append(row["step"])
        counts.append(row["counts"])
    return {
        layer: {"steps": steps, "counts": _matrix(counts, digits=6)}
        for layer, (steps, counts) in layers.items()
    }


def event_records(store: RunStore, since_id: int | None, kind: str | None = None) -> list[dict]:
    """The events after id ``since_id``, non-finite numbers kept as "NaN", "Infinity" text."""
    return [clean(event, nonfinite_as_text=True) for event in store.events(kind, since_id)]


def detail(store: RunStore, name: str, root: Path | None = None) -> dict[str, Any]:
    """Everything the page shows of one run once: summary, status, config, meta, checkpoints.

    config.json and selected.json are read only where they resolve inside ``root`` (the runs
    folder; default the run folder); one that points out is an entry of ``errors``."""
    errors = []
    config_path = store.path / layout.RUN_CONFIG
    config, problem = _read_run_json(store.path, layout.RUN_CONFIG, root)
    if problem is None and config is None:
        problem = "run has no config file"
    elif problem is None and not isinstance(config, dict):
        config, problem = None, "run config is not a JSON object"
    if problem is not None:
        errors.append(str(InvalidInputError(config_path, problem)))
    meta = store.meta
    edges = meta.pop("histogram_edges", None)
    checkpoints, selected = marked_checkpoints(store, root)
    return {
        "name": name,
        "summary": _summary_dict(name, run_summary(store, root)),
        "status": store.live_status,
        "status_message": store.status_message,
        "status_history": store.status_history(),
        "config": config,
        "meta": clean(meta, nonfinite_as_text=True),
        "histogram_edges": edges,
        "checkpoints": checkpoints,
        "selected": selected,
        "errors": errors,
    }
