"""The workbench's JSON API over a workspace's queue and datasets (:func:`create_workbench_app`).

Every answer is JSON; an error is ``{"error": one line}``: 400 for a refused request (an
unknown option, a path outside the roots, a missing confirmation), 404 for an unknown job, 403
from the guards (:mod:`lvseg.workbench.guard`, :mod:`lvseg.dashboard.access`).

- ``GET /``: the page (:mod:`lvseg.workbench.page`), with the session cookie and the CSRF
  token (in ``<meta name="csrf-token">``); ``GET /static/{name}``: its modules
- ``GET /api/jobs``, ``GET /api/jobs/{id}``: ``{"jobs": [job, ...]}``, a job
- ``POST /api/jobs`` ``{"kind", "args"}``: a queued job (201)
- ``POST /api/jobs/{id}/stop``, ``/resume`` (201, the new job), ``/clone`` ``{"changes"}`` (201)
- ``DELETE /api/jobs/{id}?confirm=RUN_FOLDER_NAME``: ``{"deleted": [ids]}``
- ``GET /api/jobs/{id}/log?tail=BYTES`` or ``?since=OFFSET``: ``{"job", "size", "offset", "text"}``
- ``GET /api/jobs/{id}/command``: ``{"argv", "command"}``, the lvseg command line it runs
- ``GET /api/datasets``: the registered datasets, then the unregistered folders of datasets/
  (a phantom a job wrote), each with ``registered``; ``POST /api/datasets`` ``{"path",
  "name"?}`` (201 new, 200 known)
- a dataset's inspection and plan: :mod:`lvseg.workbench.inspection`; the splits:
  :mod:`lvseg.workbench.splits`
- ``GET /api/runs``, ``GET /api/runs/{name}``: the training runs side by side
  (:mod:`lvseg.workbench.runs`)
- ``/monitor/...``: the live training monitor (:mod:`lvseg.workbench.monitor`)
- selections, evaluations and exports: :mod:`lvseg.workbench.deploy`
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParameter
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lvseg.dashboard.access import Guard, check_token
from lvseg.dashboard.responses import error_response, json_response
from lvseg.errors import InvalidInputError
from lvseg.workbench.datasets import Datasets
from lvseg.workbench.deploy import deploy_routes
from lvseg.workbench.guard import SessionGuard, Sessions, session_cookie
from lvseg.workbench.inspection import inspection_routes
from lvseg.workbench.models import model_routes
from lvseg.workbench.monitor import FRAME_ANCESTORS, mount_monitor
from lvseg.workbench.page import page_routes
from lvseg.workbench.queue import Job, JobQueue
from lvseg.workbench.runner import Runner
from lvseg.workbench.runs import run_routes
from lvseg.workbench.splits import split_routes
from lvseg.workbench.workspace import Workspace, resolve_inside

MAX_BODY = 64 * 1024
DEFAULT_TAIL = 64 * 1024
MAX_TAIL = 1024 * 1024
JobId = Annotated[int, PathParameter(ge=1, le=2**63 - 1)]
Bytes = Annotated[int, Query(ge=0, le=MAX_TAIL)]
Offset = Annotated[int | None, Query(ge=0, le=2**63 - 1)]


class JobNotFound(Exception):
    """An id the queue does not hold: 404."""


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object (empty body: ``{}``); anything else is a one-line 400."""
    body = await request.body()
    if not body:
        return {}
    if len(body) > MAX_BODY:
        raise InvalidInputError(None, f"request body over {MAX_BODY} bytes")
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise InvalidInputError(None, "the body must be JSON (Content-Type: application/json)")
    try:
        value = json.loads(body)
    except ValueError as error:
        raise InvalidInputError(None, f"the body is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise InvalidInputError(None, "the body must be a JSON object")
    return value


Body = Annotated[dict[str, Any], Depends(json_body)]


def job_record(job: Job, workspace: Workspace) -> dict[str, Any]:
    """A job as the API shows it: paths as strings, its output's name (``run``: a training
    job's run folder) and its place in the workspace (``output``, e.g. ``exports/job-0007``)."""
    record = asdict(job)
    for name in ("run_dir", "log_path"):
        record[name] = str(record[name]) if record[name] is not None else None
    record["run"] = job.run_dir.name if job.run_dir is not None else None
    inside = job.run_dir is not None and job.run_dir.is_relative_to(workspace.root)
    record["output"] = job.run_dir.relative_to(workspace.root).as_posix() if inside else None
    record["reason"] = failure_reason(workspace, job) if job.state == "failed" else None
    return record


REASON_BYTES = 4096
REASON_CHARS = 300


def failure_reason(workspace: Workspace, job: Job) -> str | None:
    """Why a failed job failed, from the end of its log: lvseg's one-line error (``error:
    ...``) or the runner's (``lvseg workbench: cannot start ...``), else its last line (a
    crash's exception); None where the log says nothing."""
    text = _read_log(workspace, job, REASON_BYTES, None)["text"]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith(("error:", "lvseg workbench:"))]
    reason = (said or lines or [None])[-1]
    return None if reason is None else reason[:REASON_CHARS]


