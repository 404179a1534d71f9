"""NIfTI volumes with label volumes beside them: ACDC, M&Ms-1, M&Ms-2, or any ``X`` + ``X_gt``.

Layouts, recognised per file (so one folder may hold several datasets)::

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
Hidden files (``._patient001...`` from macOS archives) are ignored.

Label values: the label convention is chosen per file from its layout: ACDC uses the ``acdc``
preset ``{1: rv, 2: myocardium, 3: lv}``, M&Ms-1 and -2 the ``mnms`` preset
``{1: lv, 2: myocardium, 3: rv}``. Generic files have no convention we could guess safely (the two
presets swap LV and RV), so they need ``labels=``: a preset name or a string such as
``"lv=3,myocardium=2,rv=1"`` (see :func:`parse_labels`), which then applies to every file. A value
mapped to ``ignore`` is read as background. Any other value in a label volume is an error.

Phases: ACDC's ``phase_index`` is the frame number minus one, ``phase`` "ED"/"ES" where Info.cfg
names that frame. M&Ms-1's ``phase_index`` is the 0-based frame of the 4D volume; ``phase`` comes
from the information table's 0-based "ED"/"ES" columns where one is found (under ROOT first, then
directly in the three folders above it), None otherwise. M&Ms-2 files hold one phase each, named
in the file name; their frame in the cine is not stored, so ``phase_index`` is 0 for ED and 1 for
ES (an ordinal that keeps record keys unique). Generic 4D volumes give ``phase_index`` = frame,
3D ones None. Metadata values that do not parse (an empty or non-numeric ED cell) count as unknown.

Records: one :class:`SliceRecord` per 2D slice (and per frame of a 4D volume) whose label slice
holds at least one mapped structure; slices with only background are left out, so a slice that
shows only RV is kept and has no LV mask. ``masks`` holds the structures present on that slice.
Orientation, shared with the phantom writer: ``image = volume[:, :, k].T`` (rows = voxel axis 1,
cols = voxel axis 0), masks likewise; ``pixel_spacing_mm = (zooms[1], zooms[0])``;
``slice_thickness_mm = slice_spacing_mm = zooms[2]``; ``slice_index = k``; ``slice_position_mm`` is
the slice origin projected on the slice normal of the affine (``k * zooms[2]`` where the affine is
degenerate); ``geometry.affine`` is the 4x4 voxel-to-world matrix and ``geometry.volume_index = k``.
Zooms are in mm (headers in metres or microns are converted; the affine is kept as stored). The
image's header is the geometry; the label volume must match its shape, its header is not compared.
Intensities are the stored values with the header's scaling applied, as float32.
Patient ids come from the file name (``patient001``, ``A0S9V9``, ``001``; the stem for generic
files, prefixed by its folders where two generic files share a stem).

Memory: label volumes are read whole in their stored dtype (small integers); of a 4D image, only
the frames that carry labels are read, one at a time, through nibabel's lazy ``dataobj``.

>>> parse_labels("lv=3,myo=2,rv=1") == PRESETS["acdc"]
True
>>> format_labels(PRESETS["mnms"])
'lv=1,myocardium=2,rv=3'
"""

from __future__ import annotations

import contextlib
import csv
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener

from lvseg.data.files import regular_files, walk
from lvseg.data.records import ED, ES, LV, MYOCARDIUM, RV, Dataset, Geometry, SliceRecord
from lvseg.errors import InvalidInputError, Skipped
from lvseg.progress import track

IGNORE = "ignore"
"""Pseudo-structure: label values mapped to it are read as background."""

PRESETS: dict[str, dict[int, str]] = {
    "acdc": {1: RV, 2: MYOCARDIUM, 3: LV},
    "mnms": {1: LV, 2: MYOCARDIUM, 3: RV},
}
"""Built-in label conventions, by name."""

STRUCTURE_ALIASES = {
    "lv": LV,
    "myocardium": MYOCARDIUM,
    "myo": MYOCARDIUM,
    "rv": RV,
    IGNORE: IGNORE,
}
"""Names accepted in a label mapping string."""

