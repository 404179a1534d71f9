"""Whole cine studies for prediction: each frame of a short-axis stack, its geometry, no labels.

``lvseg predict`` runs a model on what a scanner or an archive hands over, which is not a labelled
dataset: a folder of DICOM files (one or many patients, many series), a NIfTI cine, or a few image
files. :func:`read_study` turns any of these into :class:`CineStudy` objects: an array of
(slices, phases, rows, cols) images plus what is needed to write the predicted masks back over
the source (:meth:`CineStudy.to_nifti`). This module does not import torch.

Inputs (:func:`read_study` dispatches on the path):

- **DICOM folder** (searched recursively; hidden files and folders are ignored): headers are read
  without pixels, files are grouped into studies by (PatientID, StudyInstanceUID), and in each
  study the **short-axis cine** is picked: the frames of cine series (several TriggerTimes at one
  position, or CardiacNumberOfImages > 1) are clustered by slice normal (same plane when
  ``|n1 . n2| > 0.99``; several series may form one stack, as clinical cines often hold one slice
  per series), and the cluster with the most distinct slice positions wins (two at least, so
  single-position long-axis views never do); a cluster whose SeriesDescription says sa/sax/short
  is preferred. Slices are ordered by ascending position along the stack normal (the
  ImagePositionPatient projected on it, SliceLocation where there is none), phases by TriggerTime
  then InstanceNumber. One study per (PatientID, StudyInstanceUID), sorted by patient id.
- **A single DICOM file**: one frame, a 1 x 1 study, cine or not.
- **NIfTI file** (``.nii``, ``.nii.gz``): 3D (x, y, z) gives one phase, 4D (x, y, z, t) t phases;
  pixels are oriented as :mod:`lvseg.data.nifti` orients training data
  (``image = volume[:, :, k].T``), so a model sees what it was trained on.
- **Image files** (PNG, TIFF, BMP, JPEG; one file, or a folder holding no DICOM and no NIfTI):
  one 1 x 1 study per file, without spacing.

Frame order differs from :mod:`lvseg.data.sunnybrook` on purpose: that reader numbers slices by
InstanceNumber (slice = (N - 1) // 20), this one by position. In the Sunnybrook set the position
descends as N grows, so slice 0 here is slice 11 there; ``instance_numbers`` tells which is which.

Geometry conventions (the voxel grid of :meth:`CineStudy.to_nifti` is x = cols, y = rows,
z = slices, t = phases, that is ``volume.transpose(3, 2, 0, 1)``):

- NIfTI input: ``affine`` is the file's own (scaled to mm where the header says metres or
  microns), and :meth:`~CineStudy.to_nifti` writes through a copy of the source header, so the
  output has the input's affine, qform/sform codes, shape and number of dimensions: it undoes
  exactly what the reader did.
- DICOM input: ``affine`` maps (col, row, slice) voxels to RAS+ world mm (the NIfTI convention).
  DICOM patient coordinates are LPS, so the matrix built from the first slice's
  ImagePositionPatient (IPP), ImageOrientationPatient (row direction r, column direction c) and
  PixelSpacing (row spacing dr, column spacing dc), ``LPS(col, row, k) = IPP_0 + col * dc * r +
  row * dr * c + k * step`` with ``step = (IPP_last - IPP_0) / (slices - 1)`` (else the slice
  normal times the thickness), is multiplied by ``diag(-1, -1, 1, 1)``. Each voxel then sits
  exactly over its DICOM pixel when slices are evenly spaced on a line; where they are not, a note
  says how far off the worst slice is.
- Image files: the identity (no geometry is known).
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from lvseg.data.dicom import (
    SliceTags,
    dicom_pixels,
    dicom_ras_affine,
    finite_number,
    is_dicom_file,
    positive_int,
    read_dicom,
    tag,
)
from lvseg.data.files import walk
from lvseg.data.folders import DEFAULT_PATTERN, IMAGE_SUFFIXES, load_grey, match_name
from lvseg.data.nifti import (
    load_nifti,
    mm_per_unit_of,
    nifti_affine,
    nifti_shape,
    nifti_zooms,
    read_frame,
    slice_positions_of,
    split_nifti_name,
)
from lvseg.errors import InvalidInputError, Skipped
from lvseg.progress import track

KINDS = ("dicom", "nifti", "image")
SAME_PLANE = 0.99
"""Two slice normals belong to one stack when the absolute value of their dot product is above."""
POSITION_TOLERANCE_MM = 0.01
"""Slice positions closer than this are one slice."""
TRIGGER_DECIMALS = 2
"""Trigger times equal to this many decimals (ms) are the same phase (a duplicate frame)."""
MAX_OFF_GRID_MM = 0.1
"""A slice further than this from where the NIfTI affine puts it gets a note."""
GAP_FACTOR = 1.5
"""A gap between neighbouring slices this many times the usual one gets a note: a slice is
likely missing, and volumes (summed over the slices present) come out too small."""
SHORT_AXIS_DESCRIPTION = re.compile(r"(?<![a-z])(?:sax?(?![a-z])|short)", re.IGNORECASE)
NOT_AN_INPUT = "not a DICOM folder, NIfTI file or image file"
_TIME_UNIT_MS = {"sec": 1000.0, "msec": 1.0, "usec": 0.001}


@dataclass
class CineStudy:
    """One short-axis stack over the cardiac cycle (or a single image), ready for prediction.

    ``images`` is float32 (slices, phases, rows, cols) in source intensity units; slices ascend
    along the slice normal, phases follow the cardiac cycle. Geometry is None where the source
    does not store it. ``to_nifti`` writes a volume of the same shape (masks, probabilities) over
    the source (see the module docstring for the conventions).
    """

    images: np.ndarray
    patient_id: str
    name: str
    """A short label, safe in file names and unique among the studies of one read."""
    kind: str
    """"dicom", "nifti" or "image"."""
    pixel_spacing_mm: tuple[float, float] | None
    """(row, col) spacing: the distance between rows, then between columns."""
    slice_positions_mm: np.ndarray | None
    """(slices,) position along the slice normal, ascending."""
    slice_thickness_mm: float | None
    trigger_times_ms: np.ndarray | None
    """(slices, phases) time since the R wave, NaN where unknown; None where no time is known."""
    affine: np.ndarray | None
    """4x4 voxel-to-world matrix (RAS+, mm) of the x = cols, y = rows, z = slices grid."""
    sources: list[list[str]]
    """The file of each (slice, phase) frame."""
    instance_numbers: np.ndarray | None
    """(slices, phases) DICOM InstanceNumber; None unless every frame has one."""
    series_description: str | None
    notes: list[str] = field(default_factory=list)
    """One-line remarks on what the reader did (frames left out, phases truncated, ...)."""
    nifti_header: Any = field(default=None, repr=False)
    """NIfTI input: a copy of the source header, the template of :meth:`to_nifti`."""

    @property
    def slice_spacing_mm(self) -> float | None:
        """Median gap between slice positions; the slice thickness for a single slice."""
        positions = self.slice_positions_mm
        if positions is not None and len(positions) >= 2:
            return float(np.median(np.diff(positions)))
        return self.slice_thickness_mm

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of every frame."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    def to_nifti(self, volume: np.ndarray) -> nib.Nifti1Image:
        """A (slices, phases, rows, cols) volume as a NIfTI image in the source's geometry.

        NIfTI input gives the input's affine, header and shape back (3D stays 3D); DICOM and image
        input give a 4D (cols, rows, slices, phases) image on :attr:`affine`. Booleans are written
        as uint8.
        """
        volume = np.asarray(volume)
        if volume.shape != self.images.shape:
            raise ValueError(
                f"volume is {volume.shape}, the study's images are {self.images.shape}"
            )
        if volume.dtype == bool:
            volume = volume.astype(np.uint8)
        data = np.ascontiguousarray(volume.transpose(3, 2, 0, 1))  # (x=cols, y=rows, z, t)
        if self.nifti_header is not None:
            header = self.nifti_header.copy()
            data = data.reshape(header.get_data_shape())
            header.set_data_dtype(data.dtype)
            header.set_slope_inter(None, None)
            image_class = (
                nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
            )
            return image_class(data, header.get_best_affine(), header=header)
        affine = np.eye(4) if self.affine is None else self.affine
        image = nib.Nifti1Image(data, affine)
        image.header.set_xyzt_units("mm", "msec")
        if self.kind == "dicom":
            image.set_qform(affine, code=1)  # scanner coordinates
            image.set_sform(affine, code=1)
        interval = _frame_interval_ms(self.trigger_times_ms)
        if interval is not None:
            image.header.set_zooms((*image.header.get_zooms()[:3], interval))
        return image


def read_study(
    path: str | Path, *, skip_invalid: bool = False, skipped: list[Skipped] | None = None
) -> list[CineStudy]:
    """Every cine study under ``path`` (see the module docstring for what is read, and how).

    Raises :class:`InvalidInputError` naming the file or folder for anything unreadable; with
    ``skip_invalid`` see :func:`iter_studies`.
    """
    return list(iter_studies(path, skip_invalid=skip_invalid, skipped=skipped))


def iter_studies(
    path: str | Path, *, skip_invalid: bool = False, skipped: list[Skipped] | None = None
) -> Iterator[CineStudy]:
    """The studies of :func:`read_study` one at a time: all headers are read first (so names
    are unique and a folder with no cine fails at once), a study's pixels when it is reached,
    so a folder of many studies never sits in memory whole.

    ``skip_invalid`` (DICOM folders): a file whose header or pixels cannot be read, or that
    does not fit its stack (no slice position, another image size), is left out and the stack
    made from the others; a study with no usable short-axis cine is left out whole. Each is
    appended to ``skipped``; a folder where nothing is left is still an error.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(path, "no such file or folder")
    if path.is_file():
        if split_nifti_name(path.name) is not None:
            yield _read_nifti(path)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            yield from _named([_read_image(path)])
        elif is_dicom_file(path):
            yield from _named([_read_dicom_file(path)])
        else:
            raise InvalidInputError(path, NOT_AN_INPUT)
        return
    if not path.is_dir():
        raise InvalidInputError(path, NOT_AN_INPUT)
    dicoms, niftis, pictures = _scan(path)
    if dicoms:
        skips = _Skips(skip_invalid, [] if skipped is None else skipped)
        yield from _read_dicom_folder(path, dicoms, skips)
    elif niftis:
        raise InvalidInputError(
            path, f"holds {len(niftis)} NIfTI files and no DICOM: give a .nii/.nii.gz file itself"
        )
    elif pictures:
        yield from _named([_read_image(file) for file in track(pictures, f"Reading {path.name}")])
    else:
        raise InvalidInputError(path, f"no DICOM files found: {NOT_AN_INPUT}")


