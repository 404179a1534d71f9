"""The dashboard's HTTP app: the JSON API, the live stream and the page that draws it.

:func:`create_app` serves the runs of a target (see :class:`~lvseg.dashboard.readers.Runs`). The
page (``static/``, drawn with the Plotly bundled in the installed ``plotly`` package) loads each
run once through the JSON API, then follows a server-sent-event stream that polls the stores about
twice a second and pushes only what is new. :mod:`lvseg.dashboard.launch` runs the app as a server.

Why it is built this way:

- **Read-only, from the run store only.** The app serves a fixed list of static files,
  plotly.min.js and data read through :mod:`lvseg.dashboard.readers`, nothing else from disk.
- **No torch.** Only :mod:`lvseg.dashboard.readers`, :mod:`lvseg.runs` and :mod:`lvseg.errors` are
  imported from lvseg, so the server starts fast and never takes a GPU from the trainer.
- **Safe by default.** Without a token it accepts only requests addressed to a loopback name (no
  DNS rebinding; a malformed Host header is refused too). With a token, every request carries
  it as ``?token=`` or ``Authorization: Bearer``. A token is at least :data:`MIN_TOKEN_LENGTH`
  printable ASCII characters without spaces (:func:`check_token`): an empty or short one is
  refused, never taken as "no token".
- **Nothing outside the runs folder.** Run folders, run.db, config.json and selected.json are read
  only where they resolve (symlinks followed) inside the folder served: a link pointing out is an
  error in the JSON, its target is never read (see :mod:`lvseg.dashboard.readers`).
- **Bad requests are 400, never 500.** Integer parameters (``since``, ``since_id``, the watch
  picture's epoch and slice, the stream's cursors) are whole numbers from 0 to 2**63 - 1; anything
  else is answered 400 with ``{"error": ...}`` naming the parameter, and no traceback is logged.
  A 500 (a bug) says only "internal error"; the traceback goes to the server's log.

API (every run route answers 404 for an unknown run, 422 with ``{"error": ...}`` for a run whose
store cannot be read, 400 for a malformed parameter):

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
"""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import json
import math
import re
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

import anyio
from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParameter
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lvseg.dashboard.readers import (
    RunNotFound,
    Runs,
    bin_centres,
    clean,
    columns,
    detail,
    encode,
    epoch_columns,
    event_records,
    histogram_layers,
    layer_delta,
    layer_matrix,
    marked_checkpoints,
    selected_stamp,
    step_columns,
)
from lvseg.errors import InvalidInputError
from lvseg.runs.store import RunStore

POLL_S = 0.5
"""How often the live stream looks for new rows in the stores."""
STATIC_DIR = Path(__file__).resolve().with_name("static")
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
"""The only files served from ``static/`` (a whitelist, so no request can name another file)."""
PLOTLY_JS = "plotly.min.js"
MIN_TOKEN_LENGTH = 16
"""The shortest access token accepted; generated tokens (``secrets.token_urlsafe(18)``) have 24."""
MAX_INTEGER = 2**63 - 1
"""The largest integer parameter (SQLite's largest integer); the smallest is 0."""
MAX_CURSORS_CHARS = 64 * 1024
"""The longest ``from=`` the stream accepts."""
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


# ------------------------------------------------------------------------------- HTTP responses


def _json(value: Any, status_code: int = 200) -> Response:
    return Response(encode(value), status_code=status_code, media_type="application/json")


