"""Which frames of a DICOM study make its short-axis cine, and in what order.

Headers are read without pixels (:class:`Frame`). The frames of cine series (several
TriggerTimes at one position, or CardiacNumberOfImages > 1) are clustered by slice normal (same
plane when ``|n1 . n2| > 0.99``; several series may form one stack, as clinical cines often hold
one slice per series), and the cluster with the most distinct slice positions wins (two at least,
so single-position long-axis views never do); a cluster whose SeriesDescription says sa/sax/short
is preferred. Slices are ordered by ascending position along the stack normal (the
ImagePositionPatient projected on it, SliceLocation where there is none), phases by TriggerTime
then InstanceNumber.

Frame order differs from :mod:`lvseg.data.sunnybrook` on purpose: that reader numbers slices by
InstanceNumber (slice = (N - 1) // 20), this one by position. In the Sunnybrook set the position
descends as N grows, so slice 0 here is slice 11 there; ``instance_numbers`` tells which is which.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lvseg.data.dicom import SliceTags, finite_number, positive_int, read_dicom, tag
from lvseg.errors import InvalidInputError

SAME_PLANE = 0.99
"""Two slice normals belong to one stack when the absolute value of their dot product is above."""
POSITION_TOLERANCE_MM = 0.01
"""Slice positions closer than this are one slice."""
TRIGGER_DECIMALS = 2
"""Trigger times equal to this many decimals (ms) are the same phase (a duplicate frame)."""
SHORT_AXIS_DESCRIPTION = re.compile(r"(?<![a-z])(?:sax?(?![a-z])|short)", re.IGNORECASE)


@dataclass
class Frame:
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


def read_header(path: Path) -> Frame:
    """The header of one DICOM file (pixels are not read), every failure an InvalidInputError."""
    return parse_header(read_dicom(path, headers_only=True), path)


def parse_header(dicom, path: Path) -> Frame:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # values are checked on access (Sunnybrook's UIDs)
            return _frame(dicom, path)
    except Exception as error:  # noqa: BLE001 - malformed values of every kind
        raise InvalidInputError(path, f"corrupt DICOM header ({type(error).__name__})") from None


def _frame(dicom, path: Path) -> Frame:
    def text(name: str) -> str:
        return str(tag(dicom, name) or "").strip()

    rows, cols = positive_int(tag(dicom, "Rows")), positive_int(tag(dicom, "Columns"))
    frames = positive_int(tag(dicom, "NumberOfFrames")) or 1
    series_number = finite_number(tag(dicom, "SeriesNumber"))
    place = SliceTags.of(dicom)
    return Frame(
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


@dataclass
class Plane:
    """Cine frames that share a slice normal: a candidate stack."""

    normal: np.ndarray | None
    frames: list[Frame] = field(default_factory=list)

    @property
    def position_count(self) -> int:
        return len(group_positions([f for f in self.frames if f.position_mm is not None]))

    @property
    def says_short_axis(self) -> bool:
        return any(SHORT_AXIS_DESCRIPTION.search(f.series_description) for f in self.frames)


def short_axis_stack(frames: list[Frame], folder: Path) -> tuple[list[list[Frame]], list[str]]:
    """The short-axis cine among one study's frames, as slices of phases (see the module
    docstring), and notes; ``folder`` names the study in the error where there is none."""
    images = [f for f in frames if f.is_mr_image]
    series_count = len({f.series_uid for f in images})
    stacks = [p for p in planes(cine_frames(images)) if p.position_count >= 2]
    if not stacks:
        raise InvalidInputError(
            folder,
            f"no short-axis cine: {series_count} image series, none is a stack of parallel "
            "cine slices",
        )
    pool = [p for p in stacks if p.says_short_axis] or stacks
    chosen = max(pool, key=lambda p: (p.position_count, len(p.frames)))
    return stack(chosen.frames)


def cine_frames(images: list[Frame]) -> list[Frame]:
    """Frames of the series that are cines: several trigger times at one position, or
    CardiacNumberOfImages > 1."""
    by_series: dict[str, list[Frame]] = defaultdict(list)
    for frame in images:
        by_series[frame.series_uid].append(frame)
    cine: list[Frame] = []
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


def _raw_position(frame: Frame) -> object:
    """Where a frame is, before any stack normal is known: a key to group frames by."""
    if frame.image_position is not None:
        return tuple(round(v, 2) for v in frame.image_position)
    if frame.slice_location is not None:
        return round(frame.slice_location, 2)
    return None


def planes(frames: list[Frame]) -> list[Plane]:
    """Frames clustered by slice normal; frames without orientation join their series' plane."""
    planes: list[Plane] = []
    unoriented: list[Frame] = []
    for frame in frames:
        normal = frame.normal
        if normal is None:
            unoriented.append(frame)
            continue
        plane = next((p for p in planes if abs(float(p.normal @ normal)) > SAME_PLANE), None)
        if plane is None:
            plane = Plane(normal)
            planes.append(plane)
        plane.frames.append(frame)
    homes: dict[str, Counter[int]] = defaultdict(Counter)
    for index, plane in enumerate(planes):
        for frame in plane.frames:
            homes[frame.series_uid][index] += 1
    unknown = Plane(None)
    for frame in unoriented:
        home = homes.get(frame.series_uid)
        (planes[home.most_common(1)[0][0]] if home else unknown).frames.append(frame)
    if unknown.frames:
        planes.append(unknown)
    for plane in planes:
        for frame in plane.frames:
            frame.position_mm = position(frame, plane.normal)
    return planes


def position(frame: Frame, normal: np.ndarray | None) -> float | None:
    """The frame's position along ``normal``: its IPP projected, else its SliceLocation."""
    if normal is not None and frame.image_position is not None:
        return float(normal @ np.asarray(frame.image_position))
    return frame.slice_location


def group_positions(frames: list[Frame]) -> list[list[Frame]]:
    """Frames grouped by position (within :data:`POSITION_TOLERANCE_MM`), ascending."""
    groups: list[list[Frame]] = []
    for frame in sorted(frames, key=lambda f: f.position_mm):
        if groups and frame.position_mm - groups[-1][0].position_mm <= POSITION_TOLERANCE_MM:
            groups[-1].append(frame)
        else:
            groups.append([frame])
    return groups


def stack(frames: list[Frame]) -> tuple[list[list[Frame]], list[str]]:
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
    slices: list[list[Frame]] = []
    duplicates: list[tuple[Frame, Frame]] = []
    for group in group_positions(frames):
        group = _one_series(group, notes)
        phases: list[Frame] = []
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


def _one_series(group: list[Frame], notes: list[str]) -> list[Frame]:
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