@dataclass
class _Skips:
    """Whether files may be skipped, and the list of those that were."""

    allowed: bool
    found: list[Skipped]

    def skip(self, error: InvalidInputError, fallback: Path) -> None:
        """Record ``error`` as skipped, or raise it when skipping is not allowed."""
        if not self.allowed:
            raise error
        self.found.append(Skipped(error.path or str(fallback), error.reason))


def _scan(root: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """DICOM, NIfTI and image files under ``root``, each list sorted."""
    dicoms: list[Path] = []
    niftis: list[Path] = []
    pictures: list[Path] = []
    for folder, _, files in walk(root):
        for name in files:
            file = folder / name
            if split_nifti_name(name) is not None:
                niftis.append(file)
            elif file.suffix.lower() in IMAGE_SUFFIXES:
                pictures.append(file)
            elif is_dicom_file(file):
                dicoms.append(file)
    return dicoms, niftis, pictures


def _safe_name(text: str) -> str:
    """``text`` with anything but letters, digits, '.', '_' and '-' turned into '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "study"


def _named(studies: list[CineStudy]) -> list[CineStudy]:
    """Studies with their names made file-safe, and unique by a ``_1``, ``_2`` suffix."""
    for study, name in zip(studies, _unique_names([s.name for s in studies]), strict=True):
        study.name = name
    return studies


def _unique_names(names: list[str]) -> list[str]:
    counts = Counter(_safe_name(name) for name in names)
    seen: Counter[str] = Counter()
    unique = []
    for name in names:
        name = _safe_name(name)
        seen[name] += 1
        unique.append(f"{name}_{seen[name]}" if counts[name] > 1 else name)
    return unique


# --------------------------------------------------------------------------- DICOM headers


@dataclass
class _Frame:
    """What the header of one DICOM file says, read without its pixels."""

    path: Path
    patient_id: str
    study_uid: str
    study_time: str
    series_uid: str
    series_number: int | None
    series_description: str
    is_mr_image: bool
    instance_number: int | None
    trigger_time_ms: float | None
    cardiac_images: int | None
    image_position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None
    slice_location: float | None
    size: tuple[int, int] | None
    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    position_mm: float | None = None
    """Position along the normal of the stack it belongs to, set when stacks are formed."""

    @property
    def normal(self) -> np.ndarray | None:
        if self.orientation is None:
            return None
        normal = np.cross(self.orientation[:3], self.orientation[3:])
        length = float(np.linalg.norm(normal))
        return normal / length if length > 0 else None

    @property
    def order(self) -> tuple:
        """Phase order within a slice: trigger time, then instance number, then file."""
        trigger = math.inf if self.trigger_time_ms is None else self.trigger_time_ms
        instance = math.inf if self.instance_number is None else self.instance_number
        return trigger, instance, str(self.path)


def _read_header(path: Path) -> _Frame:
    """The header of one DICOM file (pixels are not read), every failure an InvalidInputError."""
    return _parsed(read_dicom(path, headers_only=True), path)


def _parsed(dicom, path: Path) -> _Frame:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # values are checked on access (Sunnybrook's UIDs)
            return _frame(dicom, path)
    except Exception as error:  # noqa: BLE001 - malformed values of every kind
        raise InvalidInputError(path, f"corrupt DICOM header ({type(error).__name__})") from None


def _frame(dicom, path: Path) -> _Frame:
    def text(name: str) -> str:
        return str(tag(dicom, name) or "").strip()

    rows, cols = positive_int(tag(dicom, "Rows")), positive_int(tag(dicom, "Columns"))
    frames = positive_int(tag(dicom, "NumberOfFrames")) or 1
    series_number = finite_number(tag(dicom, "SeriesNumber"))
    place = SliceTags.of(dicom)
    return _Frame(
        path=path,
        patient_id=text("PatientID"),
        study_uid=text("StudyInstanceUID"),
        study_time=text("StudyDate") + text("StudyTime"),
        series_uid=text("SeriesInstanceUID"),
        series_number=None if series_number is None else int(series_number),
        series_description=text("SeriesDescription"),
        is_mr_image=text("Modality") in ("MR", "") and bool(rows and cols) and frames == 1,
        instance_number=place.instance_number,
        trigger_time_ms=finite_number(tag(dicom, "TriggerTime")),
        cardiac_images=place.cardiac_images,
        image_position=place.image_position,
        orientation=place.orientation,
        slice_location=place.slice_location,
        size=(rows, cols) if rows and cols else None,
        pixel_spacing=place.pixel_spacing,
        slice_thickness=place.slice_thickness,
    )


# --------------------------------------------------------------------------- DICOM studies


def _read_dicom_folder(root: Path, files: list[Path], skips: _Skips) -> Iterator[CineStudy]:
    studies: dict[tuple[str, str], list[_Frame]] = defaultdict(list)
    for file in track(files, f"Reading headers in {root.name}"):
        try:
            frame = _read_header(file)
        except InvalidInputError as error:
            skips.skip(error, file)
            continue
        studies[(frame.patient_id, frame.study_uid)].append(frame)
    ordered = sorted(
        studies.values(), key=lambda f: (f[0].patient_id, f[0].study_time, f[0].study_uid)
    )
    names = _unique_names([_study_name(frames, root) for frames in ordered])
    read = 0
    for frames, name in zip(ordered, names, strict=True):
        try:
            study = _read_dicom_study(frames, root, skips)
        except InvalidInputError as error:
            skips.skip(error, root)
            continue
        study.name = name
        read += 1
        yield study
    if read == 0:
        what = f"{len(skips.found)} file(s) or studies skipped" if skips.found else "no study"
        raise InvalidInputError(root, f"no readable short-axis cine study ({what})")


def _study_name(frames: list[_Frame], root: Path) -> str:
    return frames[0].patient_id or (_common_folder([f.path for f in frames]) or root).name


@dataclass
class _Plane:
    """Cine frames that share a slice normal: a candidate stack."""

    normal: np.ndarray | None
    frames: list[_Frame] = field(default_factory=list)

    @property
    def position_count(self) -> int:
        return len(_group_positions([f for f in self.frames if f.position_mm is not None]))

    @property
    def says_short_axis(self) -> bool:
        return any(SHORT_AXIS_DESCRIPTION.search(f.series_description) for f in self.frames)


def _read_dicom_study(frames: list[_Frame], root: Path, skips: _Skips) -> CineStudy:
    """The short-axis cine of one study's frames. A frame that cannot be used (no position,
    another size, unreadable pixels) is an error, or, where ``skips`` allows it, is skipped and
    the stack is built again from the others. A skipped frame with a slice position takes its
    whole slice out, with a note: a slice missing one phase would put the phases after the hole
    out of step with the other slices; a missing slice is seen (a slice-gap note)."""
    frames = list(frames)
    left_out: list[str] = []
    while True:
        try:
            study = _read_cine(frames, root)
            study.notes = left_out + study.notes
            return study
        except InvalidInputError as error:
            bad = next((f for f in frames if str(f.path) == error.path), None)
            if bad is None or not skips.allowed:
                raise
            skips.skip(error, bad.path)
            frames.remove(bad)
            if bad.position_mm is not None:
                here = [
                    f
                    for f in frames
                    if f.position_mm is not None
                    and abs(f.position_mm - bad.position_mm) <= POSITION_TOLERANCE_MM
                ]
                frames = [f for f in frames if f not in here]
                left_out.append(
                    f"slice at {bad.position_mm:.2f} mm left out: its frame {bad.path.name} "
                    "was skipped"
                )


def _read_cine(frames: list[_Frame], root: Path) -> CineStudy:
    """The short-axis cine of one study's frames; every problem an InvalidInputError."""
    folder = _common_folder([f.path for f in frames]) or root
    images = [f for f in frames if f.is_mr_image]
    series_count = len({f.series_uid for f in images})
    planes = [p for p in _planes(_cine_frames(images)) if p.position_count >= 2]
    if not planes:
        raise InvalidInputError(
            folder,
            f"no short-axis cine: {series_count} image series, none is a stack of parallel "
            "cine slices",
        )
    pool = [p for p in planes if p.says_short_axis] or planes
    chosen = max(pool, key=lambda p: (p.position_count, len(p.frames)))
    slices, notes = _stack(chosen.frames)
    patient_id = _study_name(frames, root)
    return _dicom_study(slices, patient_id, patient_id, notes)


