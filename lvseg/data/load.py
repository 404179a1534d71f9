"""One entry point for every format: ``load_dataset(path, format="auto")``.

Each reader module exposes ``looks_like(path) -> bool`` and
``read(path, skip_invalid=..., **options) -> Dataset``; this module picks one by name or by
looking at the folder.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lvseg.data.records import LV, Dataset
from lvseg.errors import InvalidInputError

READERS = {
    # name -> module; the order is the order auto-detection tries them in.
    "phantom": "lvseg.data.phantom",
    "sunnybrook": "lvseg.data.sunnybrook",
    "nifti": "lvseg.data.nifti",
    "folders": "lvseg.data.folders",
}
FORMATS = ("auto", *READERS)


def reader(name: str):
    """The reader module registered under ``name``."""
    if name not in READERS:
        raise InvalidInputError(
            None, f"unknown format {name!r}; choose one of {', '.join(FORMATS)}"
        )
    return importlib.import_module(READERS[name])


def detect_format(path: str | Path) -> str:
    """The name of the first reader that recognises ``path``."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(path, "no such file or folder")
    if path.is_dir() and not any(path.iterdir()):
        raise InvalidInputError(path, "folder is empty")
    for name in READERS:
        if reader(name).looks_like(path):
            return name
    raise InvalidInputError(
        path,
        "not a recognised layout (Sunnybrook DICOM + contours, Images/ + Labels/ folders, "
        "NIfTI volumes, or an lvseg phantom)",
    )


EMBEDDED_PHANTOM = "phantom"
"""The path that names the embedded default phantom (generated into the cache on first use)."""


def load_dataset(
    path: str | Path, format: str = "auto", *, skip_invalid: bool = False, **options: Any
) -> Dataset:
    """Read a dataset in any supported format (``format="auto"`` detects it).

    Unreadable or inconsistent input raises :class:`InvalidInputError` naming the file, unless
    ``skip_invalid`` is set: then bad files are left out and listed in ``Dataset.skipped``.
    Reader-specific ``options`` (such as ``name_pattern`` for folders or ``labels`` for NIfTI)
    are refused with a clear error by readers they do not apply to.
    """
    if str(path) == EMBEDDED_PHANTOM and not Path(path).exists() and format in ("auto", "phantom"):
        name = "phantom"
    elif format == "auto":
        name = detect_format(path)
    elif not Path(path).exists():
        raise InvalidInputError(path, "no such file or folder")
    else:
        name = format
    module = reader(name)
    unknown = unknown_options(module.read, options)
    if unknown:
        flag = "--" + unknown[0].replace("_", "-")
        raise InvalidInputError(None, f"option {flag} does not apply to the {name} format")
    return module.read(path, skip_invalid=skip_invalid, **options)


def unknown_options(read: Callable[..., Dataset], options: dict[str, Any]) -> list[str]:
    """The ``options`` a reader's ``read`` does not take, in order; none where it takes
    ``**options`` (the phantom's, which hands them to the reader of its format, which checks)."""
    parameters = inspect.signature(read).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return []
    return [option for option in options if option not in parameters]


def labelled_dataset(path: str | Path, format: str = "auto", structure: str = LV) -> Dataset:
    """The dataset's slices that have an annotation of ``structure`` (possibly empty: no LV on
    that slice); the slices training learns from and evaluation scores."""
    dataset = load_dataset(path, format)
    records = [r for r in dataset.records if structure in r.masks]
    if not records:
        raise InvalidInputError(path, f"no slice with an {structure.upper()} annotation")
    return Dataset(records=records, format=dataset.format, root=dataset.root)
