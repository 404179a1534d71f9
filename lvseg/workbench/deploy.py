"""The workbench's compare, select and deploy routes: a run's choice (``lvseg select``'s
``selected.json``), the evaluations (``lvseg evaluate``) and exports (``lvseg export``) in the
workspace, their headline figures and their files. Torch-free: it reads what the commands wrote.

- ``GET /api/runs/{run}/selection``: ``selected.json`` of ``runs/RUN`` as it holds it (chosen
  checkpoint, ``reason``, ``candidates``, ``rejected``...) plus ``run_name``; 404 without one
- ``GET /api/evaluations``: ``{"evaluations": [summary, ...]}``; ``GET /api/evaluations/{name}``:
  one, with its per-patient table; ``GET /api/evaluations/{name}/files/{file}``: report.html,
  slices.csv, metrics.json and ``figures/*.png`` (the report's relative links work)
- ``GET /api/exports``: ``{"exports": [summary, ...]}``; ``GET /api/exports/{name}``: one, with
  its model card (Markdown and JSON); ``GET /api/exports/{name}/files/{file}``: a download

Every name in a URL is one path component, resolved inside its folder (no traversal, no symlink
out: 400); an unknown one is a 404.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response
from starlette.exceptions import HTTPException

from lvseg import layout
from lvseg.dashboard.responses import json_response
from lvseg.errors import InvalidInputError
from lvseg.workbench.queue import Job, JobQueue
from lvseg.workbench.workspace import Workspace, resolve_inside

MAX_NAME = 255
MAX_JSON_BYTES = 16 * 1024 * 1024
MAX_CARD_BYTES = 1024 * 1024
PARITY_MIN_DICE = 0.999
"""lvseg.deploy.export.PARITY_MIN_DICE (that module imports torch): the mask Dice against PyTorch
a full-precision variant needs; a test checks the two agree."""
FIGURES = "figures"  # lvseg.evaluate.page.FIGURES_FOLDER
REPORT = "report.html"
EVALUATION_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
}
"""What an evaluation folder serves, by suffix: nothing else in it is answered."""
HEADLINE = ("slices", "patients", "dice_mean", "dice_median", "iou_mean", "hd95_mm_mean")
HEADLINE += ("apd_mm_mean", "detection_rate", "good_contour_rate_5mm")
# A relative link of the report (figures/x.png, metrics.json): no scheme, no leading slash.
_RELATIVE_LINK = re.compile(r"""((?:src|href)=')([^'/:?#][^':?#]*)'""")


def checked_name(name: str, what: str) -> str:
    """``name`` if it is one plain path component (no separator, no ``..``, not hidden), else a
    one-line 400."""
    bad = (
        not name
        or len(name) > MAX_NAME
        or not name.isprintable()
        or "/" in name
        or "\\" in name
        or name.startswith(".")  # '.', '..', and hidden files such as the output marker
    )
    if bad:
        shown = name if name.isprintable() and len(name) <= 60 else ascii(name)[:60]
        raise InvalidInputError(None, f"bad {what} name {shown!r}: one plain folder or file name")
    return name


def confined(parent: Path, parts: list[str], what: str) -> Path:
    """``parent/parts...`` resolved inside ``parent`` (400 if it leads out), 404 if missing."""
    for part in parts:
        checked_name(part, what)
    path = parent.joinpath(*parts)
    if not path.exists() and not path.is_symlink():
        raise HTTPException(404, f"no {what} {'/'.join(parts)!r}")
    return resolve_inside(path, [parent])


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None if missing, unreadable, not an object, or a symlink (the
    commands write none: one would lead out of its folder)."""
    try:
        if path.is_symlink() or path.stat().st_size > MAX_JSON_BYTES:
            return None
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def folder_files(folder: Path) -> list[dict[str, Any]]:
    """The plain files of ``folder`` and of its ``figures/`` (name relative to it, size), sorted;
    hidden files and symlinks left out."""
    found = []
    for sub in (folder, folder / FIGURES):
        if sub.is_symlink() or not sub.is_dir():
            continue
        for path in sorted(sub.iterdir()):
            if path.name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            name = path.relative_to(folder).as_posix()
            found.append({"name": name, "size": path.stat().st_size})
    return found


def _mean(values: list[Any]) -> float | None:
    kept = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sum(kept) / len(kept) if kept else None


def evaluation_summary(folder: Path, job: Job | None, *, full: bool = False) -> dict[str, Any]:
    """What the page shows of an evaluation: who and what was scored, the headline figures
    (per slice; ``patient_dice_mean``, the mean of the patients' means; the EF agreement, if
    any), its files; with ``full``, the per-patient table too."""
    metrics = read_json(folder / layout.EVALUATION_METRICS) or {}
    summary, model, data = (metrics.get(key) or {} for key in ("summary", "model", "data"))
    patients = metrics.get("patients") or []
    clinical = metrics.get("clinical") or {}
    answer = {
        "name": folder.name,
        **_job_facts(job),
        "created": metrics.get("created"),
        "model": {"name": model.get("name"), "source": model.get("source")},
        "data": {key: data.get(key) for key in ("path", "format", "split", "distance_units")},
        "headline": {key: summary.get(key) for key in HEADLINE}
        | {"patient_dice_mean": _mean([p.get("dice_mean") for p in patients])},
        "ef_agreement": (clinical.get("agreement") or {}).get("ef"),
        "report": REPORT if (folder / REPORT).is_file() else None,
        "files": folder_files(folder),
    }
    if full:
        keep = ("patient_id", "group", "slices", "dice_mean", "dice_median", "hd95_mm_mean")
        answer["patients"] = [{key: p.get(key) for key in keep} for p in patients]
        answer["split_note"] = data.get("split_note")
    return answer


def export_summary(folder: Path, job: Job | None, *, full: bool = False) -> dict[str, Any]:
    """What the page shows of an export: its files, the card's headline (model, format, int8)
    and every variant's checks; with ``full``, the card itself (JSON and Markdown)."""
    card = read_json(folder / layout.CARD_JSON) or {}
    model = card.get("model") or {}
    checks = card.get("export_checks") or {}
    variants = []
    for variant, parity in (checks.get("parity") or {}).items():
        mask_dice = parity.get("mask_dice")
        variants.append(
            {
                "variant": variant,
                "file": (checks.get("files") or {}).get(variant, {}).get("file"),
                "mask_dice": mask_dice,
                "max_abs_logit_difference": parity.get("max_abs_logit_difference"),
                "validation_dice": (checks.get("validation_dice") or {}).get(variant),
                "latency_ms_1_thread": (checks.get("latency_ms_1_thread") or {}).get(variant),
                # int8 is measured, never refused (lvseg export's own rule)
                "passed": "int8" in variant
                or (isinstance(mask_dice, (int, float)) and mask_dice >= PARITY_MIN_DICE),
            }
        )
    keep = ("name", "parameters", "checkpoint", "epoch", "format", "int8", "tta", "members")
    answer = {
        "name": folder.name,
        **_job_facts(job),
        "created": card.get("created"),
        "model": {key: model.get(key) for key in keep} if card else None,
        "checks": variants,
        "checks_passed": bool(variants) and all(v["passed"] for v in variants),
        "files": folder_files(folder),
    }
    if full:
        answer["card"] = card or None
        answer["card_markdown"] = _text(folder / layout.CARD_MARKDOWN, MAX_CARD_BYTES)
    return answer


def _text(path: Path, limit: int) -> str | None:
    try:
        if path.is_symlink() or path.stat().st_size > limit:
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _job_facts(job: Job | None) -> dict[str, Any]:
    """The job that wrote a folder, and what it was asked (the model and data paths)."""
    if job is None:
        return {"job": None, "state": None, "args": None}
    return {"job": job.id, "state": job.state, "args": job.args}


class Outputs:
    """The folders of one kind of output (evaluations/, exports/) and the jobs that wrote them."""

    def __init__(self, queue: JobQueue, folder: Path, kind: str, what: str) -> None:
        self.queue = queue
        self.folder = folder
        self.kind = kind
        self.what = what

    def jobs(self) -> dict[str, Job]:
        """Output folder name -> its (latest) job of this kind."""
        found = {}
        for job in self.queue.list_jobs():
            if job.kind == self.kind and job.run_dir is not None:
                if job.run_dir.parent == self.folder:
                    found.setdefault(job.run_dir.name, job)  # list_jobs: newest first
        return found

    def names(self) -> list[str]:
        """The folders that hold a finished output (a plain folder, not hidden), sorted."""
        if not self.folder.is_dir():
            return []
        return sorted(
            path.name
            for path in self.folder.iterdir()
            if not path.name.startswith(".") and not path.is_symlink() and path.is_dir()
        )

    def one(self, name: str) -> Path:
        folder = confined(self.folder, [name], self.what)
        if not folder.is_dir():
            raise HTTPException(404, f"no {self.what} {name!r}")
        return folder

    def file(self, name: str, file: str) -> Path:
        """A file of the output ``name`` (``file``: at most ``figures/NAME``), confined to it."""
        folder = self.one(name)
        parts = file.split("/")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != FIGURES):
            raise InvalidInputError(None, f"bad file name: a file of the {self.what} or figures/")
        path = confined(folder, parts, "file")
        if not path.is_file():
            raise HTTPException(404, f"no file {file!r} in {self.what} {name!r}")
        return path