def _common_folder(paths: list[Path]) -> Path | None:
    parents = {p.parent for p in paths}
    if len(parents) == 1:
        return parents.pop()
    parts = [p.parts for p in parents]
    common = []
    for names in zip(*parts, strict=False):
        if len(set(names)) != 1:
            break
        common.append(names[0])
    return Path(*common) if common else None


def _cine_frames(images: list[_Frame]) -> list[_Frame]:
    """Frames of the series that are cines: several trigger times at one position, or
    CardiacNumberOfImages > 1."""
    by_series: dict[str, list[_Frame]] = defaultdict(list)
    for frame in images:
        by_series[frame.series_uid].append(frame)
    cine: list[_Frame] = []
    for series in by_series.values():
        triggers: dict[object, set[float]] = defaultdict(set)
        for frame in series:
            if frame.trigger_time_ms is not None:
                triggers[_raw_position(frame)].add(round(frame.trigger_time_ms, TRIGGER_DECIMALS))
        if any(len(t) > 1 for t in triggers.values()) or any(
            (f.cardiac_images or 0) > 1 for f in series
        ):
            cine += series
    return cine


def _raw_position(frame: _Frame) -> object:
    """Where a frame is, before any stack normal is known: a key to group frames by."""
    if frame.image_position is not None:
        return tuple(round(v, 2) for v in frame.image_position)
    if frame.slice_location is not None:
        return round(frame.slice_location, 2)
    return None


