"""DICOM folders and files as cine studies: every study's short-axis cine, its pixels and
geometry. One study per (PatientID, StudyInstanceUID), sorted by patient id; the frames of each
are chosen and ordered by :mod:`.stacks`."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lvseg.data.dicom import dicom_pixels, dicom_ras_affine, read_dicom
from lvseg.data.study.cine import CineStudy, unique_names
from lvseg.data.study.stacks import (
    POSITION_TOLERANCE_MM,
    Frame,
    parse_header,
    position,
    read_header,
    short_axis_stack,
)
from lvseg.errors import InvalidInputError, Skipped
from lvseg.progress import track

MAX_OFF_GRID_MM = 0.1
"""A slice further than this from where the NIfTI affine puts it gets a note."""
GAP_FACTOR = 1.5
"""A gap between neighbouring slices this many times the usual one gets a note: a slice is
likely missing, and volumes (summed over the slices present) come out too small."""


@dataclass
class Skips:
    """Whether files may be skipped, and the list of those that were."""

    allowed: bool
    found: list[Skipped]

    def skip(self, error: InvalidInputError, fallback: Path) -> None:
        """Record ``error`` as skipped, or raise it when skipping is not allowed."""
        if not self.allowed:
            raise error
        self.found.append(Skipped(error.path or str(fallback), error.reason))


def read_dicom_folder(root: Path, files: list[Path], skips: Skips) -> Iterator[CineStudy]:
    """The studies of the DICOM ``files`` under ``root``: every header first (so names are
    unique), then each study's pixels when it is reached."""
    studies: dict[tuple[str, str], list[Frame]] = defaultdict(list)
    for file in track(files, f"Reading headers in {root.name}"):
        try:
            frame = read_header(file)
        except InvalidInputError as error:
            skips.skip(error, file)
            continue
        studies[(frame.patient_id, frame.study_uid)].append(frame)
    ordered = sorted(
        studies.values(), key=lambda f: (f[0].patient_id, f[0].study_time, f[0].study_uid)
    )
    names = unique_names([_study_name(frames, root) for frames in ordered])
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


def _study_name(frames: list[Frame], root: Path) -> str:
    return frames[0].patient_id or (_common_folder([f.path for f in frames]) or root).name


def _read_dicom_study(frames: list[Frame], root: Path, skips: Skips) -> CineStudy:
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


def _read_cine(frames: list[Frame], root: Path) -> CineStudy:
    """The short-axis cine of one study's frames; every problem an InvalidInputError."""
    folder = _common_folder([f.path for f in frames]) or root
    slices, notes = short_axis_stack(frames, folder)
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


def _dicom_study(
    slices: list[list[Frame]], patient_id: str, name: str, notes: list[str]
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
    slices: list[Frame], spacing: tuple[float, float] | None
) -> tuple[np.ndarray, list[str]]:
    """The RAS+ voxel-to-world matrix of the (col, row, slice) grid, from the first frame of
    each slice (:func:`~lvseg.data.dicom.dicom_ras_affine`), and notes where it cannot be exact.

    The slice step is ``(IPP_last - IPP_0) / (slices - 1)``, else the slice normal times the
    thickness: each voxel then sits exactly over its DICOM pixel when slices are evenly spaced on
    a line; where they are not, a note says how far off the worst slice is.
    """
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


def read_dicom_file(path: Path) -> CineStudy:
    """One DICOM file as a 1 x 1 study, whether or not it belongs to a cine."""
    dicom = read_dicom(path)
    frame = parse_header(dicom, path)
    frame.position_mm = position(frame, frame.normal)
    pixels = dicom_pixels(dicom, path)
    frame.size = pixels.shape
    name = f"{frame.patient_id}_{path.stem}" if frame.patient_id else path.stem
    return _dicom_study([[frame]], frame.patient_id or path.stem, name, [])