def _serve_evaluation_file(path: Path, token: str | None) -> Response:
    media_type = EVALUATION_TYPES.get(path.suffix.lower())
    if media_type is None:
        raise HTTPException(404, f"{path.name!r} is not a file an evaluation serves")
    if path.name == REPORT and token is not None:
        # The report's relative links (figures/, metrics.json) must carry the token: the guard
        # wants it on every request, and an <img> sends no header.
        suffix = f"?token={quote(token, safe='')}"
        page = path.read_text(encoding="utf-8", errors="replace")
        page = _RELATIVE_LINK.sub(lambda m: f"{m.group(1)}{m.group(2)}{suffix}'", page)
        return Response(page, media_type=media_type)
    return FileResponse(path, media_type=media_type)


def _selection(workspace: Workspace, run: str) -> dict[str, Any]:
    folder = confined(workspace.runs, [run], "run")
    path = folder / layout.SELECTED
    if path.is_symlink() or not path.is_file():
        raise HTTPException(404, f"run {run!r} has no {layout.SELECTED} (run lvseg select)")
    selected = read_json(resolve_inside(path, [folder]))
    if selected is None:
        raise InvalidInputError(None, f"run {run!r}: {layout.SELECTED} is not readable JSON")
    return {**selected, "run_name": run}