def _planes(frames: list[_Frame]) -> list[_Plane]:
    """Frames clustered by slice normal; frames without orientation join their series' plane."""
    planes: list[_Plane] = []
    unoriented: list[_Frame] = []
    for frame in frames:
        normal = frame.normal
        if normal is None:
            unoriented.append(frame)
            continue
        plane = next((p for p in planes if abs(float(p.normal @ normal)) > SAME_PLANE), None)
        if plane is None:
            plane = _Plane(normal)
            planes.append(plane)
        plane.frames.append(frame)
    homes: dict[str, Counter[int]] = defaultdict(Counter)
    for index, plane in enumerate(planes):
        for frame in plane.frames:
            homes[frame.series_uid][index] += 1
    unknown = _Plane(None)
    for frame in unoriented:
        home = homes.get(frame.series_uid)
        (planes[home.most_common(1)[0][0]] if home else unknown).frames.append(frame)
    if unknown.frames:
        planes.append(unknown)
    for plane in planes:
        for frame in plane.frames:
            frame.position_mm = _position(frame, plane.normal)
    return planes


def _position(frame: _Frame, normal: np.ndarray | None) -> float | None:
    """The frame's position along ``normal``: its IPP projected, else its SliceLocation."""
    if normal is not None and frame.image_position is not None:
        return float(normal @ np.asarray(frame.image_position))
    return frame.slice_location