MAX_VOLUME_BYTES = 2 * 1024**3
"""Volumes whose header promises more voxel data than this are refused, not allocated."""

LOOKS_LIKE_DEPTH = 5
"""How many folder levels :func:`looks_like` searches for NIfTI files."""
LOOKS_LIKE_ENTRIES = 20_000
"""How many folder entries :func:`looks_like` looks at before giving up."""

LabelSpec = str | Mapping[int, str] | Mapping[str, int]

_SUFFIXES = (".nii.gz", ".nii")
_GT = "_gt"
_ACDC_NAME = re.compile(r"^(?P<patient>patient\d+)_frame(?P<frame>\d+)$", re.IGNORECASE)
_MNMS_NAME = re.compile(r"^(?P<patient>[A-Za-z0-9]+)_sa$", re.IGNORECASE)
_MNMS2_NAME = re.compile(r"^(?P<patient>[A-Za-z0-9]+)_SA_(?P<phase>ED|ES)$", re.IGNORECASE)
_LONG_AXIS_NAME = re.compile(r"_LA(_(ED|ES|CINE))?$", re.IGNORECASE)
_ID_COLUMNS = ("external code", "subject code", "code", "patient", "patient id")
_PATHOLOGY_COLUMNS = ("pathology", "disease", "group")


# --------------------------------------------------------------------------- label mappings


def parse_labels(text: str) -> dict[int, str]:
    """A label mapping (value -> structure) from a preset name or ``"lv=3,myocardium=2,rv=1"``.

    Pairs are separated by commas; each is ``name=value`` (or ``value=name``) with names ``lv``,
    ``myocardium`` (``myo``), ``rv`` or ``ignore`` and positive integer values. Raises
    :class:`InvalidInputError` with the reason for anything else.

    >>> parse_labels("mnms")
    {1: 'lv', 2: 'myocardium', 3: 'rv'}
    >>> parse_labels("lv=1, ignore=2")
    {1: 'lv', 2: 'ignore'}
    """
    cleaned = text.strip()
    if cleaned.lower() in PRESETS:
        return dict(PRESETS[cleaned.lower()])
    if not cleaned:
        raise _bad_labels(text, "empty")
    pairs: list[tuple[str, str]] = []
    for item in cleaned.split(","):
        left, sep, right = item.partition("=")
        if not sep or not left.strip() or not right.strip():
            raise _bad_labels(
                text, f"{item.strip()!r} is not name=value (or a preset: {', '.join(PRESETS)})"
            )
        left, right = left.strip(), right.strip()
        pairs.append((right, left) if _is_integer_text(left) else (left, right))
    mapping: dict[int, str] = {}
    for name, value in pairs:
        if not _is_integer_text(value):
            raise _bad_labels(text, f"label value {value!r} of {name!r} is not an integer")
        mapping = _add_label(mapping, int(value), name, text)
    return _check_mapping(mapping, text)


def label_mapping(spec: LabelSpec) -> dict[int, str]:
    """A checked label mapping from a preset name, a mapping string, or a dict.

    Dicts may go either way: ``{3: "lv"}`` or ``{"lv": 3}``.
    """
    if isinstance(spec, str):
        return parse_labels(spec)
    if not isinstance(spec, Mapping):
        raise InvalidInputError(None, f"invalid label mapping {spec!r}: expected a str or a dict")
    mapping: dict[int, str] = {}
    for key, item in spec.items():
        value, name = (item, key) if isinstance(key, str) else (key, item)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise _bad_labels(spec, f"label value {value!r} is not an integer")
        if not isinstance(name, str):
            raise _bad_labels(spec, f"structure {name!r} is not a name")
        mapping = _add_label(mapping, int(value), name, spec)
    return _check_mapping(mapping, spec)


def format_labels(mapping: Mapping[int, str]) -> str:
    """The mapping as a string :func:`parse_labels` reads back, ordered by value."""
    return ",".join(f"{name}={value}" for value, name in sorted(mapping.items()))


