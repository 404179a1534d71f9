"""Generating one patient: draw the anatomy, render every frame, label it, place it in the scanner.

Every synthetic patient is drawn from NumPy generators seeded with ``(seed, patient index)``, so
patient *k* is the same whatever the number of patients, and the same seed writes the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lvseg.data.phantom.anatomy import GROUPS, Anatomy, sample_anatomy
from lvseg.data.phantom.kspace import make_optics
from lvseg.data.phantom.labels import FrameLabels, label_frame, outline
from lvseg.data.phantom.overrides import check_contrast, with_acquisition, with_random_contrast
from lvseg.data.phantom.patient import PHASES, PhantomPatient
from lvseg.data.phantom.render import frame_image, make_frame
from lvseg.data.phantom.scene import Grid, pixel_grid, slice_scene
from lvseg.errors import InvalidInputError

PHANTOM_VERSION = "2"
"""Bumped whenever the same seed would give different images; part of the cache folder name."""
LABELLED_PHASES = ("ed_es", "all")
DEFAULT_PATIENTS = 8
DEFAULT_SEED = 0
MAX_PATIENTS = 9999


def generate_patient(
    index: int,
    seed: int = DEFAULT_SEED,
    *,
    phases: Sequence[int] | str | None = None,
    downscale: int = 1,
    group: str | None = None,
    acquisition: dict[str, Any] | None = None,
    contrast: str = "ssfp",
) -> PhantomPatient:
    """Generate synthetic patient ``index`` (0-based) of the phantom drawn with ``seed``.

    ``phases`` renders only some cardiac phases (a list of indices, or ``"ed_es"``); a phase's
    images do not depend on which others are rendered. ``downscale`` divides the matrix and
    multiplies the pixel spacing (same anatomy, fewer pixels: for fast tests). ``group`` overrides
    the group ``GROUPS[index % 4]``. ``acquisition`` fixes some of the patient's acquisition
    draws (keys of :data:`~lvseg.data.phantom.overrides.ACQUISITION`); the anatomy and everything
    else stay as drawn.
    """
    check_int("index", index, 0, MAX_PATIENTS - 1)
    check_int("seed", seed, 0, 2**63 - 1)
    check_int("downscale", downscale, 1, 8)
    anat = _drawn_anatomy(index, seed, group, contrast, acquisition)
    phase_indices = _phase_indices(phases, anat.motion.es_phase)
    grid = pixel_grid(anat.plane, downscale)
    cine = _render(anat, grid, phase_indices, (seed, index))
    image_positions, slice_positions = _world_positions(anat, grid)
    rr_ms = 60000.0 / anat.subject.heart_rate_bpm
    number = index + 1
    return PhantomPatient(
        index=index,
        seed=seed,
        patient_id=f"PH{number:05d}01",
        original_id=f"PH-{anat.group}-{number:02d}",
        group=anat.group,
        images=cine.images,
        lv=cine.lv,
        myocardium=cine.myocardium,
        rv=cine.rv,
        phase_indices=phase_indices,
        endocardium=cine.endocardium,
        epicardium=cine.epicardium,
        pixel_spacing_mm=(grid.spacing, grid.spacing),
        slice_thickness_mm=anat.plane.thickness,
        slice_spacing_mm=anat.plane.slice_spacing,
        slice_positions_mm=slice_positions,
        image_positions_mm=image_positions,
        image_orientation=tuple(round(float(c), 6) for c in anat.stack.orientation[:2].ravel()),
        trigger_times_ms=tuple(round(p * rr_ms / PHASES, 2) for p in range(PHASES)),
        heart_rate_bpm=anat.subject.heart_rate_bpm,
        ed_phase=0,
        es_phase=anat.motion.es_phase,
        ejection_fraction=round(anat.motion.ef, 3),
        height_cm=anat.subject.height_cm,
        weight_kg=anat.subject.weight_kg,
        downscale=downscale,
    )


def _drawn_anatomy(
    index: int, seed: int, group: str | None, contrast: str, acquisition: dict[str, Any] | None
) -> Anatomy:
    """The patient's anatomy (stream ``[seed, index, 0]``), with its contrast and acquisition
    changed as asked (a random contrast draws from its own stream, ``[seed, index, 2]``)."""
    group = GROUPS[index % len(GROUPS)] if group is None else group
    if group not in GROUPS:
        raise InvalidInputError(None, f"unknown group {group!r}; choose one of {', '.join(GROUPS)}")
    anat = sample_anatomy(np.random.default_rng([seed, index, 0]), group)
    check_contrast(contrast)
    if contrast == "random":
        anat = with_random_contrast(anat, np.random.default_rng([seed, index, 2]))
    if acquisition:
        anat = with_acquisition(anat, acquisition)
    return anat


def _phase_indices(phases: Sequence[int] | str | None, es_phase: int) -> tuple[int, ...]:
    if phases is None:
        return tuple(range(PHASES))
    if isinstance(phases, str):
        if phases not in LABELLED_PHASES:
            raise InvalidInputError(
                None, f"phases must be a list, 'ed_es' or 'all', got {phases!r}"
            )
        return (0, es_phase) if phases == "ed_es" else tuple(range(PHASES))
    phase_indices = tuple(sorted({int(p) for p in phases}))
    if not phase_indices or not all(0 <= p < PHASES for p in phase_indices):
        raise InvalidInputError(None, f"phases must be indices in 0..{PHASES - 1}")
    return phase_indices


@dataclass
class _Cine:
    """The rendered frames of one patient, ``[phase, slice, rows, cols]``, and their contours."""

    images: np.ndarray
    lv: np.ndarray
    myocardium: np.ndarray
    rv: np.ndarray
    endocardium: dict[tuple[int, int], np.ndarray]  # (phase, slice) -> (x, y) polygon
    epicardium: dict[tuple[int, int], np.ndarray]

    @classmethod
    def empty(cls, shape: tuple[int, int, int, int]) -> _Cine:
        masks = (np.zeros(shape, bool) for _ in range(3))
        return cls(np.zeros(shape, np.float32), *masks, {}, {})

    def add_labels(self, row: int, s: int, phase: int, labels: FrameLabels) -> None:
        """The labels of phase ``phase`` (row ``row`` of the phase axis) at slice ``s``."""
        self.lv[row, s] = labels.lv
        self.myocardium[row, s] = labels.myocardium
        self.rv[row, s] = labels.rv
        if labels.endocardium is not None:
            self.endocardium[(phase, s)] = labels.endocardium
        self.epicardium[(phase, s)] = labels.epicardium


def _render(
    anat: Anatomy, grid: Grid, phase_indices: tuple[int, ...], stream: tuple[int, int]
) -> _Cine:
    """Every slice at every phase: images and labels. Slice ``s`` draws its scene from
    ``[seed, index, 1, s]`` and each frame its k-space noise from ``[seed, index, 2, s, phase]``
    (``stream`` is ``(seed, index)``), so a frame does not depend on which others are rendered."""
    optics = make_optics(anat.scanner, *grid.shape)
    contour = outline(anat)
    slices = len(anat.stack.z_slices)
    cine = _Cine.empty((len(phase_indices), slices, *grid.shape))
    for s, z in enumerate(anat.stack.z_slices):
        scene = slice_scene(anat, grid, float(z), np.random.default_rng([*stream, 1, s]))
        for row, phase in enumerate(phase_indices):
            frame = make_frame(anat, scene, phase)
            noise = np.random.default_rng([*stream, 2, s, phase])
            cine.images[row, s] = frame_image(anat, optics, frame, noise)
            labels = label_frame(anat, grid, contour, frame)
            if labels is not None:
                cine.add_labels(row, s, phase, labels)
    return cine


def _world_positions(
    anat: Anatomy, grid: Grid
) -> tuple[tuple[tuple[float, float, float], ...], tuple[float, ...]]:
    """The DICOM ImagePositionPatient (top-left pixel, LPS mm) and slice position of every
    slice."""
    orientation = anat.stack.orientation
    heart_row, heart_col = grid.heart_px
    # the heart's world point lies in the plane of slice position 0, so that
    # SliceLocation = ImagePositionPatient . normal = the slice position
    heart_world = anat.stack.heart_world
    heart_world = heart_world - (heart_world @ orientation[2]) * orientation[2]
    positions = []
    slice_positions = []
    for z in anat.stack.z_slices:
        slice_position = round(anat.stack.position_offset + float(z), 3)
        corner = (
            heart_world
            - heart_col * grid.spacing * orientation[0]
            - heart_row * grid.spacing * orientation[1]
            + slice_position * orientation[2]
        )
        positions.append(tuple(round(float(c), 4) for c in corner))
        slice_positions.append(slice_position)
    return tuple(positions), tuple(slice_positions)


def check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(None, f"{name} must be an integer, got {value!r}")
    if not low <= int(value) <= high:
        raise InvalidInputError(None, f"{name} must be in {low}..{high}, got {value}")
