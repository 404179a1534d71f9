"""The live training dashboard: run-store data over HTTP, a live stream, and the page that draws it.

``lvseg dashboard RUNS`` serves one run directory, or every run in a folder (runs that appear later
included), at ``http://127.0.0.1:8765/``. The page (``static/``, drawn with the Plotly bundled in
the installed ``plotly`` package) loads each run once through the JSON API, then follows a
server-sent-event stream that polls the stores about twice a second and pushes only what is new.

Why it is built this way:

- **Read-only, from the run store only.** Stores are opened ``readonly=True``; the server serves a
  fixed list of static files, plotly.min.js and data read through :class:`RunStore`, nothing else
  from disk. Run names in URLs are looked up among the discovered runs, never joined into paths.
- **No torch.** Only :mod:`lvseg.runs` and :mod:`lvseg.errors` are imported from lvseg, so the
  server starts fast and, run by :func:`start_dashboard` in a subprocess, never takes the GIL or a
  GPU from the trainer.
- **Safe by default.** It binds 127.0.0.1 and then accepts only requests addressed to a loopback
  name (no DNS rebinding). Any other address needs a token (generated when none is given) that
  every request carries as ``?token=`` or ``Authorization: Bearer``.
- **Compact.** JSON is columnar (``{"step": [...], "loss": [...]}``); layer matrices are written
  with four significant digits (a 10,000-step run is about 5 MB and loads in about 2 s). Non-finite
  numbers become ``null`` (events keep them as the strings ``"NaN"``, ``"Infinity"``).

API (every run route answers 404 for an unknown run, 422 with ``{"error": ...}`` for a run whose
store cannot be read):

- ``GET /api/runs``: ``{"target", "runs": [summary, ...]}``
- ``GET /api/runs/{run}``: summary, status history, config, meta, checkpoints (best and selected
  marked) and the content of selected.json
- ``GET /api/runs/{run}/steps?since=S``, ``/epochs``: ``{"run", "columns": {name: [...]}}``
- ``GET /api/runs/{run}/layers/{stat}?since=S``: ``{"run", "stat", "layers", "steps", "by_layer"}``
  with ``by_layer[i][j]`` the value of layer ``i`` at step ``j``
- ``GET /api/runs/{run}/histograms?since=S``: ``{"run", "edges", "centres", "layers": {layer:
  {"steps", "counts"}}}``
- ``GET /api/runs/{run}/events?since_id=N&kind=K``: ``{"run", "events", "last_id"}``
- ``GET /api/runs/{run}/watch?since=E``: ``{"run", "frames": [{epoch, slice, kind, data, time}]}``
  and ``GET /api/runs/{run}/watch/{epoch}/{slice}/{kind}.png``
- ``GET /api/stream?from={"run": {cursors}}``: server-sent events ``runs``, ``update``, ``reset``,
  ``problem`` and ``ping`` (see :class:`_StreamState`).

Run as a program (what :func:`start_dashboard` starts)::

    python -m lvseg.monitor.server runs --port 8765
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import importlib.util
import ipaddress
import json
import math
import os
import queue
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lvseg.errors import InvalidInputError
from lvseg.runs.store import (
    DATABASE_FILE,
    SELECTED_FILE,
    RunStore,
    RunSummary,
    is_run,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
POLL_S = 0.5
"""How often the live stream looks for new rows in the stores."""
TOKEN_ENV = "LVSEG_DASHBOARD_TOKEN"
"""How :func:`start_dashboard` hands the token to its subprocess (not on the command line)."""

LAYER_STATS = (
    "grad_norm",
    "weight_norm",
    "update_ratio",
    "act_mean",
    "act_std",
    "act_zero_fraction",
)
STATIC_DIR = Path(__file__).resolve().with_name("static")
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
"""The only files served from ``static/`` (a whitelist, so no request can name another file)."""
PLOTLY_JS = "plotly.min.js"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_SELECTED_MAX_BYTES = 1 << 20
_INF = math.inf


class DashboardError(InvalidInputError):
    """The dashboard cannot start: port in use, server did not answer, bad address.

    An :class:`InvalidInputError` without a path, so the CLI prints it as one line and exits 2.
    """

    def __init__(self, message: str) -> None:
        super().__init__(None, message)


class RunNotFound(Exception):
    """A run name that is not among the runs served (or a run deleted while served)."""

    def __init__(self, name: str, reason: str = "no such run") -> None:
        self.name = name
        super().__init__(f"{name}: {reason}")


# ------------------------------------------------------------------------------- JSON plumbing


class _Raw(str):
    """JSON text already encoded (a big matrix), embedded as it is by :func:`_encode`."""


def _clean(value: Any, nonfinite_as_text: bool = False) -> Any:
    """``value`` with non-finite floats replaced by None (or by "NaN", "Infinity", "-Infinity")."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        if not nonfinite_as_text:
            return None
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): _clean(v, nonfinite_as_text) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, nonfinite_as_text) for v in value]
    return value


