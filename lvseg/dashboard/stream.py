"""The live stream: what is new in the runs a page follows, pushed as server-sent events.

The page loads each run once through the JSON API, then opens ``GET /api/stream?from=...`` with
what it has of each run (its cursors); about twice a second the stream reads the stores again and
pushes only what is new (:class:`_StreamState` lists the events).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from lvseg.dashboard.readers import (
    RunNotFound,
    Runs,
    clean,
    columns,
    encode,
    epoch_columns,
    event_records,
    histogram_layers,
    layer_delta,
    marked_checkpoints,
    selected_stamp,
)
from lvseg.dashboard.responses import MAX_INTEGER, error_response
from lvseg.errors import InvalidInputError
from lvseg.runs.store import RunStore

POLL_S = 0.5
"""How often the live stream looks for new rows in the stores."""
MAX_CURSORS_CHARS = 64 * 1024
"""The longest ``from=`` the stream accepts."""


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

        def whole_number_or_none(key: str) -> int | None:
            """The cursor at ``key``: None (absent or null) or a whole number from 0 to
            :data:`MAX_INTEGER` (a float such as ``3.0`` counts as 3); ValueError otherwise."""
            item = value.get(key)
            if item is None:
                return None
            if isinstance(item, float) and item.is_integer():
                item = int(item)
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= MAX_INTEGER:
                raise ValueError(
                    f"cursor {key!r} must be a whole number from 0 to 2**63 - 1 or null"
                )
            return item

        return cls(
            step=whole_number_or_none("step"),
            epoch=whole_number_or_none("epoch"),
            event=whole_number_or_none("event"),
            layer_step=whole_number_or_none("layer"),
            hist_step=whole_number_or_none("hist"),
            watch_epoch=whole_number_or_none("watch"),
        )


def _poll_run(store: RunStore, cursor: _Cursor, root: Path) -> dict[str, Any] | None:
    """What is new in ``store`` since ``cursor`` (advanced in place), or ``{"reset": why}``;
    files of the run are read only where they resolve inside ``root`` (the runs folder)."""
    update: dict[str, Any] = {}
    events = event_records(store, cursor.event)
    if events:
        resumed = [e for e in events if e["kind"] == "resumed"]
        if resumed and cursor.event is not None:
            return {"reset": resumed[-1]["message"]}
        cursor.event = events[-1]["id"]
        update["events"] = events

    steps = store.steps(since_step=cursor.step)
    if steps:
        cursor.step = steps[-1]["step"]
        update["steps"] = columns(steps, ("step", "epoch", "time"))

    epochs = epoch_columns(store, cursor.epoch)
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
        update["layers"] = layer_delta(rows)

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
            "layers": histogram_layers(rows),
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
        update["watch"] = clean(frames)

    status = (store.live_status, store.status_message)
    if status != cursor.status:
        cursor.status = status
        update["status"] = {"status": status[0], "message": status[1]}

    records = store.checkpoints()
    stamp = tuple((r["kind"], r["path"], r["time"]) for r in records) + (
        selected_stamp(store.path, root),
    )
    if stamp != cursor.checkpoints:
        cursor.checkpoints = stamp
        update["checkpoints"], update["selected"] = marked_checkpoints(store, root)
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
        root = self.runs.root
        for name, cursor in list(self.follow.items()):
            try:
                update = self.runs.read(name, lambda store, c=cursor: _poll_run(store, c, root))
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


def parse_cursors(text: str) -> dict[str, _Cursor]:
    """The stream's ``from=``: ``{"run": {cursors}}`` (see :meth:`_Cursor.parse`); ValueError
    with a short reason when it is not that (not JSON, too long, too deep, bad numbers)."""
    if len(text) > MAX_CURSORS_CHARS:
        raise ValueError(f"longer than {MAX_CURSORS_CHARS} characters")
    try:
        wanted = json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as error:  # json.JSONDecodeError, or an integer of too many digits
        raise ValueError(f"not JSON ({str(error)[:80]})") from None
    if not isinstance(wanted, dict):
        raise ValueError("from= is a JSON object of run names")
    return {str(name): _Cursor.parse(value) for name, value in wanted.items()}


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {encode(data)}\n\n"


def stream_routes(runs: Runs, poll_s: float, ping_s: float) -> APIRouter:
    """``GET /api/stream?from={"run": {cursors}}``: the events of :class:`_StreamState`, read
    every ``poll_s`` seconds, and a ``ping`` every ``ping_s`` seconds."""
    router = APIRouter()

    @router.get("/api/stream")
    async def stream(cursors: str = Query("{}", alias="from")) -> Response:
        try:
            follow = parse_cursors(cursors)
        except ValueError as error:
            return error_response(400, f"bad stream cursors: {error}")
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

    return router
