"""The dashboard's HTTP app: the JSON API, the live stream and the page that draws it.

:func:`create_app` serves the runs of a target (see :class:`~lvseg.dashboard.readers.Runs`),
read-only, from the run store only and from nothing outside the runs folder;
:mod:`lvseg.dashboard.launch` runs it as a server. The
routes are grouped by what they serve: the runs' rows (here), the live stream
(:mod:`~lvseg.dashboard.stream`) and the page (:mod:`~lvseg.dashboard.pages`), all behind the
access guard (:mod:`~lvseg.dashboard.access`).

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
  ``problem`` and ``ping`` (see :class:`lvseg.dashboard.stream._StreamState`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi import Path as PathParameter
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lvseg.dashboard.access import Guard, check_token
from lvseg.dashboard.pages import page_routes
from lvseg.dashboard.readers import (
    RunNotFound,
    Runs,
    bin_centres,
    detail,
    epoch_columns,
    event_records,
    histogram_layers,
    layer_matrix,
    step_columns,
)
from lvseg.dashboard.responses import MAX_INTEGER, error_response, json_response
from lvseg.dashboard.stream import POLL_S, stream_routes
from lvseg.errors import InvalidInputError
from lvseg.runs.store import RunStore

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


def _answer_errors_in_json(api: FastAPI) -> None:
    """Every error as ``{"error": ...}``: an unknown run 404, an unreadable one 422, a malformed
    parameter 400 naming it (never 500, no traceback logged)."""

    @api.exception_handler(RunNotFound)
    async def run_not_found(request: Request, error: RunNotFound) -> Response:
        return error_response(404, str(error))

    @api.exception_handler(InvalidInputError)
    async def invalid_run(request: Request, error: InvalidInputError) -> Response:
        return error_response(422, str(error))

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        return error_response(error.status_code, str(error.detail))

    @api.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, error: RequestValidationError) -> Response:
        return error_response(400, _parameter_error(error))

    @api.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> Response:
        # A bug: the traceback goes to the server's log (Starlette re-raises), the client
        # learns nothing.
        return error_response(500, "internal error (the dashboard's log has the details)")


def _run_routes(runs: Runs) -> APIRouter:
    """``GET /api/runs`` and ``/api/runs/{run}/...``: the runs' rows, as the module says."""
    router = APIRouter()

    @router.get("/api/health")
    def health() -> Response:
        return json_response({"ok": True, "target": str(runs.target)})

    @router.get("/api/runs")
    def run_list() -> Response:
        return json_response({"target": str(runs.target), "runs": runs.summaries()})

    @router.get("/api/runs/{run}")
    def run_detail(run: str) -> Response:
        return json_response(runs.read(run, lambda store: detail(store, run, runs.root)))

    @router.get("/api/runs/{run}/steps")
    def steps(run: str, since: Since = None) -> Response:
        columns = runs.read(run, lambda store: step_columns(store, since))
        return json_response({"run": run, "since": since, "columns": columns})

    @router.get("/api/runs/{run}/epochs")
    def epochs(run: str, since: Since = None) -> Response:
        columns = runs.read(run, lambda store: epoch_columns(store, since))
        return json_response({"run": run, "since": since, "columns": columns})

    @router.get("/api/runs/{run}/layers/{stat}")
    def layers(run: str, stat: str, since: Since = None) -> Response:
        matrix = runs.read(run, lambda store: layer_matrix(store, stat, since))
        return json_response({"run": run, "since": since, **matrix})

    @router.get("/api/runs/{run}/histograms")
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

        return json_response(runs.read(run, read))

    @router.get("/api/runs/{run}/events")
    def events(run: str, since_id: Since = None, kind: str | None = None) -> Response:
        rows = runs.read(run, lambda store: event_records(store, since_id, kind))
        last_id = rows[-1]["id"] if rows else since_id
        return json_response({"run": run, "events": rows, "last_id": last_id})

    @router.get("/api/runs/{run}/watch")
    def watch(run: str, since: Since = None) -> Response:
        frames = runs.read(run, lambda store: store.watch_frames(since_epoch=since))
        return json_response({"run": run, "frames": frames})

    @router.get("/api/runs/{run}/watch/{epoch}/{slice_index}/{kind}.png")
    def watch_png(run: str, epoch: Whole, slice_index: Whole, kind: str) -> Response:
        png = runs.read(run, lambda store: store.watch_png(epoch, slice_index, kind))
        if png is None:
            message = f"{run}: no {kind} picture of slice {slice_index} at epoch {epoch}"
            return error_response(404, message)
        return Response(
            png, media_type="image/png", headers={"cache-control": "private, max-age=3600"}
        )

    return router


def create_app(
    target: str | Path,
    token: str | None = None,
    *,
    poll_s: float = POLL_S,
    ping_s: float = 10.0,
    rescan_s: float = 1.0,
    frame_ancestors: str = "'none'",
) -> Any:
    """The dashboard's ASGI app for a run, or a folder of runs, at ``target``.

    With ``token``, every request must carry it (``?token=`` or ``Authorization: Bearer``): 401
    without, 403 with a wrong one; a token that :func:`~lvseg.dashboard.access.check_token`
    refuses (empty, short) raises InvalidInputError. Without, only requests addressed to a
    loopback host name are answered. ``poll_s`` is how often the live stream looks for new rows.
    ``frame_ancestors`` (see :class:`~lvseg.dashboard.access.Guard`): who may frame its pages.
    """
    token = check_token(token)
    runs = Runs(target, rescan_s=rescan_s)
    api = FastAPI(title="lvseg dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    api.state.runs = runs
    _answer_errors_in_json(api)
    api.include_router(page_routes(token))
    api.include_router(_run_routes(runs))
    api.include_router(stream_routes(runs, poll_s, ping_s))
    return Guard(api, token, frame_ancestors=frame_ancestors)