def _add_label(mapping: dict[int, str], value: int, name: str, spec: object) -> dict[int, str]:
    structure = STRUCTURE_ALIASES.get(name.strip().lower())
    if structure is None:
        raise _bad_labels(
            spec, f"unknown structure {name!r} (use {', '.join(sorted(STRUCTURE_ALIASES))})"
        )
    if value < 1:
        raise _bad_labels(
            spec, f"label value {value} of {name!r} must be 1 or more (0 is background)"
        )
    if value in mapping:
        raise _bad_labels(spec, f"label value {value} is given twice")
    if structure != IGNORE and structure in mapping.values():
        raise _bad_labels(spec, f"structure {structure!r} is given twice")
    return {**mapping, value: structure}


def _check_mapping(mapping: dict[int, str], spec: object) -> dict[int, str]:
    if not any(name != IGNORE for name in mapping.values()):
        raise _bad_labels(spec, "no structure (lv, myocardium or rv) is mapped")
    return dict(sorted(mapping.items()))


def _bad_labels(spec: object, reason: str) -> InvalidInputError:
    return InvalidInputError(None, f"invalid label mapping {spec!r}: {reason}")


def _is_integer_text(text: str) -> bool:
    return re.fullmatch(r"[+-]?\d+", text.strip()) is not None


# --------------------------------------------------------------------------- finding files


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
class _Pair:
    image: Path
    label: Path
    layout: str  # "acdc", "mnms", "mnms2" or "generic"
    patient_id: str
    phase_index: int | None = None  # from the name, for 3D volumes
    phase: str | None = None  # from the name (M&Ms-2)


@dataclass(frozen=True)
class _Problem:
    """A file that cannot be paired; raised or skipped in its turn, like an unreadable pair."""

    path: Path
    reason: str


@dataclass
class _Found:
    pairs: list[_Pair]
    problems: list[_Problem]
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


def _find(root: Path) -> _Found:
    found = _Found(pairs=[], problems=[], nifti_files=0, tables=[])
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


def _pair_folder(folder: Path, files: list[str], found: _Found) -> None:
    """Pair the NIfTI files of one folder: every ``X`` with its ``X_gt``."""
    images: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    for name in files:
        split = split_nifti_name(name)
        if split is None:
            continue
        found.nifti_files += 1
        stem = split[0]
        is_label = stem.lower().endswith(_GT) and len(stem) > len(_GT)
        table, key = (labels, stem[: -len(_GT)]) if is_label else (images, stem)
        if key in table:
            found.problems.append(
                _Problem(folder / name, f"both {table[key].name} and {name} are present")
            )
            continue
        table[key] = folder / name
    for stem, label in labels.items():
        if stem not in images:
            found.problems.append(_Problem(label, f"label volume with no image {stem}.nii.gz"))
    for stem, image in images.items():
        if stem in labels and not _LONG_AXIS_NAME.search(stem):
            found.pairs.append(_classify(image, labels[stem], stem))


def _classify(image: Path, label: Path, stem: str) -> _Pair:
    if match := _ACDC_NAME.match(stem):
        frame = int(match["frame"])
        return _Pair(image, label, "acdc", match["patient"], phase_index=frame - 1)
    if match := _MNMS_NAME.match(stem):
        return _Pair(image, label, "mnms", match["patient"])
    if match := _MNMS2_NAME.match(stem):
        phase = match["phase"].upper()
        return _Pair(image, label, "mnms2", match["patient"], int(phase == ES), phase)
    return _Pair(image, label, "generic", stem)


def _with_unique_id(pair: _Pair, root: Path) -> _Pair:
    parts = pair.image.parent.relative_to(root).parts if pair.image.is_relative_to(root) else ()
    return _Pair(pair.image, pair.label, pair.layout, "_".join((*parts, pair.patient_id)))