def _encode(value: Any) -> str:
    """Compact JSON of ``value``; dicts may hold :class:`_Raw` pieces, non-finite floats go null."""
    if isinstance(value, _Raw):
        return value
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items()) + "}"
    return json.dumps(_clean(value), separators=(",", ":"), allow_nan=False)


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


def _json(value: Any, status_code: int = 200) -> Response:
    return Response(_encode(value), status_code=status_code, media_type="application/json")


def _error(status_code: int, message: str) -> Response:
    return _json({"error": message}, status_code)


def _columns(rows: list[dict[str, Any]], first: tuple[str, ...]) -> dict[str, list[Any]]:
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


def _bin_centres(edges: list[float]) -> list[float]:
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


def _read_selected(run_dir: Path) -> dict[str, Any] | None:
    """The content of the run's selected.json, None without one, ``{"error"}`` if unreadable."""
    path = run_dir / SELECTED_FILE
    try:
        if not path.is_file():
            return None
        if path.stat().st_size > _SELECTED_MAX_BYTES:
            return {"error": f"{SELECTED_FILE} is larger than 1 MiB"}
        selected = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return {"error": f"unreadable {SELECTED_FILE}: {error}"}
    if not isinstance(selected, dict):
        return {"error": f"{SELECTED_FILE} is not a JSON object"}
    return selected


def _selected_stamp(run_dir: Path) -> float | None:
    try:
        return (run_dir / SELECTED_FILE).stat().st_mtime
    except OSError:
        return None


def _marked_checkpoints(store: RunStore) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Checkpoint records with ``best`` and ``selected`` flags, and selected.json's content."""
    rows = store.checkpoints()
    selected = _read_selected(store.path)
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
                    (child / DATABASE_FILE).resolve().is_relative_to(root)
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
        try:
            status = (path / DATABASE_FILE).stat()
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
        """The listing facts of every run; an unreadable run has status "corrupt" and an error."""
        result = []
        for name, path in self.paths().items():
            try:
                result.append(_summary_dict(name, self.read(name, lambda s: s.summary())))
            except (InvalidInputError, RunNotFound) as error:
                gone = isinstance(error, RunNotFound)
                if gone and not path.exists():
                    continue  # deleted while we looked
                summary = RunSummary(
                    name=name,
                    path=path,
                    status="corrupt",
                    selected=(path / SELECTED_FILE).is_file(),
                    error=str(error),
                )
                result.append(_summary_dict(name, summary))
        return result


# ------------------------------------------------------------------------------- run data


def _steps(store: RunStore, since: int | None) -> dict[str, list[Any]]:
    return _columns(store.steps(since_step=since), ("step", "epoch", "time"))


def _epochs(store: RunStore, since: int | None = None) -> dict[str, list[Any]]:
    rows = [row for row in store.epochs() if since is None or row["epoch"] > since]
    return _columns(rows, ("epoch", "time"))