class _Jobs:
    """The routes' access to the queue: a job by id (404 if unknown), and the runner's wake."""

    def __init__(self, queue: JobQueue, runner: Runner | None) -> None:
        self.queue = queue
        self.runner = runner

    def get(self, job_id: int) -> Job:
        try:
            return self.queue.get(job_id)
        except InvalidInputError:
            raise JobNotFound(f"no job {job_id}") from None

    def record(self, job: Job) -> dict[str, Any]:
        return job_record(job, self.queue.workspace)

    def changed(self, value: Any, status_code: int = 200) -> Response:
        if self.runner is not None:
            self.runner.wake()  # start a queued job, or carry on a stop, now
        return json_response(value, status_code)


def _job_routes(jobs: _Jobs) -> APIRouter:
    router = APIRouter()
    queue = jobs.queue

    @router.get("/api/jobs")
    def job_list() -> Response:
        return json_response({"jobs": [jobs.record(job) for job in queue.list_jobs()]})

    @router.get("/api/jobs/{job_id}")
    def job_detail(job_id: JobId) -> Response:
        return json_response(jobs.record(jobs.get(job_id)))

    @router.post("/api/jobs")
    def submit(body: Body) -> Response:
        job = queue.submit(body.get("kind"), body.get("args", {}))
        return jobs.changed(jobs.record(job), 201)

    @router.post("/api/jobs/{job_id}/stop")
    def stop(job_id: JobId) -> Response:
        return jobs.changed(jobs.record(queue.request_stop(jobs.get(job_id).id)))

    @router.post("/api/jobs/{job_id}/resume")
    def resume(job_id: JobId) -> Response:
        return jobs.changed(jobs.record(queue.resume(jobs.get(job_id).id)), 201)

    @router.post("/api/jobs/{job_id}/clone")
    def clone(job_id: JobId, body: Body) -> Response:
        changes = body.get("changes", {})
        if not isinstance(changes, dict):
            raise InvalidInputError(None, "changes must be an object of options")
        return jobs.changed(jobs.record(queue.clone(jobs.get(job_id).id, changes)), 201)

    @router.delete("/api/jobs/{job_id}")
    def delete(job_id: JobId, confirm: str | None = None) -> Response:
        job = jobs.get(job_id)
        run = job.run_dir.name if job.run_dir is not None else f"job-{job.id:04d}"
        # A confirmation against a slip, not a secret: the page asks the user to type it.
        if confirm != run:
            raise InvalidInputError(None, f"to delete run {run}, confirm with its name ({run})")
        return jobs.changed({"deleted": queue.delete(job.id)})

    @router.get("/api/jobs/{job_id}/command")
    def command(job_id: JobId) -> Response:
        argv = queue.argv(jobs.get(job_id))
        return json_response({"argv": argv, "command": shlex.join(argv)})

    @router.get("/api/jobs/{job_id}/log")
    def log(job_id: JobId, tail: Bytes = DEFAULT_TAIL, since: Offset = None) -> Response:
        job = jobs.get(job_id)
        return json_response({"job": job.id, **_read_log(queue.workspace, job, tail, since)})

    return router