def _group_positions(frames: list[_Frame]) -> list[list[_Frame]]:
    """Frames grouped by position (within :data:`POSITION_TOLERANCE_MM`), ascending."""
    groups: list[list[_Frame]] = []
    for frame in sorted(frames, key=lambda f: f.position_mm):
        if groups and frame.position_mm - groups[-1][0].position_mm <= POSITION_TOLERANCE_MM:
            groups[-1].append(frame)
        else:
            groups.append([frame])
    return groups


def _stack(frames: list[_Frame]) -> tuple[list[list[_Frame]], list[str]]:
    """The chosen frames as slices (ascending position) of phases (cardiac order), checked."""
    for frame in sorted(frames, key=lambda f: str(f.path)):
        if frame.position_mm is None:
            raise InvalidInputError(
                frame.path,
                "no slice position (no ImagePositionPatient + ImageOrientationPatient, "
                "no SliceLocation)",
            )
    sizes = Counter(f.size for f in frames)
    usual = sizes.most_common(1)[0][0]
    for frame in sorted(frames, key=lambda f: str(f.path)):
        if frame.size != usual:
            raise InvalidInputError(
                frame.path,
                f"image is {frame.size[0]}x{frame.size[1]} (rows x cols), the other images of "
                f"the short-axis stack are {usual[0]}x{usual[1]}",
            )
    notes: list[str] = []
    slices: list[list[_Frame]] = []
    duplicates: list[tuple[_Frame, _Frame]] = []
    for group in _group_positions(frames):
        group = _one_series(group, notes)
        phases: list[_Frame] = []
        for frame in sorted(group, key=lambda f: f.order):
            previous = phases[-1] if phases else None
            if (
                previous is not None
                and frame.trigger_time_ms is not None
                and previous.trigger_time_ms is not None
                and round(frame.trigger_time_ms, TRIGGER_DECIMALS)
                == round(previous.trigger_time_ms, TRIGGER_DECIMALS)
            ):
                duplicates.append((previous, frame))
                continue
            phases.append(frame)
        slices.append(phases)
    if duplicates:
        kept, dropped = duplicates[0]
        notes.append(
            f"{len(duplicates)} duplicate frame(s) left out (same position and trigger time; "
            f"the lower InstanceNumber is kept), e.g. {dropped.path.name} "
            f"(instance {dropped.instance_number}) beside {kept.path.name} "
            f"(instance {kept.instance_number})"
        )
    counts = [len(phases) for phases in slices]
    fewest = min(counts)
    if fewest != max(counts):
        short = counts.index(fewest)
        notes.append(
            f"phases truncated to {fewest}: slice {short} has {fewest} "
            f"(phase counts {', '.join(map(str, counts))})"
        )
        slices = [phases[:fewest] for phases in slices]
    return slices, notes


