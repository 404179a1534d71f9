"""Finding image/label pairs, recognised per file (so one folder may hold several datasets)::

    ACDC     ROOT/[training|testing/]patientNNN/patientNNN_frameFF.nii.gz   3D (X, Y, Z)
             ROOT/[training|testing/]patientNNN/patientNNN_frameFF_gt.nii.gz
             ROOT/[training|testing/]patientNNN/Info.cfg    ("ED: 1", "ES: 12", "Group: DCM", ...)
    M&Ms-1   ROOT/<split>/[Labeled/]<CODE>/<CODE>_sa.nii.gz                 4D (X, Y, Z, T)
             ROOT/<split>/[Labeled/]<CODE>/<CODE>_sa_gt.nii.gz              labels at ED and ES only
             ROOT/**/*.csv   (the dataset's information table: "External code", "ED", "ES",
                              "Pathology"; found by its columns, whatever the file is called)
    M&Ms-2   ROOT/**/<ID>_SA_ED.nii.gz + <ID>_SA_ED_gt.nii.gz, and the same for _SA_ES
    generic  ROOT/**/<X>.nii[.gz] + <X>_gt.nii[.gz]                          3D or 4D

Images without a ``_gt`` partner (ACDC's ``_4d`` cines, M&Ms' unlabelled cases, ``_SA_CINE``) are
not labelled and are left out silently; long-axis files (M&Ms-2 ``_LA_``) are left out too.
Hidden files (``._patient001...`` from macOS archives) are ignored. Patient ids come from the file
name (``patient001``, ``A0S9V9``, ``001``; the stem for generic files, prefixed by its folders
where two generic files share a stem).
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lvseg.data.files import regular_files, walk
from lvseg.data.records import ES
from lvseg.errors import InvalidInputError

LOOKS_LIKE_DEPTH = 5
"""How many folder levels :func:`looks_like` searches for NIfTI files."""
LOOKS_LIKE_ENTRIES = 20_000
"""How many folder entries :func:`looks_like` looks at before giving up."""

GT = "_gt"
"""The suffix that makes ``X_gt`` the label volume of image ``X``."""
_SUFFIXES = (".nii.gz", ".nii")
_ACDC_NAME = re.compile(r"^(?P<patient>patient\d+)_frame(?P<frame>\d+)$", re.IGNORECASE)
_MNMS_NAME = re.compile(r"^(?P<patient>[A-Za-z0-9]+)_sa$", re.IGNORECASE)
_MNMS2_NAME = re.compile(r"^(?P<patient>[A-Za-z0-9]+)_SA_(?P<phase>ED|ES)$", re.IGNORECASE)
_LONG_AXIS_NAME = re.compile(r"_LA(_(ED|ES|CINE))?$", re.IGNORECASE)


def looks_like(path: Path) -> bool:
    """A .nii/.nii.gz file, or a folder with one within :data:`LOOKS_LIKE_DEPTH` levels."""
    path = Path(path)
    if path.is_file():
        return split_nifti_name(path.name) is not None
    if not path.is_dir():
        return False
    seen = 0
    for folder, dirs, files in walk(path):
        seen += len(dirs) + len(files)
        if any(split_nifti_name(name) is not None for name in files):
            return True
        if seen > LOOKS_LIKE_ENTRIES:
            return False
        if len(folder.relative_to(path).parts) >= LOOKS_LIKE_DEPTH - 1:
            dirs.clear()
    return False


@dataclass(frozen=True)
class Pair:
    image: Path
    label: Path
    layout: str  # "acdc", "mnms", "mnms2" or "generic"
    patient_id: str
    phase_index: int | None = None  # from the name, for 3D volumes
    phase: str | None = None  # from the name (M&Ms-2)


@dataclass(frozen=True)
class Problem:
    """A file that cannot be paired; raised or skipped in its turn, like an unreadable pair."""

    path: Path
    reason: str


@dataclass
class Found:
    pairs: list[Pair]
    problems: list[Problem]
    nifti_files: int
    tables: list[Path]


def split_nifti_name(name: str) -> tuple[str, str] | None:
    """(stem, suffix) of a NIfTI file name, None for other files and hidden ones."""
    if name.startswith("."):
        return None
    lower = name.lower()
    for suffix in _SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    return None


def find_pairs(root: Path) -> Found:
    found = Found(pairs=[], problems=[], nifti_files=0, tables=[])
    for folder, _, files in walk(root):
        found.tables += [folder / f for f in files if f.lower().endswith(".csv")]
        _pair_folder(folder, files, found)
    counts = Counter(pair.patient_id for pair in found.pairs if pair.layout == "generic")
    repeated = {patient_id for patient_id, count in counts.items() if count > 1}
    found.pairs = [
        _with_unique_id(pair, root)
        if pair.layout == "generic" and pair.patient_id in repeated
        else pair
        for pair in found.pairs
    ]
    return found


def _pair_folder(folder: Path, files: list[str], found: Found) -> None:
    """Pair the NIfTI files of one folder: every ``X`` with its ``X_gt``."""
    images: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    for name in files:
        split = split_nifti_name(name)
        if split is None:
            continue
        found.nifti_files += 1
        stem = split[0]
        is_label = stem.lower().endswith(GT) and len(stem) > len(GT)
        table, key = (labels, stem[: -len(GT)]) if is_label else (images, stem)
        if key in table:
            found.problems.append(
                Problem(folder / name, f"both {table[key].name} and {name} are present")
            )
            continue
        table[key] = folder / name
    for stem, label in labels.items():
        if stem not in images:
            found.problems.append(Problem(label, f"label volume with no image {stem}.nii.gz"))
    for stem, image in images.items():
        if stem in labels and not _LONG_AXIS_NAME.search(stem):
            found.pairs.append(_classify(image, labels[stem], stem))


def _classify(image: Path, label: Path, stem: str) -> Pair:
    if match := _ACDC_NAME.match(stem):
        frame = int(match["frame"])
        return Pair(image, label, "acdc", match["patient"], phase_index=frame - 1)
    if match := _MNMS_NAME.match(stem):
        return Pair(image, label, "mnms", match["patient"])
    if match := _MNMS2_NAME.match(stem):
        phase = match["phase"].upper()
        return Pair(image, label, "mnms2", match["patient"], int(phase == ES), phase)
    return Pair(image, label, "generic", stem)


def _with_unique_id(pair: Pair, root: Path) -> Pair:
    parts = pair.image.parent.relative_to(root).parts if pair.image.is_relative_to(root) else ()
    return Pair(pair.image, pair.label, pair.layout, "_".join((*parts, pair.patient_id)))


def find_single(path: Path) -> Found:
    """The pair of a single file given by path (the image or its label)."""
    split = split_nifti_name(path.name)
    if split is None:
        raise InvalidInputError(path, "not a NIfTI file (.nii or .nii.gz)")
    stem = split[0]
    if stem.lower().endswith(GT) and len(stem) > len(GT):
        stem = stem[: -len(GT)]
        image = _partner(path.parent, stem)
        if image is None:
            raise InvalidInputError(path, f"label volume with no image {stem}.nii.gz beside it")
    else:
        image = path
    label = _partner(path.parent, stem + GT)
    if label is None:
        raise InvalidInputError(image, f"no label volume {stem}{GT}.nii.gz beside it")
    folders = [path.parent, *list(path.parent.resolve().parents)[:3]]
    return Found([_classify(image, label, stem)], [], 1, tables_in(folders))


def tables_in(folders: list[Path]) -> list[Path]:
    """The CSV files directly in these folders (where an information table may sit)."""
    tables: list[Path] = []
    for folder in folders:
        with contextlib.suppress(OSError):
            tables += regular_files(
                folder, lambda name: name.lower().endswith(".csv"), recursive=False
            )
    return tables


def _partner(folder: Path, stem: str) -> Path | None:
    for suffix in _SUFFIXES:
        if (folder / (stem + suffix)).is_file():
            return folder / (stem + suffix)
    return None