def _read_log(workspace: Workspace, job: Job, tail: int, since: int | None) -> dict[str, Any]:
    """The job's own log (never a path from the request): its last ``tail`` bytes, or up to
    :data:`MAX_TAIL` bytes from ``since``."""
    if job.log_path is None or job.log_path.is_symlink():
        return {"size": 0, "offset": 0, "text": ""}
    path = resolve_inside(job.log_path, [workspace.logs])
    try:
        with open(path, "rb") as log:
            size = log.seek(0, 2)
            offset = max(0, size - tail) if since is None else min(since, size)
            log.seek(offset)
            data = log.read(MAX_TAIL if since is not None else tail)
    except FileNotFoundError:  # not started yet
        return {"size": 0, "offset": 0, "text": ""}
    return {"size": size, "offset": offset, "text": data.decode("utf-8", errors="replace")}


def _dataset_routes(datasets: Datasets, queue: JobQueue) -> APIRouter:
    router = APIRouter()

    @router.get("/api/datasets")
    def dataset_list() -> Response:
        # A folder a job still writes (a phantom on its way) is not offered yet.
        live = queue.list_jobs("queued") + queue.list_jobs("running")
        busy = [job.run_dir for job in live if job.run_dir is not None]
        return json_response({"datasets": datasets.listing(busy)})

    @router.post("/api/datasets")
    def register(body: Body) -> Response:
        dataset, new = datasets.register(body.get("path"), body.get("name"))
        return json_response(asdict(dataset), 201 if new else 200)

    return router


def _answer_errors_in_json(api: FastAPI) -> None:
    @api.exception_handler(JobNotFound)
    async def not_found(request: Request, error: JobNotFound) -> Response:
        return error_response(404, str(error))

    @api.exception_handler(InvalidInputError)
    async def refused(request: Request, error: InvalidInputError) -> Response:
        return error_response(400, str(error))

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        return error_response(error.status_code, str(error.detail))

    @api.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, error: RequestValidationError) -> Response:
        problem = (error.errors() or [{}])[0]
        name = str((problem.get("loc") or ("parameter",))[-1])
        return error_response(400, f"bad {name}: {problem.get('msg', 'invalid')}")

    @api.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> Response:
        # A bug: the traceback goes to the server's log (Starlette re-raises), not the client.
        return error_response(500, "internal error (the workbench's log has the details)")


def create_workbench_app(
    workspace: Workspace,
    queue: JobQueue,
    runner: Runner | None = None,
    token: str | None = None,
    *,
    port: int | None = None,
) -> Any:
    """The workbench's ASGI app over ``workspace`` and its ``queue``; ``runner`` (started by
    the caller) is woken after each change. Without ``token`` only loopback Host names are
    answered; with one, every request carries it; every change also passes
    :class:`~lvseg.workbench.guard.SessionGuard`. ``port``, the server's, names the session
    cookie (:func:`~lvseg.workbench.guard.session_cookie`)."""
    token = check_token(token)
    sessions = Sessions()
    cookie = session_cookie(port)
    api = FastAPI(title="lvseg workbench", docs_url=None, redoc_url=None, openapi_url=None)
    api.state.queue = queue
    _answer_errors_in_json(api)
    api.include_router(page_routes(sessions, cookie, token))
    api.include_router(_job_routes(_Jobs(queue, runner)))
    datasets = Datasets(workspace)
    api.include_router(_dataset_routes(datasets, queue))
    api.include_router(inspection_routes(workspace, datasets))
    api.include_router(split_routes(queue, datasets))
    api.include_router(model_routes(workspace))
    api.include_router(run_routes(workspace))
    api.include_router(deploy_routes(workspace, queue, token))
    mount_monitor(api, workspace, token)
    guarded = SessionGuard(api, token, sessions, cookie)
    return Guard(guarded, token, frame_ancestors=FRAME_ANCESTORS)
