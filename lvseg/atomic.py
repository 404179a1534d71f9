"""Atomic file writing: a temporary file in the same folder, then a rename.

A reader or a crashed run never sees a half-written file, and an existing file is only replaced
once its successor is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lvseg import layout  # a leaf of names, like lvseg.errors
from lvseg.errors import InvalidInputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _chmod_default(path: Path, directory: bool) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries; give them the permissions a plain
    ``open``/``mkdir`` would have had under the current umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(target) as temporary:
    ...     _ = temporary.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        _chmod_default(temporary, directory=False)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_with(path: str | Path, writer: Callable[[Path], object]) -> None:
    """Call ``writer(temporary_path)``, then rename; for library savers (PNG, DICOM, NIfTI)."""
    with atomic_path(path) as temporary:
        writer(temporary)


OUTPUT_MARKER = layout.OUTPUT_MARKER
LEGACY_MANIFESTS = ("phantom.json", "metrics.json", "model-card.json", "summary.json")
"""Files by which folders written before the marker existed say that lvseg wrote them."""


def written_by_lvseg(path: str | Path) -> bool:
    """Whether ``path`` is a folder an lvseg command wrote: it holds :data:`OUTPUT_MARKER`, or
    (folders from before the marker) a manifest lvseg writes, naming lvseg inside."""
    path = Path(path)
    if (path / OUTPUT_MARKER).is_file():
        return True
    manifests = [path / name for name in LEGACY_MANIFESTS]
    manifests += sorted(path.glob("*/summary.json"))  # predict, several studies
    for manifest in manifests:
        try:
            if manifest.stat().st_size > 50_000_000:
                continue
            found = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(found, dict) and (
            "lvseg_version" in found or found.get("generator") == "lvseg.data.phantom"
        ):
            return True
    return False


def check_output_folder(
    path: str | Path, overwrite: bool, keep: Iterable[str | Path | None] = ()
) -> None:
    """Before building an output folder, refuse (one line naming the folder):

    - an existing file at ``path``;
    - a folder that is, or holds, the current folder or any path of ``keep`` (the command's
      inputs and model): replacing it would delete them;
    - a training run;
    - a non-empty folder without ``overwrite`` (FileExistsError: the commands say "use
      --overwrite"), and with it a non-empty folder lvseg did not write (:func:`written_by_lvseg`).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InvalidInputError(path, "exists and is not a folder")
    target = path.resolve()
    guarded = [("the current folder", Path.cwd())]
    guarded += [(f"the input {item}", Path(item)) for item in keep if item is not None]
    for what, guarded_path in guarded:
        resolved = guarded_path.resolve()
        if resolved == target or target in resolved.parents:
            holds = "is" if resolved == target else "holds"
            raise InvalidInputError(
                path,
                f"{holds} {what}, which writing here would delete: choose another output folder",
            )
    if not path.is_dir() or not any(path.iterdir()):
        return
    if layout.looks_like_run(path):
        raise InvalidInputError(path, "is a training run: choose another output folder")
    if not overwrite:
        raise FileExistsError(f"{path} exists and is not empty")
    if not written_by_lvseg(path):
        raise InvalidInputError(
            path,
            f"exists and lvseg did not write it (no {OUTPUT_MARKER}): --overwrite replaces only "
            "lvseg's own output folders; empty it or choose another output folder",
        )


@contextmanager
def output_folder(path: str | Path) -> Iterator[Path]:
    """Build a command's output folder beside ``path``, marked as lvseg's
    (:data:`OUTPUT_MARKER`), and move it into place when complete, replacing what
    :func:`check_output_folder` let through. The marker's bytes never change (a phantom written
    twice is the same bytes)."""
    with atomic_directory(path, overwrite=True) as folder:
        (folder / OUTPUT_MARKER).write_text('{"written_by": "lvseg"}\n', encoding="utf-8")
        yield folder


@contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a whole folder beside ``path`` and move it into place only when complete."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield temporary
        _chmod_default(temporary, directory=True)
        if path.exists():
            shutil.rmtree(path)
        os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