def _layer_matrix(store: RunStore, stat: str, since: int | None) -> dict[str, Any]:
    matrix = store.layer_matrix(stat, since_step=since)
    values = matrix["values"]
    by_layer = zip(*values, strict=True) if values else ([] for _ in matrix["layers"])
    return {
        "stat": stat,
        "layers": matrix["layers"],
        "steps": matrix["steps"],
        "by_layer": _matrix(by_layer),
    }


def _layer_delta(rows: list[dict[str, Any]]) -> dict[str, Any]:
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


def _histogram_layers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    layers: dict[str, tuple[list[int], list[list[float]]]] = {}
    for row in rows:
        steps, counts = layers.setdefault(row["layer"], ([], []))
        steps.append(row["step"])
        counts.append(row["counts"])
    return {
        layer: {"steps": steps, "counts": _matrix(counts, digits=6)}
        for layer, (steps, counts) in layers.items()
    }


def _events(store: RunStore, since_id: int | None, kind: str | None = None) -> list[dict]:
    return [_clean(event, nonfinite_as_text=True) for event in store.events(kind, since_id)]


def _detail(store: RunStore, name: str) -> dict[str, Any]:
    errors = []
    try:
        config: dict[str, Any] | None = store.config
    except InvalidInputError as error:
        config = None
        errors.append(str(error))
    meta = store.meta
    edges = meta.pop("histogram_edges", None)
    checkpoints, selected = _marked_checkpoints(store)
    return {
        "name": name,
        "summary": _summary_dict(name, store.summary()),
        "status": store.status,
        "status_message": store.status_message,
        "status_history": store.status_history(),
        "config": config,
        "meta": _clean(meta, nonfinite_as_text=True),
        "histogram_edges": edges,
        "checkpoints": checkpoints,
        "selected": selected,
        "errors": errors,
    }


# ------------------------------------------------------------------------------- the live stream


@dataclasses.dataclass
class _Cursor:
    """What one stream has sent of one run. Layer and histogram rows of the last step sent are
    read again (the trainer may write one step's rows in several transactions) and only the
    (layer, stat) pairs not yet sent go out."""

    step: int | None = None
    epoch: int | None = None
    event: int | None = None
    layer_step: int | None = None
    layer_sent: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    hist_step: int | None = None
    hist_sent: set[str] = dataclasses.field(default_factory=set)
    watch_epoch: int | None = None
    watch_sent: dict[tuple[int, int, str], float] = dataclasses.field(default_factory=dict)
    status: tuple[str, str | None] | None = None
    checkpoints: tuple[Any, ...] | None = None
    problem: str | None = None

    @classmethod
    def parse(cls, value: Any) -> _Cursor:
        """From the page's ``{"step", "epoch", "event", "layer", "hist", "watch"}`` (ints/null)."""
        if not isinstance(value, dict):
            raise ValueError("a run's cursors are a JSON object")

        def number(key: str) -> int | None:
            item = value.get(key)
            if item is None:
                return None
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise ValueError(f"cursor {key!r} must be a number or null")
            return int(item)

        return cls(
            step=number("step"),
            epoch=number("epoch"),
            event=number("event"),
            layer_step=number("layer"),
            hist_step=number("hist"),
            watch_epoch=number("watch"),
        )