def deploy_routes(workspace: Workspace, queue: JobQueue, token: str | None = None) -> APIRouter:
    """The routes of the module docstring; ``token`` (the server's) goes into the report's links."""
    router = APIRouter()
    evaluations = Outputs(queue, workspace.evaluations, "evaluate", "evaluation")
    exports = Outputs(queue, workspace.exports, "export", "export")

    @router.get("/api/runs/{run}/selection")
    def selection(run: str) -> Response:
        return json_response(_selection(workspace, run))

    @router.get("/api/evaluations")
    def evaluation_list() -> Response:
        jobs = evaluations.jobs()
        folder = evaluations.folder
        rows = [evaluation_summary(folder / n, jobs.get(n)) for n in evaluations.names()]
        return json_response({"evaluations": rows})

    @router.get("/api/evaluations/{name}")
    def evaluation(name: str) -> Response:
        folder = evaluations.one(name)
        return json_response(evaluation_summary(folder, evaluations.jobs().get(name), full=True))

    @router.get("/api/evaluations/{name}/files/{file:path}")
    def evaluation_file(name: str, file: str) -> Response:
        return _serve_evaluation_file(evaluations.file(name, file), token)

    @router.get("/api/exports")
    def export_list() -> Response:
        jobs = exports.jobs()
        rows = [export_summary(exports.folder / n, jobs.get(n)) for n in exports.names()]
        return json_response({"exports": rows})

    @router.get("/api/exports/{name}")
    def export(name: str) -> Response:
        folder = exports.one(name)
        return json_response(export_summary(folder, exports.jobs().get(name), full=True))

    @router.get("/api/exports/{name}/files/{file:path}")
    def export_file(name: str, file: str) -> Response:
        path = exports.file(name, file)
        # A download, whatever the file: the browser saves it rather than showing it.
        return FileResponse(
            path,
            media_type="application/octet-stream",
            filename=path.name,
            content_disposition_type="attachment",
        )

    return router