def _error(status_code: int, message: str) -> Response:
    return _json({"error": message}, status_code)


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
            if isinstance(item, float) and item.is_integer():
                item = int(item)
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= MAX_INTEGER:
                raise ValueError(
                    f"cursor {key!r} must be a whole number from 0 to 2**63 - 1 or null"
                )
            return item

        return cls(
            step=number("step"),
            epoch=number("epoch"),
            event=number("event"),
            layer_step=number("layer"),
            hist_step=number("hist"),
            watch_epoch=number("watch"),
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


# ------------------------------------------------------------------------------- access control


def check_token(token: str | None) -> str | None:
    """``token`` if it is a usable access token (None: no token), else InvalidInputError.

    A token is at least :data:`MIN_TOKEN_LENGTH` printable ASCII characters, none of them a space:
    it travels in URLs and ``Authorization`` headers, and an empty one must never read as "no
    authentication".
    """
    if token is None:
        return None
    if len(token) < MIN_TOKEN_LENGTH:
        raise InvalidInputError(
            None,
            f"dashboard token too short ({len(token)} characters): use at least "
            f"{MIN_TOKEN_LENGTH}, or leave --token out to have one generated",
        )
    if not all("!" <= character <= "~" for character in token):
        raise InvalidInputError(
            None,
            "dashboard token has a space, control or non-ASCII character: use printable ASCII "
            "only, or leave --token out to have one generated",
        )
    return token


def _host_name(host: str) -> str | None:
    """The name in a Host header (``name``, ``name:port``, ``[v6]:port``); None if malformed."""
    if host.startswith("["):
        name, bracket, port = host[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return None
        port = port[1:]
    else:
        name, _, port = host.partition(":")
    if port and not (port.isascii() and port.isdigit()):
        return None
    if not name or any(c in name for c in "/?#@\\[] ") or not name.isprintable():
        return None
    return name


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
            body = encode({"error": message}).encode() if api else message.encode()
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
            name = _host_name(host)
            if name is None or not is_loopback(name):
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
    # Answered as any unreadable input: 422 with this message.
    raise InvalidInputError(None, "plotly.min.js not found: is the plotly package installed?")


def _index_html(token: str | None) -> str:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    if token is None:
        return html
    # The page's own scripts and style sheet need the token too; add it to their URLs.
    suffix = f"?token={quote(token, safe='')}"
    return re.sub(r'((?:src|href)="static/[^"?#]+)"', lambda m: f'{m.group(1)}{suffix}"', html)


Since = Annotated[int | None, Query(ge=0, le=MAX_INTEGER)]
Whole = Annotated[int, PathParameter(ge=0, le=MAX_INTEGER)]
_INTEGER_PARAMETERS = frozenset({"since", "since_id", "epoch", "slice_index"})


def _parameter_error(error: RequestValidationError) -> str:
    """One short line for the first bad parameter of a request (no pydantic detail list)."""
    problems = error.errors()
    if not problems:
        return "bad request"
    problem = problems[0]
    location = problem.get("loc") or ()
    name = str(location[-1]) if location else "parameter"
    given = problem.get("input")
    shown = repr(given) if len(repr(given)) <= 40 else repr(given)[:37] + "..."
    label = "slice" if name == "slice_index" else name
    if name in _INTEGER_PARAMETERS:
        return f"{label} must be a whole number from 0 to 2**63 - 1, not {shown}"
    return f"bad {label}: {problem.get('msg', 'invalid')}"


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
    without, 403 with a wrong one; a token that :func:`check_token` refuses (empty, short) raises
    InvalidInputError. Without, only requests addressed to a loopback host name are answered.
    ``poll_s`` is how often the live stream looks for new rows.
    """
    token = check_token(token)
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

    @api.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, error: RequestValidationError) -> Response:
        return _error(400, _parameter_error(error))

    @api.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> Response:
        # The traceback goes to the server's log (Starlette re-raises); the client learns nothing.
        return _error(500, "internal error (the dashboard's log has the details)")

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
        return _json(runs.read(run, lambda store: detail(store, run, runs.root)))

    @api.get("/api/runs/{run}/steps")
    def steps(run: str, since: Since = None) -> Response:
        columns = runs.read(run, lambda store: step_columns(store, since))
        return _json({"run": run, "since": since, "columns": columns})

    @api.get("/api/runs/{run}/epochs")
    def epochs(run: str, since: Since = None) -> Response:
        columns = runs.read(run, lambda store: epoch_columns(store, since))
        return _json({"run": run, "since": since, "columns": columns})

    @api.get("/api/runs/{run}/layers/{stat}")
    def layers(run: str, stat: str, since: Since = None) -> Response:
        matrix = runs.read(run, lambda store: layer_matrix(store, stat, since))
        return _json({"run": run, "since": since, **matrix})

    @api.get("/api/runs/{run}/histograms")
    def histograms(run: str, since: Since = None, layer: str | None = None) -> Response:
        def read(store: RunStore) -> dict[str, Any]:
            edges = store.histogram_edges() or []
            rows = store.histograms(since_step=since, layers=None if layer is None else [layer])
            return {
                "run": run,
                "since": since,
                "edges": edges,
                "centres": bin_centres(edges),
                "layers": histogram_layers(rows),
            }

        return _json(runs.read(run, read))

    @api.get("/api/runs/{run}/events")
    def events(run: str, since_id: Since = None, kind: str | None = None) -> Response:
        rows = runs.read(run, lambda store: event_records(store, since_id, kind))
        last_id = rows[-1]["id"] if rows else since_id
        return _json({"run": run, "events": rows, "last_id": last_id})

    @api.get("/api/runs/{run}/watch")
    def watch(run: str, since: Since = None) -> Response:
        frames = runs.read(run, lambda store: store.watch_frames(since_epoch=since))
        return _json({"run": run, "frames": frames})

    @api.get("/api/runs/{run}/watch/{epoch}/{slice_index}/{kind}.png")
    def watch_png(run: str, epoch: Whole, slice_index: Whole, kind: str) -> Response:
        png = runs.read(run, lambda store: store.watch_png(epoch, slice_index, kind))
        if png is None:
            return _error(404, f"{run}: no {kind} picture of slice {slice_index} at epoch {epoch}")
        return Response(
            png, media_type="image/png", headers={"cache-control": "private, max-age=3600"}
        )

    @api.get("/api/stream")
    async def stream(cursors: str = Query("{}", alias="from")) -> Response:
        try:
            follow = parse_cursors(cursors)
        except ValueError as error:
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
