"""The patient-level splits in the workspace's ``splits/``: those ``data-split`` jobs wrote
(``split-NNNN.json``, or ``split-NNNN_K.json`` for fold K), each with the dataset it was made
from (the job's ``data`` argument: the file holds only the patient lists).

- ``GET /api/splits``: ``{"splits": [record, ...]}``, newest first; a record is ``{"file",
  "job", "fold", "data", "dataset", "options", "counts": {"train", "val", "test"}, "created"}``
- ``GET /api/splits/{file}``: its record with the ``train``, ``val`` and ``test`` patient ids
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from lvseg.dashboard.responses import json_response
from lvseg.errors import InvalidInputError
from lvseg.workbench.datasets import Datasets
from lvseg.workbench.queue import JobQueue
from lvseg.workbench.workspace import resolve_inside

SPLIT_FILE = re.compile(r"split-(\d{4,9})(?:_(\d{1,4}))?\.json")
PARTS = ("train", "val", "test")
OPTIONS = ("val", "test", "folds", "seed", "format")


def read_split(path: Path) -> dict[str, list[str]]:
    """The split's patient lists, or a one-line refusal for a file that is not one."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InvalidInputError(path.name, f"not a readable split: {error}") from None
    if not isinstance(value, dict):
        raise InvalidInputError(path.name, "not a split: no object of patient lists")
    parts = {part: value.get(part, []) for part in PARTS}
    for part, patients in parts.items():
        if not isinstance(patients, list) or not all(isinstance(p, str) for p in patients):
            raise InvalidInputError(path.name, f"not a split: {part} is not a list of patients")
    return parts


class Splits:
    """The split files and, from the job queue, where each came from."""

    def __init__(self, queue: JobQueue, datasets: Datasets) -> None:
        self.queue = queue
        self.folder = queue.workspace.splits
        self.datasets = datasets

    def files(self) -> list[Path]:
        """The split files a job may have written (by name; symlinks left out), newest job
        first, folds in order."""
        if not self.folder.is_dir():  # removed by hand since the server started
            return []
        found = [
            path
            for path in self.folder.iterdir()
            if SPLIT_FILE.fullmatch(path.name) and path.is_file() and not path.is_symlink()
        ]
        return sorted(found, key=lambda p: _order(p.name))

    def path(self, file: str) -> Path:
        """The split file called ``file`` (a bare ``split-NNNN[_K].json`` name, confined to
        ``splits/``), or a refusal: 400 for another name, 404 for a missing file."""
        if SPLIT_FILE.fullmatch(file) is None:
            shown = file if len(file) <= 60 and file.isprintable() else ascii(file)[:60]
            raise InvalidInputError(None, f"not a split file name: {shown!r}")
        path = self.folder / file
        if path.is_symlink() or not path.is_file():
            raise HTTPException(404, f"no split {file}")
        return resolve_inside(path, [self.folder])

    def records(self) -> list[dict[str, Any]]:
        names = self.dataset_names()
        return [self.record(path, names) for path in self.files()]

    def dataset_names(self) -> dict[str, str]:
        """Each dataset's name by its folder's path (a registered name first)."""
        names: dict[str, str] = {}
        for dataset in self.datasets.list() + self.datasets.unregistered():
            names.setdefault(dataset.path, dataset.name)
        return names

    def record(
        self,
        path: Path,
        names: dict[str, str],
        parts: dict[str, list[str]] | None = None,
    ) -> dict[str, Any]:
        """What the list shows of a split: its job's dataset and options, and its counts
        (``error`` instead, for a file that is not a split)."""
        match = SPLIT_FILE.fullmatch(path.name)
        assert match is not None  # files() and path() checked the name
        job_id = int(match.group(1))
        record: dict[str, Any] = {
            "file": path.name,
            "job": job_id,
            "fold": int(match.group(2)) if match.group(2) is not None else None,
            "created": path.stat().st_mtime,
        }
        record |= self._origin(job_id, names)
        try:
            parts = parts if parts is not None else read_split(path)
        except InvalidInputError as error:
            return record | {"counts": None, "error": str(error)}
        return record | {"counts": {part: len(patients) for part, patients in parts.items()}}

    def _origin(self, job_id: int, names: dict[str, str]) -> dict[str, Any]:
        """The split job's data path, the dataset it is known as, and its options (None
        each for a job deleted since, or not a split job)."""
        try:
            job = self.queue.get(job_id)
        except InvalidInputError:
            job = None
        if job is None or job.kind != "data-split":
            return {"data": None, "dataset": None, "options": {}}
        data = job.args.get("data")
        options = {key: job.args[key] for key in OPTIONS if key in job.args}
        return {"data": data, "dataset": names.get(data), "options": options}


def _order(name: str) -> tuple[int, int]:
    match = SPLIT_FILE.fullmatch(name)
    assert match is not None
    return -int(match.group(1)), int(match.group(2) or -1)


def split_routes(queue: JobQueue, datasets: Datasets) -> APIRouter:
    router = APIRouter()
    splits = Splits(queue, datasets)

    @router.get("/api/splits")
    def split_list() -> Response:
        return json_response({"splits": splits.records()})

    @router.get("/api/splits/{file}")
    def split_detail(file: str) -> Response:
        path = splits.path(file)
        parts = read_split(path)
        return json_response(splits.record(path, splits.dataset_names(), parts) | parts)

    return router