def _one_series(group: list[_Frame], notes: list[str]) -> list[_Frame]:
    """The frames of one series at a slice position: where a slice was acquired again, the
    series with the most frames (then the later one) is kept."""
    series = Counter(f.series_uid for f in group)
    if len(series) == 1:
        return group
    numbers = {f.series_uid: f.series_number or 0 for f in group}
    kept = max(series, key=lambda uid: (series[uid], numbers[uid], uid))
    notes.append(
        f"{len(series)} series at slice position {group[0].position_mm:.2f} mm: kept series "
        f"{numbers[kept]} ({series[kept]} frames)"
    )
    return [f for f in group if f.series_uid == kept]


def _dicom_study(
    slices: list[list[_Frame]], patient_id: str, name: str, notes: list[str]
) -> CineStudy:
    """Read the pixels of the chosen frames and assemble the study."""
    rows, cols = slices[0][0].size
    phases = len(slices[0])
    images = np.empty((len(slices), phases, rows, cols), np.float32)
    work = [(s, p) for s in range(len(slices)) for p in range(phases)]
    for s, p in track(work, f"Reading {patient_id}"):
        path = slices[s][p].path
        pixels = dicom_pixels(read_dicom(path), path)
        if pixels.shape != (rows, cols):
            raise InvalidInputError(
                path, f"pixel data is {pixels.shape[0]}x{pixels.shape[1]}, expected {rows}x{cols}"
            )
        images[s, p] = pixels

    frames = [f for phases_of_slice in slices for f in phases_of_slice]
    first = slices[0][0]
    spacing = first.pixel_spacing
    if len({f.pixel_spacing for f in frames}) > 1:
        notes.append(f"pixel spacing differs between frames: {spacing} (the first) is used")
    triggers = np.array(
        [[np.nan if f.trigger_time_ms is None else f.trigger_time_ms for f in ph] for ph in slices]
    )
    instances = [[f.instance_number for f in ph] for ph in slices]
    positions = [ph[0].position_mm for ph in slices]
    notes = notes + _gap_notes(positions)
    descriptions = Counter(f.series_description for f in frames if f.series_description)
    affine, affine_notes = _dicom_affine([ph[0] for ph in slices], spacing)
    return CineStudy(
        images=images,
        patient_id=patient_id,
        name=name,
        kind="dicom",
        pixel_spacing_mm=spacing,
        slice_positions_mm=None if None in positions else np.array(positions, np.float64),
        slice_thickness_mm=first.slice_thickness,
        trigger_times_ms=None if np.isnan(triggers).all() else triggers,
        affine=affine,
        sources=[[str(f.path) for f in ph] for ph in slices],
        instance_numbers=None
        if any(n is None for row in instances for n in row)
        else np.array(instances, np.int64),
        series_description=descriptions.most_common(1)[0][0] if descriptions else None,
        notes=notes + affine_notes,
    )