def _poll_run(store: RunStore, cursor: _Cursor) -> dict[str, Any] | None:
    """What is new in ``store`` since ``cursor`` (advanced in place), or ``{"reset": why}``."""
    update: dict[str, Any] = {}
    events = _events(store, cursor.event)
    if events:
        resumed = [e for e in events if e["kind"] == "resumed"]
        if resumed and cursor.event is not None:
            return {"reset": resumed[-1]["message"]}
        cursor.event = events[-1]["id"]
        update["events"] = events

    steps = store.steps(since_step=cursor.step)
    if steps:
        cursor.step = steps[-1]["step"]
        update["steps"] = _columns(steps, ("step", "epoch", "time"))

    epochs = _epochs(store, cursor.epoch)
    if epochs["epoch"]:
        cursor.epoch = epochs["epoch"][-1]
        update["epochs"] = epochs

    since = None if cursor.layer_step is None else cursor.layer_step - 1
    rows = [
        row
        for row in store.layer_stats(since_step=since)
        if row["step"] != cursor.layer_step or (row["layer"], row["stat"]) not in cursor.layer_sent
    ]
    if rows:
        last = rows[-1]["step"]
        if last != cursor.layer_step:
            cursor.layer_step, cursor.layer_sent = last, set()
        cursor.layer_sent.update((r["layer"], r["stat"]) for r in rows if r["step"] == last)
        update["layers"] = _layer_delta(rows)

    since = None if cursor.hist_step is None else cursor.hist_step - 1
    rows = [
        row
        for row in store.histograms(since_step=since)
        if row["step"] != cursor.hist_step or row["layer"] not in cursor.hist_sent
    ]
    if rows:
        last = rows[-1]["step"]
        if last != cursor.hist_step:
            cursor.hist_step, cursor.hist_sent = last, set()
        cursor.hist_sent.update(r["layer"] for r in rows if r["step"] == last)
        update["histograms"] = {
            "edges": store.histogram_edges(),
            "layers": _histogram_layers(rows),
        }

    since = None if cursor.watch_epoch is None else cursor.watch_epoch - 1
    frames = [
        frame
        for frame in store.watch_frames(since_epoch=since)
        if cursor.watch_sent.get((frame["epoch"], frame["slice"], frame["kind"])) != frame["time"]
    ]
    if frames:
        cursor.watch_epoch = max(cursor.watch_epoch or 0, frames[-1]["epoch"])
        cursor.watch_sent = {
            key: stamp for key, stamp in cursor.watch_sent.items() if key[0] >= cursor.watch_epoch
        }
        cursor.watch_sent.update(((f["epoch"], f["slice"], f["kind"]), f["time"]) for f in frames)
        update["watch"] = _clean(frames)

    status = (store.status, store.status_message)
    if status != cursor.status:
        cursor.status = status
        update["status"] = {"status": status[0], "message": status[1]}

    records = store.checkpoints()
    stamp = tuple((r["kind"], r["path"], r["time"]) for r in records) + (
        _selected_stamp(store.path),
    )
    if stamp != cursor.checkpoints:
        cursor.checkpoints = stamp
        update["checkpoints"], update["selected"] = _marked_checkpoints(store)
    return update or None


class _StreamState:
    """One stream's view of the runs. :meth:`poll` returns the events to send now:

    - ``runs`` ``{"runs": [summary, ...]}``: at first, then whenever a run appears or goes, or a
      run's status, epoch count, best Dice or selection changes;
    - ``update`` ``{"run", "steps"?, "epochs"?, "layers"?, "histograms"?, "events"?, "watch"?,
      "status"?, "checkpoints"?, "selected"?}``: the new rows of a followed run, same shapes as
      the JSON API (``layers`` is ``{stat: {layers, steps, by_layer}}`` with the layers seen);
    - ``reset`` ``{"run", "reason"}``: the run was resumed (rows were dropped) or readable again;
      the page reloads it and opens a new stream;
    - ``problem`` ``{"run", "error"}``: a followed run cannot be read (deleted, corrupt).
    """

    def __init__(self, runs: Runs, follow: dict[str, _Cursor], runs_every_s: float = 2.0) -> None:
        self.runs = runs
        self.follow = follow
        self.runs_every_s = runs_every_s
        self._runs_key: Any = None
        self._runs_at = -math.inf

    def poll(self) -> list[tuple[str, Any]]:
        messages: list[tuple[str, Any]] = []
        now = time.monotonic()
        if now - self._runs_at >= self.runs_every_s:
            self._runs_at = now
            summaries = self.runs.summaries()
            key = [
                (s["name"], s["status"], s["epochs"], s["best_val_dice"], s["selected"], s["error"])
                for s in summaries
            ]
            if key != self._runs_key:
                self._runs_key = key
                messages.append(("runs", {"runs": summaries}))
        for name, cursor in list(self.follow.items()):
            try:
                update = self.runs.read(name, lambda store, c=cursor: _poll_run(store, c))
            except Exception as error:  # one broken run must not end the stream
                if not isinstance(error, (RunNotFound, InvalidInputError)):
                    error = InvalidInputError(name, f"cannot be read: {error!r}")
                if cursor.problem != str(error):
                    cursor.problem = str(error)
                    messages.append(("problem", {"run": name, "error": str(error)}))
                continue
            if cursor.problem is not None:
                del self.follow[name]
                messages.append(("reset", {"run": name, "reason": "the run is readable again"}))
                continue
            if update is None:
                continue
            if "reset" in update:
                del self.follow[name]
                messages.append(("reset", {"run": name, "reason": update["reset"]}))
                continue
            messages.append(("update", {"run": name, **update}))
        return messages


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {_encode(data)}\n\n"


