"""The workspace's registered datasets: a name for a data folder, kept in ``datasets.json``;
and the folders under the workspace's ``datasets/`` not registered yet (a phantom a job wrote),
offered beside them.

Registering reads nothing of the data; it only records a folder that is inside the workspace
or an allowed root (:meth:`~lvseg.workbench.workspace.Workspace.resolve`), so a job may name it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException

from lvseg.atomic import write_text
from lvseg.errors import InvalidInputError
from lvseg.workbench.workspace import Workspace

REGISTRY = "datasets.json"
MAX_NAME = 100


@dataclass(frozen=True)
class Dataset:
    name: str
    path: str  # resolved, absolute
    added: float  # Unix seconds


class Datasets:
    """The registered datasets of ``workspace``, read from and written to its JSON file."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.file = workspace.root / REGISTRY
        self._lock = threading.Lock()  # a read-modify-write at a time (the server's threads)

    def list(self) -> list[Dataset]:
        try:
            text = self.file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        try:
            return [Dataset(**entry) for entry in json.loads(text)["datasets"]]
        except (ValueError, KeyError, TypeError) as error:
            raise InvalidInputError(self.file, f"not a dataset registry: {error}") from None

    def register(self, path: Any, name: Any = None) -> tuple[Dataset, bool]:
        """The dataset at ``path`` (a folder inside the roots) and whether it is new; the same
        folder registered again is the entry it already has."""
        if not isinstance(path, str) or not path or not path.isprintable():
            raise InvalidInputError(None, "a dataset needs a path: a printable string")
        folder = self.workspace.resolve(path)  # traversal, elsewhere, symlinks out: refused
        if not folder.is_dir():
            raise InvalidInputError(path, "not a folder")
        name = folder.name if name is None else name
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or not name.isprintable():
            raise InvalidInputError(None, f"a dataset name is 1 to {MAX_NAME} printable characters")
        with self._lock:
            known = self.list()
            for dataset in known:
                if Path(dataset.path) == folder:
                    return dataset, False
                if dataset.name == name:
                    raise InvalidInputError(None, f"dataset name {name!r} is taken")
            dataset = Dataset(name, str(folder), time.time())
            entries = [asdict(d) for d in [*known, dataset]]
            write_text(self.file, json.dumps({"datasets": entries}, indent=1) + "\n")
        return dataset, True

    def unregistered(self, busy: Iterable[Path] = ()) -> list[Dataset]:
        """The folders right under the workspace's ``datasets/`` that no entry names, by
        folder name (``added``: the folder's time), less ``busy`` ones (a job still writes
        them) and symlinks; a folder whose name an entry already has is left out (register
        it under another name)."""
        known = self.list()
        paths = {Path(d.path) for d in known}
        names = {d.name for d in known}
        busy = {Path(path) for path in busy}
        offered: list[Dataset] = []
        if not self.workspace.datasets.is_dir():  # removed by hand since the server started
            return offered
        for folder in sorted(self.workspace.datasets.iterdir()):
            if folder.name.startswith(".") or folder.is_symlink() or not folder.is_dir():
                continue
            if folder in busy or folder.resolve() in paths or folder.name in names:
                continue
            offered.append(Dataset(folder.name, str(folder.resolve()), folder.stat().st_mtime))
        return offered

    def listing(self, busy: Iterable[Path] = ()) -> list[dict[str, Any]]:
        """What ``GET /api/datasets`` shows: the registered datasets, then the unregistered
        folders of ``datasets/``, each with ``registered``."""
        registered = [asdict(d) | {"registered": True} for d in self.list()]
        offered = [asdict(d) | {"registered": False} for d in self.unregistered(busy)]
        return registered + offered

    def find(self, name: str) -> Dataset:
        """The dataset called ``name``: a registered one, else a folder of ``datasets/``; an
        unknown name is a 404."""
        for dataset in [*self.list(), *self.unregistered()]:
            if dataset.name == name:
                return dataset
        shown = name if len(name) <= 60 and name.isprintable() else ascii(name)[:60]
        raise HTTPException(404, f"no dataset {shown!r}")