def _gap_notes(positions: list[float | None]) -> list[str]:
    """A note for each gap between neighbouring slices wider than :data:`GAP_FACTOR` times the
    usual step (the median gap, the smallest with fewer than three gaps)."""
    if None in positions or len(positions) < 3:
        return []
    gaps = np.diff(np.asarray(positions, np.float64))
    usual = float(np.median(gaps) if len(gaps) >= 3 else gaps.min())
    if usual <= 0:
        return []
    return [
        f"slice gap: slices {k} and {k + 1} are {gap:.1f} mm apart, the others {usual:.1f} mm: "
        "a slice may be missing, and the volumes, summed over the slices present, are then too "
        "small"
        for k, gap in enumerate(gaps)
        if gap > GAP_FACTOR * usual
    ]


def _dicom_affine(
    slices: list[_Frame], spacing: tuple[float, float] | None
) -> tuple[np.ndarray, list[str]]:
    """The RAS+ voxel-to-world matrix of the (col, row, slice) grid, from the first frame of
    each slice (see the module docstring), and notes where it cannot be exact."""
    first = slices[0]
    row_spacing, col_spacing = spacing or (1.0, 1.0)
    positions = [f.position_mm for f in slices]
    gaps = np.diff([p for p in positions if p is not None])
    step_mm = float(np.median(gaps)) if gaps.size else (first.slice_thickness or 1.0)
    if first.orientation is None or first.image_position is None or first.normal is None:
        affine = np.diag([col_spacing, row_spacing, step_mm, 1.0])
        affine[2, 3] = positions[0] or 0.0
        return affine, [
            "no ImagePositionPatient + ImageOrientationPatient: the NIfTI affine is a plain scaling"
        ]
    notes: list[str] = []
    if spacing is None:
        notes.append("no PixelSpacing: 1 mm assumed in the NIfTI affine")
    origin = np.asarray(first.image_position)
    last = slices[-1].image_position
    if len(slices) > 1 and last is not None:
        step = (np.asarray(last) - origin) / (len(slices) - 1)
    else:
        step = first.normal * (first.slice_thickness or 1.0)
    affine = dicom_ras_affine(first.orientation, origin, (row_spacing, col_spacing), step)
    off_grid = max(
        (
            float(np.linalg.norm(np.asarray(f.image_position) - origin - k * step))
            for k, f in enumerate(slices)
            if f.image_position is not None
        ),
        default=0.0,
    )
    if off_grid > MAX_OFF_GRID_MM:
        notes.append(
            f"slices are not evenly spaced on a line: the NIfTI affine puts one {off_grid:.2f} mm "
            "from its ImagePositionPatient"
        )
    if any(
        f.orientation is not None and not np.allclose(f.orientation, first.orientation, atol=1e-3)
        for f in slices
    ):
        notes.append(
            "ImageOrientationPatient differs between slices: the NIfTI affine uses the first's"
        )
    return affine, notes