# ------------------------------------------------------------------------------- access control


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine only."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Guard:
    """ASGI middleware: the token (or, without one, a loopback Host header) on every request,
    and headers that keep the page from loading anything that is not from this server."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            status, message = refusal
            api = scope.get("path", "").startswith("/api/")
            body = _encode({"error": message}).encode() if api else message.encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json" if api else b"text/plain"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"content-security-policy", _CONTENT_SECURITY_POLICY.encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: dict) -> tuple[int, str] | None:
        headers = {key.lower(): value for key, value in scope.get("headers", [])}
        if self.token is None:
            host = headers.get(b"host", b"").decode("latin-1")
            name = urlsplit(f"//{host}").hostname or ""
            if not is_loopback(name):
                return 403, f"host {host!r} refused: this dashboard answers on localhost only"
            return None
        given = None
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        if authorization.lower().startswith("bearer "):
            given = authorization[7:].strip()
        else:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (query.get("token") or [None])[0]
        if not given:
            return 401, "this dashboard needs its token: open the URL that lvseg dashboard printed"
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return 403, "wrong dashboard token"
        return None


# ------------------------------------------------------------------------------- the app


def _plotly_js() -> Path:
    """plotly.min.js of the installed ``plotly`` package (found without importing plotly)."""
    spec = importlib.util.find_spec("plotly")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "package_data" / PLOTLY_JS
        if path.is_file():
            return path
    raise DashboardError("plotly.min.js not found: is the plotly package installed?")


def _index_html(token: str | None) -> str:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    if token is None:
        return html
    # The page's own scripts and style sheet need the token too; add it to their URLs.
    suffix = f"?token={quote(token, safe='')}"
    return re.sub(r'((?:src|href)="static/[^"?#]+)"', lambda m: f'{m.group(1)}{suffix}"', html)


def create_app(
    target: str | Path,
    token: str | None = None,
    *,
    poll_s: float = POLL_S,
    ping_s: float = 10.0,
    rescan_s: float = 1.0,
) -> Any:
    """The dashboard's ASGI app for a run, or a folder of runs, at ``target``.

    With ``token``, every request must carry it (``?token=`` or ``Authorization: Bearer``): 401
    without, 403 with a wrong one. Without, only requests addressed to a loopback host name are
    answered. ``poll_s`` is how often the live stream looks for new rows.
    """
    runs = Runs(target, rescan_s=rescan_s)
    api = FastAPI(title="lvseg dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    api.state.runs = runs

    @api.exception_handler(RunNotFound)
    async def run_not_found(request: Request, error: RunNotFound) -> Response:
        return _error(404, str(error))

    @api.exception_handler(InvalidInputError)
    async def invalid_run(request: Request, error: InvalidInputError) -> Response:
        return _error(422, str(error))

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        return _error(error.status_code, str(error.detail))

    @api.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> Response:
        return _error(500, f"internal error: {error!r}")

    @api.get("/")
    def index() -> Response:
        return Response(
            _index_html(token),
            media_type=STATIC_FILES["index.html"],
            headers={"cache-control": "no-store"},
        )

    @api.get("/static/{name}")
    def static(name: str) -> Response:
        if name == PLOTLY_JS:
            return FileResponse(
                _plotly_js(),
                media_type="text/javascript; charset=utf-8",
                headers={"cache-control": "private, max-age=86400"},
            )
        if name not in STATIC_FILES or name == "index.html":
            return _error(404, f"no static file {name!r}")
        return FileResponse(
            STATIC_DIR / name, media_type=STATIC_FILES[name], headers={"cache-control": "no-cache"}
        )

    @api.get("/api/health")
    def health() -> Response:
        return _json({"ok": True, "target": str(runs.target)})

    @api.get("/api/runs")
    def run_list() -> Response:
        return _json({"target": str(runs.target), "runs": runs.summaries()})

    @api.get("/api/runs/{run}")
    def run_detail(run: str) -> Response:
        return _json(runs.read(run, lambda store: _detail(store, run)))

    @api.get("/api/runs/{run}/steps")
    def steps(run: str, since: int | None = None) -> Response:
        columns = runs.read(run, lambda store: _steps(store, since))
        return _json({"run": run, "since": since, "columns": columns})

    @api.get("/api/runs/{run}/epochs")
    def epochs(run: str, since: int | None = None) -> Response:
        columns = runs.read(run, lambda store: _epochs(store, since))
        return _json({"run": run, "since": since, "columns": columns})

    @api.get("/api/runs/{run}/layers/{stat}")
    def layers(run: str, stat: str, since: int | None = None) -> Response:
        matrix = runs.read(run, lambda store: _layer_matrix(store, stat, since))
        return _json({"run": run, "since": since, **matrix})

    @api.get("/api/runs/{run}/histograms")
    def histograms(run: str, since: int | None = None, layer: str | None = None) -> Response:
        def read(store: RunStore) -> dict[str, Any]:
            edges = store.histogram_edges() or []
            rows = store.histograms(since_step=since, layers=None if layer is None else [layer])
            return {
                "run": run,
                "since": since,
                "edges": edges,
                "centres": _bin_centres(edges),
                "layers": _histogram_layers(rows),
            }

        return _json(runs.read(run, read))

    @api.get("/api/runs/{run}/events")
    def events(run: str, since_id: int | None = None, kind: str | None = None) -> Response:
        rows = runs.read(run, lambda store: _events(store, since_id, kind))
        last_id = rows[-1]["id"] if rows else since_id
        return _json({"run": run, "events": rows, "last_id": last_id})

    @api.get("/api/runs/{run}/watch")
    def watch(run: str, since: int | None = None) -> Response:
        frames = runs.read(run, lambda store: store.watch_frames(since_epoch=since))
        return _json({"run": run, "frames": frames})

    @api.get("/api/runs/{run}/watch/{epoch}/{slice_index}/{kind}.png")
    def watch_png(run: str, epoch: int, slice_index: int, kind: str) -> Response:
        png = runs.read(run, lambda store: store.watch_png(epoch, slice_index, kind))
        if png is None:
            return _error(404, f"{run}: no {kind} picture of slice {slice_index} at epoch {epoch}")
        return Response(
            png, media_type="image/png", headers={"cache-control": "private, max-age=3600"}
        )

    @api.get("/api/stream")
    async def stream(cursors: str = Query("{}", alias="from")) -> Response:
        try:
            wanted = json.loads(cursors)
            if not isinstance(wanted, dict):
                raise ValueError("from= is a JSON object of run names")
            follow = {str(name): _Cursor.parse(value) for name, value in wanted.items()}
        except (ValueError, OverflowError) as error:
            return _error(400, f"bad stream cursors: {error}")
        state = _StreamState(runs, follow)

        async def messages() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            pinged = time.monotonic()
            while True:
                sent = await anyio.to_thread.run_sync(state.poll)
                for event, data in sent:
                    yield _sse(event, data)
                if time.monotonic() - pinged >= ping_s:
                    pinged = time.monotonic()
                    yield _sse("ping", {"time": time.time()})
                await anyio.sleep(poll_s)

        return StreamingResponse(
            messages(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    return _Guard(api, token)


# ------------------------------------------------------------------------------- serving


def check_target(target: str | Path) -> Path:
    """``target`` if it is a run or a folder holding runs, else :class:`InvalidInputError`."""
    target = Path(target)
    if not target.exists():
        raise InvalidInputError(target, "no such run or runs folder")
    if is_run(target):
        return target
    if not target.is_dir():
        raise InvalidInputError(target, "not a run folder nor a folder of runs")
    if not Runs(target).paths():
        raise InvalidInputError(target, f"no runs here (no {DATABASE_FILE} in it or its folders)")
    return target


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one); DashboardError if it is taken."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as error:
        raise DashboardError(f"cannot listen on {host}: {error}") from None
    listener = socket.socket(family, kind, protocol)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)
    except OSError as error:
        listener.close()
        if error.errno == errno.EADDRINUSE:
            raise DashboardError(
                f"port {port} on {host} is already in use; choose another with --port"
            ) from None
        raise DashboardError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    listener.set_inheritable(False)
    return listener


class DashboardServer:
    """A dashboard bound to its address (so the URL is known) and ready to :meth:`run`.

    ``host`` other than a loopback address needs a token; one is generated when not given.
    """

    def __init__(
        self,
        target: str | Path,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        token: str | None = None,
        *,
        require_runs: bool = True,
        poll_s: float = POLL_S,
    ) -> None:
        self.target = check_target(target) if require_runs else Path(target)
        if token is None and not is_loopback(host):
            token = secrets.token_urlsafe(18)
        self.token = token or None
        self.host = host
        self.socket = bind(host, port)
        self.port = self.socket.getsockname()[1]
        self.app = create_app(self.target, self.token, poll_s=poll_s)
        self._server: Any = None

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"
        query = f"?token={quote(self.token, safe='')}" if self.token else ""
        return f"http://{host}:{self.port}/{query}"

    def run(self) -> None:
        """Serve until Ctrl-C or SIGTERM (or :meth:`stop` from another thread)."""
        import uvicorn

        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True


# ------------------------------------------------------------------------------- in a subprocess


@dataclasses.dataclass
class Dashboard:
    """A dashboard server running in a subprocess, as :func:`start_dashboard` returns it."""

    url: str
    token: str | None
    port: int
    process: subprocess.Popen

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the server and wait for it (kill it if it does not stop in ``timeout_s``)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Wait until the server exits (Ctrl-C, :meth:`stop`); its exit code, None on timeout."""
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _drain(stream: Any, lines: queue.Queue | None, tail: deque, echo: bool) -> None:
    """Read a child's pipe to its end so it never blocks on a full pipe."""
    try:
        for line in stream:
            if lines is not None:
                lines.put(line)
            tail.append(line.rstrip())
            if echo:
                print(f"dashboard: {line.rstrip()}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
    finally:
        if lines is not None:
            lines.put(None)


def start_dashboard(
    target: Path,
    host: str = DEFAULT_HOST,
    port: int = 0,
    token: str | None = None,
    *,
    timeout_s: float = 30.0,
    exit_with_parent: bool = True,
    focus: str | None = None,
) -> Dashboard:
    """Serve the dashboard of ``target`` from a subprocess and return once it answers.

    The server runs as ``python -m lvseg.monitor.server`` so it never competes with training for
    the GIL and never imports torch. ``port=0`` picks a free port. A host other than a loopback
    address gets a generated token when none is given. The run need not exist yet: the page shows
    it when it appears. The server runs in its own session (a Ctrl-C in the terminal does not
    reach it): :meth:`Dashboard.stop` ends it, and with ``exit_with_parent`` so does the death
    of this process. ``focus`` names the run the page shows first (``?run=NAME`` in the URL),
    waiting for it if it does not exist yet. Raises :class:`DashboardError` when the server
    exits or does not answer within ``timeout_s``.
    """
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(18)
    environment = dict(os.environ)
    environment.pop(TOKEN_ENV, None)
    if token:
        environment[TOKEN_ENV] = token
    package_root = str(Path(__file__).resolve().parents[2])
    environment["PYTHONPATH"] = os.pathsep.join(
        [package_root, *filter(None, [environment.get("PYTHONPATH")])]
    )
    command = [
        sys.executable,
        "-m",
        "lvseg.monitor.server",
        str(Path(target).resolve()),
        "--host",
        host,
        "--port",
        str(port),
        "--announce",
        "--allow-empty",
    ]
    if exit_with_parent:
        command.append("--exit-with-parent")
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        # Its own session: a Ctrl-C meant for the trainer does not stop it; stop() does.
        start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()
    errors: deque = deque(maxlen=20)
    threading.Thread(
        target=_drain, args=(process.stdout, lines, deque(maxlen=5), False), daemon=True
    ).start()
    threading.Thread(target=_drain, args=(process.stderr, None, errors, True), daemon=True).start()
    deadline = time.monotonic() + timeout_s

    def failure(why: str) -> DashboardError:
        Dashboard("", token, 0, process).stop(timeout_s=2)
        last = next((line for line in reversed(errors) if line.strip()), "")
        detail = f": {last}" if last else ""
        return DashboardError(f"dashboard server for {target} {why}{detail}")

    announced = None
    while announced is None:
        try:
            line = lines.get(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
        except queue.Empty:
            line = ""
        if line is None or process.poll() is not None:
            time.sleep(0.1)  # let stderr's last line arrive
            raise failure(f"exited with code {process.poll()}")
        if line.startswith("{"):
            announced = json.loads(line)
        elif time.monotonic() > deadline:
            raise failure(f"did not start within {timeout_s:g} s")
    url = announced["url"]
    if focus:
        url += f"{'&' if '?' in url else '?'}run={quote(focus, safe='')}"
    dashboard = Dashboard(url, token, int(announced["port"]), process)
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    probe_host = f"[{probe_host}]" if ":" in probe_host else probe_host
    request = urllib.request.Request(f"http://{probe_host}:{dashboard.port}/api/health")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    while True:
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return dashboard
        except (urllib.error.URLError, OSError):
            pass
        if process.poll() is not None:
            raise failure(f"exited with code {process.poll()}")
        if time.monotonic() > deadline:
            raise failure(f"did not answer at {dashboard.url} within {timeout_s:g} s")
        time.sleep(0.1)


def _exit_with_parent(server: DashboardServer) -> None:
    parent = os.getppid()
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            server.stop()
            return


def main(argv: list[str] | None = None) -> int:
    """``python -m lvseg.monitor.server TARGET [--host H] [--port P]``: serve until stopped."""
    parser = argparse.ArgumentParser(
        prog="python -m lvseg.monitor.server", description="Serve the lvseg training dashboard."
    )
    parser.add_argument("target", type=Path, help="a run directory, or a folder of runs")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0: any free port")
    parser.add_argument("--token", default=None, help=f"access token (or ${TOKEN_ENV})")
    parser.add_argument("--announce", action="store_true", help="print {url, port} as JSON")
    parser.add_argument("--allow-empty", action="store_true", help="serve a target with no runs")
    parser.add_argument("--exit-with-parent", action="store_true")
    arguments = parser.parse_args(argv)
    token = arguments.token or os.environ.get(TOKEN_ENV) or None
    try:
        server = DashboardServer(
            arguments.target,
            arguments.host,
            arguments.port,
            token,
            require_runs=not arguments.allow_empty,
        )
    except InvalidInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if arguments.announce:
        print(json.dumps({"url": server.url, "port": server.port}), flush=True)
    else:
        print(f"lvseg dashboard of {server.target}: {server.url}", flush=True)
    if arguments.exit_with_parent:
        threading.Thread(target=_exit_with_parent, args=(server,), daemon=True).start()
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
