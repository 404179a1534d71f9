"""A dataset's inspection (counts, groups, spacing, a montage) and its fingerprint and
preprocessing plan, from ``lvseg data inspect`` and ``lvseg data plan`` run as subprocesses
(the workbench stays torch-free), kept in the workspace's cache until the folder changes.

- ``GET /api/datasets/{name}/inspection``: ``lvseg data inspect --json``'s summary, with
  ``dataset``, ``command`` (the lvseg command line) and ``seconds``
- ``GET /api/datasets/{name}/montage.png``: its montage of slices with their contours
- ``GET /api/datasets/{name}/plan``: ``{"fingerprint", "plan", "dataset", "command", "seconds"}``

A dataset is named by its name (:meth:`~lvseg.workbench.datasets.Datasets.find`), never by a
path from the request; a command's failure is a 400 with lvseg's own one-line message.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from lvseg.atomic import write_text
from lvseg.dashboard.responses import json_response
from lvseg.errors import InvalidInputError
from lvseg.workbench.commands import run_json
from lvseg.workbench.datasets import Datasets
from lvseg.workbench.workspace import Workspace

TIMEOUT = 300.0
CACHE_FOLDER = Path(".cache") / "datasets"
VERBS = ("inspect", "plan")


def folder_signature(folder: Path) -> str:
    """What changes when the data does: the count, sizes and latest times of the files and
    folders under ``folder`` (a walk of names and stats, no file read)."""
    files = size = latest = 0
    problems: list[OSError] = []
    for parent, _, names in os.walk(folder, onerror=problems.append):
        for name in [None, *names]:  # the folder itself (its time), then its files
            try:
                path = parent if name is None else os.path.join(parent, name)
                stat = os.stat(path, follow_symlinks=False)
            except OSError as error:
                problems.append(error)
                continue
            latest = max(latest, stat.st_mtime_ns)
            if name is not None:
                files, size = files + 1, size + stat.st_size
    if problems:
        raise InvalidInputError(folder, f"cannot read the dataset folder: {problems[0]}")
    return f"{files}:{size}:{latest}"


class DataCommands:
    """``lvseg data inspect`` and ``lvseg data plan`` of a named dataset: run once per state of
    its folder (one at a time per folder), their answers kept as files in the workspace's
    cache. ``run`` is :func:`subprocess.run` (a test counts its calls)."""

    def __init__(
        self,
        workspace: Workspace,
        datasets: Datasets,
        timeout: float = TIMEOUT,
        run: Callable[..., subprocess.CompletedProcess] | None = None,
    ) -> None:
        self.workspace = workspace
        self.datasets = datasets
        self.timeout = timeout
        self.cache = workspace.root / CACHE_FOLDER
        self._run = run
        self._locks: dict[Path, threading.Lock] = {}
        self._guard = threading.Lock()

    def folder(self, name: str) -> Path:
        """The dataset's folder, confined again (the allowed roots may have changed since it
        was registered), or a one-line refusal if it is gone."""
        dataset = self.datasets.find(name)
        folder = self.workspace.resolve(dataset.path)
        if not folder.is_dir():
            raise InvalidInputError(None, f"dataset {name}: its folder {folder} is gone")
        return folder

    def answer(self, name: str, verb: str) -> dict[str, Any]:
        """The verb's JSON for dataset ``name``: from the cache, else run now."""
        return {**self._answer(name, verb)[0], "dataset": name}

    def montage(self, name: str) -> Path:
        """The inspection's montage PNG, drawn with the summary when not cached yet."""
        _, paths = self._answer(name, "inspect")
        if not paths["png"].is_file():  # the cache lost it: draw it again
            paths["json"].unlink(missing_ok=True)
            _, paths = self._answer(name, "inspect")
        return paths["png"]

    def _answer(self, name: str, verb: str) -> tuple[dict[str, Any], dict[str, Path]]:
        folder = self.folder(name)
        with self._guard:
            lock = self._locks.setdefault(folder, threading.Lock())
        with lock:  # one subprocess at a time per folder; a waiter then reads its answer
            paths = self._paths(verb, folder)
            cached = _read_json(paths["json"])
            if cached is None:
                cached = self._command(verb, folder, paths)
        return cached, paths

    def _paths(self, verb: str, folder: Path) -> dict[str, Path]:
        """The cache files of ``verb`` on ``folder`` as it is now: ``VERB-FOLDER-STATE``."""
        place = hashlib.sha1(str(folder).encode()).hexdigest()[:16]
        state = hashlib.sha1(folder_signature(folder).encode()).hexdigest()[:16]
        stem = f"{verb}-{place}-{state}"
        return {"json": self.cache / f"{stem}.json", "png": self.cache / f"{stem}.png"}

    def argv(self, verb: str, folder: Path, montage: Path | None) -> list[str]:
        argv = [sys.executable, "-m", "lvseg", "data", verb, str(folder), "--json"]
        return argv + (["--out", str(montage)] if montage is not None else [])

    def _command(self, verb: str, folder: Path, paths: dict[str, Path]) -> dict[str, Any]:
        """Run the verb (the montage drawn under a name of its own, then renamed: a request
        never reads half a file), keep its JSON, and drop the folder's older answers."""
        self.cache.mkdir(parents=True, exist_ok=True)
        part = paths["png"].with_name(f"{paths['png'].stem}.{uuid.uuid4().hex}.png")
        argv = self.argv(verb, folder, part if verb == "inspect" else None)
        shown = self.argv(verb, folder, paths["png"] if verb == "inspect" else None)
        started = time.monotonic()
        try:
            value = self._subprocess(verb, argv)
            if verb == "inspect":
                os.replace(part, paths["png"])
        finally:
            part.unlink(missing_ok=True)
        value.pop("montage", None)  # a path in the cache; the page asks montage.png
        value["command"] = shlex.join(["lvseg", *shown[3:]])
        value["seconds"] = round(time.monotonic() - started, 2)
        current = paths["json"].stem
        for stale in self.cache.glob(f"{current.rsplit('-', 1)[0]}-*"):
            if not stale.name.startswith(current):  # the folder's earlier states
                stale.unlink(missing_ok=True)
        write_text(paths["json"], json.dumps(value) + "\n")
        return value

    def _subprocess(self, verb: str, argv: list[str]) -> dict[str, Any]:
        return run_json(argv, self.workspace.root, self.timeout, f"lvseg data {verb}", self._run)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def inspection_routes(workspace: Workspace, datasets: Datasets) -> APIRouter:
    router = APIRouter()
    commands = DataCommands(workspace, datasets)

    # {name:path}: a registered name may hold a '/', which the URL's %2F becomes again.
    @router.get("/api/datasets/{name:path}/inspection")
    def inspection(name: str) -> Response:
        return json_response(commands.answer(name, "inspect"))

    @router.get("/api/datasets/{name:path}/montage.png")
    def montage(name: str) -> Response:
        return FileResponse(commands.montage(name), media_type="image/png")

    @router.get("/api/datasets/{name:path}/plan")
    def plan(name: str) -> Response:
        return json_response(commands.answer(name, "plan"))

    return router