def _read_dicom_file(path: Path) -> CineStudy:
    """One DICOM file as a 1 x 1 study, whether or not it belongs to a cine."""
    dicom = read_dicom(path)
    frame = _parsed(dicom, path)
    frame.position_mm = _position(frame, frame.normal)
    pixels = dicom_pixels(dicom, path)
    frame.size = pixels.shape
    name = f"{frame.patient_id}_{path.stem}" if frame.patient_id else path.stem
    return _dicom_study([[frame]], frame.patient_id or path.stem, name, [])


# --------------------------------------------------------------------------- NIfTI and images


def _read_nifti(path: Path) -> CineStudy:
    """A 3D or 4D NIfTI file as a study, oriented as :mod:`lvseg.data.nifti` reads training data."""
    image = load_nifti(path)
    shape = nifti_shape(image, path)
    zooms = nifti_zooms(image, path)
    mm_per_unit = mm_per_unit_of(image)
    affine = nifti_affine(image, path)
    affine_mm = affine.copy()
    affine_mm[:3] *= mm_per_unit
    depth = shape[2]
    phases = shape[3] if len(shape) == 4 else 1
    images = np.empty((depth, phases, shape[1], shape[0]), np.float32)
    frames: list[int | None] = [None] if len(shape) == 3 else list(range(phases))
    for t, frame in enumerate(frames):
        volume = read_frame(image, path, frame, shape)  # (x, y, z)
        images[:, t] = volume.transpose(2, 1, 0)
    finite = np.isfinite(images)
    if not finite.all():
        k, t = (int(i) for i in np.argwhere(~finite)[0][:2])
        raise InvalidInputError(path, f"non-finite intensities in slice {k}, frame {t}")
    stem = split_nifti_name(path.name)[0]
    return CineStudy(
        images=images,
        patient_id=stem,
        name=_safe_name(stem),
        kind="nifti",
        pixel_spacing_mm=(float(zooms[1]), float(zooms[0])),
        slice_positions_mm=np.array(slice_positions_of(affine_mm, depth, zooms[2]), np.float64),
        slice_thickness_mm=float(zooms[2]),
        trigger_times_ms=_nifti_times(image, depth, phases),
        affine=affine_mm,
        sources=[[str(path)] * phases for _ in range(depth)],
        instance_numbers=None,
        series_description=None,
        nifti_header=image.header.copy(),
    )


def _nifti_times(image: nib.Nifti1Image, depth: int, phases: int) -> np.ndarray | None:
    """Frame times from the 4th voxel size, where the header gives it a time unit."""
    if phases < 2:
        return None
    try:
        per_unit = _TIME_UNIT_MS.get(image.header.get_xyzt_units()[1])
        interval = float(image.header.get_zooms()[3])
    except Exception:  # noqa: BLE001 - an odd unit code or a short pixdim: time unknown
        return None
    if per_unit is None or not (math.isfinite(interval) and interval > 0):
        return None
    return np.tile(np.arange(phases) * interval * per_unit, (depth, 1))


def _frame_interval_ms(times: np.ndarray | None) -> float | None:
    """The median time between phases (for a NIfTI header), None where unknown."""
    if times is None or times.shape[1] < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        gaps = np.diff(np.nanmean(times, axis=0))
    gaps = gaps[np.isfinite(gaps) & (gaps > 0)]
    return float(np.median(gaps)) if gaps.size else None


def _read_image(path: Path) -> CineStudy:
    """One image file as a 1 x 1 study; the patient id follows the Sunnybrook PNG names."""
    image = load_grey(path).astype(np.float32)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    fields = match_name(DEFAULT_PATTERN, path.name) or {}
    return CineStudy(
        images=image[None, None],
        patient_id=fields.get("patient", stem),
        name=stem,
        kind="image",
        pixel_spacing_mm=None,
        slice_positions_mm=None,
        slice_thickness_mm=None,
        trigger_times_ms=None,
        affine=np.eye(4),
        sources=[[str(path)]],
        instance_numbers=None,
        series_description=None,
    )