def _find_single(path: Path) -> _Found:
    """The pair of a single file given by path (the image or its label)."""
    split = split_nifti_name(path.name)
    if split is None:
        raise InvalidInputError(path, "not a NIfTI file (.nii or .nii.gz)")
    stem = split[0]
    if stem.lower().endswith(_GT) and len(stem) > len(_GT):
        stem = stem[: -len(_GT)]
        image = _partner(path.parent, stem)
        if image is None:
            raise InvalidInputError(path, f"label volume with no image {stem}.nii.gz beside it")
    else:
        image = path
    label = _partner(path.parent, stem + _GT)
    if label is None:
        raise InvalidInputError(image, f"no label volume {stem}{_GT}.nii.gz beside it")
    folders = [path.parent, *list(path.parent.resolve().parents)[:3]]
    return _Found([_classify(image, label, stem)], [], 1, _tables_in(folders))


def _tables_in(folders: list[Path]) -> list[Path]:
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


# --------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class _CaseInfo:
    ed_index: int | None = None  # 0-based frame
    es_index: int | None = None
    group: str | None = None


def _read_info_cfg(path: Path) -> _CaseInfo:
    """ACDC's Info.cfg (``ED: 1`` ... with 1-based frame numbers); missing -> unknown."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return _CaseInfo()
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip().lower()] = value.strip()
    ed, es = _as_int(values.get("ed")), _as_int(values.get("es"))
    return _CaseInfo(
        ed_index=None if ed is None else ed - 1,
        es_index=None if es is None else es - 1,
        group=values.get("group") or None,
    )


def _read_tables(paths: list[Path]) -> dict[str, _CaseInfo]:
    """Case information from every CSV with an id column and ED/ES or pathology columns.

    Keys are the ids as written and, for numeric ids, without leading zeros. Earlier files win.
    """
    cases: dict[str, _CaseInfo] = {}
    for path in paths:
        for case_id, info in _read_table(path).items():
            for key in {case_id, _numeric_key(case_id)}:
                cases.setdefault(key, info)
    return cases


def _read_table(path: Path) -> dict[str, _CaseInfo]:
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            with open(path, newline="", encoding=encoding) as handle:
                return _parse_table(csv.reader(handle))
        except UnicodeDecodeError:
            continue
        except (OSError, csv.Error):
            return {}
    return {}


def _parse_table(rows: Iterator[list[str]]) -> dict[str, _CaseInfo]:
    """The rows of a table whose header names an id column and ED/ES or pathology columns."""
    header = [" ".join(cell.replace("_", " ").split()).lower() for cell in next(rows, [])]
    id_column = next((header.index(c) for c in _ID_COLUMNS if c in header), None)
    ed_column = header.index("ed") if "ed" in header else None
    es_column = header.index("es") if "es" in header else None
    group_column = next((header.index(c) for c in _PATHOLOGY_COLUMNS if c in header), None)
    if id_column is None or (ed_column, es_column, group_column) == (None, None, None):
        return {}

    def cell(row: list[str], column: int | None) -> str | None:
        return row[column].strip() if column is not None and column < len(row) else None

    cases: dict[str, _CaseInfo] = {}
    for row in rows:
        case_id = cell(row, id_column)
        if case_id:
            cases.setdefault(
                case_id,
                _CaseInfo(
                    _as_int(cell(row, ed_column)),
                    _as_int(cell(row, es_column)),
                    cell(row, group_column) or None,
                ),
            )
    return cases


def _numeric_key(case_id: str) -> str:
    return str(int(case_id)) if case_id.isdigit() else case_id


def _as_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number == int(number) else None


class _Metadata:
    """Info.cfg per ACDC folder and the M&Ms tables, read once and only when needed."""

    def __init__(self, tables: list[Path]) -> None:
        self._table_paths = tables
        self._tables: dict[str, _CaseInfo] | None = None
        self._info_cfg: dict[Path, _CaseInfo] = {}

    def for_pair(self, pair: _Pair) -> _CaseInfo:
        if pair.layout == "acdc":
            folder = pair.image.parent
            if folder not in self._info_cfg:
                self._info_cfg[folder] = _read_info_cfg(folder / "Info.cfg")
            return self._info_cfg[folder]
        if pair.layout in ("mnms", "mnms2"):
            if self._tables is None:
                self._tables = _read_tables(self._table_paths)
            return self._tables.get(pair.patient_id) or self._tables.get(
                _numeric_key(pair.patient_id), _CaseInfo()
            )
        return _CaseInfo()


# --------------------------------------------------------------------------- reading


def read(
    path: str | Path, *, skip_invalid: bool = False, labels: LabelSpec | None = None
) -> Dataset:
    """Read NIfTI image/label pairs under a folder, or one pair, into a :class:`Dataset`.

    ``labels`` (a preset name, a mapping string or a dict; see :func:`parse_labels`) overrides the
    convention the layout implies, for every file; generic files need it. See the module docstring
    for layouts and conventions.
    """
    root = Path(path)
    mapping = None if labels is None else label_mapping(labels)
    if root.is_file():
        found = _find_single(root)
    elif root.is_dir():
        found = _find(root)
        if found.nifti_files == 0:
            raise InvalidInputError(root, "no NIfTI files (.nii or .nii.gz) found")
        if not found.pairs and not found.problems:
            raise InvalidInputError(
                root,
                f"{found.nifti_files} NIfTI files but no image/label pairs "
                f"(a label volume is named <image>{_GT}.nii.gz)",
            )
        found.tables += _tables_in(list(root.resolve().parents)[:3])
    else:
        raise InvalidInputError(root, "no such file or folder")

    metadata = _Metadata(found.tables)
    records: list[SliceRecord] = []
    skipped: list[Skipped] = []
    work: list[_Pair | _Problem] = sorted(
        [*found.pairs, *found.problems],
        key=lambda item: str(item.path if isinstance(item, _Problem) else item.image),
    )
    for item in track(work, f"Reading {root.name}"):
        try:
            if isinstance(item, _Problem):
                raise InvalidInputError(item.path, item.reason)
            records += _read_pair(item, mapping, metadata.for_pair(item))
        except InvalidInputError as error:
            if not skip_invalid:
                raise
            skipped.append(Skipped(error.path or str(root), error.reason))
    if not records:
        pairs = len(found.pairs)
        reason = "no readable image/label pairs" if skipped else "no labelled slices"
        raise InvalidInputError(root, f"{reason} in {pairs} image/label pair(s)")
    records.sort(key=_record_order)
    return Dataset(records, format="nifti", root=str(root), skipped=skipped)


def _record_order(record: SliceRecord) -> tuple:
    return (
        record.patient_id,
        -1 if record.slice_index is None else record.slice_index,
        -1 if record.phase_index is None else record.phase_index,
        record.source,
    )


def _read_pair(pair: _Pair, mapping: dict[int, str] | None, info: _CaseInfo) -> list[SliceRecord]:
    """Every labelled slice of one image/label pair."""
    if mapping is None:
        if pair.layout == "generic":
            raise InvalidInputError(
                pair.image,
                "no known label convention for this file name; give a label mapping "
                f"(labels=, --labels): a preset ({', '.join(PRESETS)}) or e.g. "
                "'lv=3,myocardium=2,rv=1'",
            )
        mapping = PRESETS["acdc" if pair.layout == "acdc" else "mnms"]
    image = load_nifti(pair.image)
    label = load_nifti(pair.label)
    shape, label_shape = nifti_shape(image, pair.image), nifti_shape(label, pair.label)
    if shape != label_shape:
        raise InvalidInputError(
            pair.label,
            f"label volume is {_format_shape(label_shape)}, image is {_format_shape(shape)}",
        )
    zooms = nifti_zooms(image, pair.image)
    affine = nifti_affine(image, pair.image)
    positions = slice_positions_of(affine * mm_per_unit_of(image), shape[2], zooms[2])
    label_volume = _read_labels(label, pair.label, mapping)
    structures = {value: name for value, name in mapping.items() if name != IGNORE}
    labelled = np.isin(label_volume, list(structures)).any(axis=(0, 1))  # (Z,) or (Z, T)

    records: list[SliceRecord] = []
    frames: list[int | None] = [None] if len(shape) == 3 else list(range(shape[3]))
    for frame in frames:
        slices = np.flatnonzero(labelled if frame is None else labelled[:, frame])
        if slices.size == 0:
            continue
        # A 3D image is read whole, once; a 4D one a frame at a time, labelled frames only.
        volume = read_frame(image, pair.image, frame, shape)
        labels_now = label_volume if frame is None else label_volume[..., frame]
        phase_index = pair.phase_index if frame is None else frame
        phase = pair.phase or _phase_of(phase_index, info)
        for k in slices.tolist():
            pixels = np.ascontiguousarray(volume[:, :, k].T, dtype=np.float32)
            if not np.isfinite(pixels).all():
                raise InvalidInputError(pair.image, f"non-finite intensities in slice {k}")
            label_slice = labels_now[:, :, k].T
            masks = {name: np.ascontiguousarray(label_slice == v) for v, name in structures.items()}
            masks = {name: mask for name, mask in masks.items() if mask.any()}
            spacing = (float(zooms[1]), float(zooms[0]))
            records.append(
                SliceRecord(
                    image=pixels,
                    masks=masks,
                    patient_id=pair.patient_id,
                    source=str(pair.image),
                    geometry=Geometry(
                        original_shape=(int(pixels.shape[0]), int(pixels.shape[1])),
                        pixel_spacing_mm=spacing,
                        affine=affine.copy(),
                        volume_index=k,
                    ),
                    slice_index=k,
                    slice_position_mm=positions[k],
                    phase_index=phase_index,
                    phase=phase,
                    pixel_spacing_mm=spacing,
                    slice_thickness_mm=float(zooms[2]),
                    slice_spacing_mm=float(zooms[2]),
                    group=info.group,
                    annotation_sources=(str(pair.label),),
                )
            )
        del volume
    return records


def _phase_of(phase_index: int | None, info: _CaseInfo) -> str | None:
    if phase_index is None:
        return None
    if phase_index == info.ed_index:
        return ED
    if phase_index == info.es_index:
        return ES
    return None


# --------------------------------------------------------------------------- nibabel, guarded


@contextlib.contextmanager
def _nibabel_errors(path: Path, what: str) -> Iterator[None]:
    """Turn whatever nibabel, gzip or numpy raise while reading into an InvalidInputError."""
    try:
        yield
    except InvalidInputError:
        raise
    except Exception as error:  # library errors of every kind end here
        detail = str(error) or type(error).__name__
        raise InvalidInputError(path, f"cannot read {what}: {detail}") from None


def load_nifti(path: Path) -> nib.Nifti1Image:
    """The NIfTI image at ``path``, header checked, voxel data not yet read."""
    with _nibabel_errors(path, "NIfTI header"):
        image = nib.load(path, mmap=False)
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InvalidInputError(path, f"not a NIfTI image ({type(image).__name__})")
    with _nibabel_errors(path, "NIfTI header"):
        dtype = np.dtype(image.header.get_data_dtype())
        shape = tuple(int(n) for n in image.shape)
        offset = int(image.dataobj.offset)
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise InvalidInputError(path, f"unsupported voxel data type {dtype}")
    if not shape or min(shape) < 1:
        raise InvalidInputError(path, f"empty volume of shape {shape}")
    size = math.prod(shape) * dtype.itemsize
    if size > MAX_VOLUME_BYTES:
        raise InvalidInputError(
            path, f"header promises {size} bytes of voxel data, over the {MAX_VOLUME_BYTES} limit"
        )
    if path.name.lower().endswith(".nii"):
        stored = path.stat().st_size
        if stored < offset + size:
            raise InvalidInputError(
                path, f"truncated: header promises {offset + size} bytes, file holds {stored}"
            )
    return image


def nifti_shape(image: nib.Nifti1Image, path: Path) -> tuple[int, ...]:
    """The volume's shape without trailing length-1 axes beyond the third; 3D or 4D only."""
    shape = tuple(int(n) for n in image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in (3, 4):
        raise InvalidInputError(
            path, f"expected a 3D or 4D volume, got shape {_format_shape(shape)}"
        )
    return shape


def _format_shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def nifti_zooms(image: nib.Nifti1Image, path: Path) -> tuple[float, float, float]:
    """Voxel spacing along the three spatial axes, in mm.

    nibabel quietly turns a stored spacing of 0 into 1 (and -s into s) when it loads a header, so
    the stored values are read again, unchecked, to refuse zeros rather than invent a spacing.
    """
    with _nibabel_errors(path, "voxel spacing"):
        zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
        with ImageOpener(path) as handle:
            stored = type(image.header).from_fileobj(handle, check=False)["pixdim"][1:4]
    stored_zooms = tuple(float(z) for z in stored)
    if any(z == 0 for z in stored_zooms):
        zooms = stored_zooms
    if len(zooms) < 3 or not all(math.isfinite(z) and z > 0 for z in zooms):
        raise InvalidInputError(path, f"voxel spacing {zooms} is not positive and finite")
    # Stored as float32: 1.37 reads 1.3700000047683716; a micrometre is far below any voxel.
    return tuple(round(z * mm_per_unit_of(image), 6) for z in zooms)  # type: ignore[return-value]


def mm_per_unit_of(image: nib.Nifti1Image) -> float:
    """Millimetres per spatial unit of the header (xyzt_units; unknown is taken as mm)."""
    try:
        unit = image.header.get_xyzt_units()[0]
    except Exception:  # an unknown unit code is read as mm, as most tools do
        return 1.0
    return {"meter": 1000.0, "micron": 0.001}.get(unit, 1.0)


def nifti_affine(image: nib.Nifti1Image, path: Path) -> np.ndarray:
    with _nibabel_errors(path, "affine"):
        affine = np.array(image.affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise InvalidInputError(path, "the affine (qform/sform) is not a finite 4x4 matrix")
    return affine


def slice_positions_of(affine: np.ndarray, depth: int, thickness_mm: float) -> list[float]:
    """Each slice's origin projected on the slice normal; ``k * thickness`` if degenerate."""
    axes = affine[:3, :3]
    normal = np.cross(axes[:, 0], axes[:, 1])
    length = float(np.linalg.norm(normal))
    along = float(normal @ axes[:, 2]) if length > 0 else 0.0
    if not math.isfinite(length) or length == 0 or along == 0:
        return [k * thickness_mm for k in range(depth)]
    normal = normal / length * (1.0 if along > 0 else -1.0)
    origin = float(normal @ affine[:3, 3])
    step = float(normal @ axes[:, 2])
    return [round(origin + k * step, 6) for k in range(depth)]


def _read_labels(image: nib.Nifti1Image, path: Path, mapping: dict[int, str]) -> np.ndarray:
    """The whole label volume as integers, checked against the mapping."""
    shape = nifti_shape(image, path)
    with _nibabel_errors(path, "label volume"):
        data = np.asanyarray(image.dataobj).reshape(shape)
    if data.dtype.kind == "f":
        if not np.isfinite(data).all() or not (data == np.round(data)).all():
            raise InvalidInputError(path, "label values are not integers")
        data = data.astype(np.int64)
    elif data.dtype.kind not in "biu":
        raise InvalidInputError(path, f"label values are not integers ({data.dtype})")
    values = np.unique(data)
    unexpected = [int(v) for v in values if v != 0 and int(v) not in mapping]
    if unexpected:
        shown = ", ".join(str(v) for v in unexpected[:8]) + (" ..." if len(unexpected) > 8 else "")
        raise InvalidInputError(
            path, f"unexpected label values {shown} (expected 0 or {format_labels(mapping)})"
        )
    return data


def read_frame(
    image: nib.Nifti1Image, path: Path, frame: int | None, shape: tuple[int, ...]
) -> np.ndarray:
    """The whole 3D volume (``frame=None``) or one frame of a 4D one, as read from disk."""
    full_ndim = len(image.shape)
    if frame is None:
        index: tuple = (slice(None),) * 3 + (0,) * (full_ndim - 3)
    else:
        index = (slice(None),) * 3 + (frame,) + (0,) * (full_ndim - 4)
    with _nibabel_errors(path, "image volume" if frame is None else f"frame {frame}"):
        data = np.asarray(image.dataobj[index])
    if data.dtype.kind not in "biuf":
        raise InvalidInputError(path, f"unsupported voxel data type {data.dtype}")
    return data.reshape(shape[:3])
