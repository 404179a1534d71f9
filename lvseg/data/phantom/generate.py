"""Generating patients: anatomy, images and labels, as records or a dataset."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from lvseg.data import contours
from lvseg.data.phantom.anatomy import (
    GROUPS,
    check_contrast,
    checked_acquisition,
    sample_anatomy,
    with_random_contrast,
)
from lvseg.data.phantom.heart import angles_at, boundary_radii, heart_state
from lvseg.data.phantom.patient import PHASES, PhantomPatient
from lvseg.data.phantom.render import (
    CONTOUR_POINTS,
    acquire,
    contour_polygon,
    heart_pixel,
    make_optics,
    paint_heart,
    pixel_grid,
    slice_scene,
)
from lvseg.data.records import ED, ES, LV, MYOCARDIUM, RV, Dataset, Geometry, SliceRecord
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
    draws (keys of :data:`ACQUISITION`); the anatomy and everything else stay as drawn.
    """
    check_int("index", index, 0, MAX_PATIENTS - 1)
    check_int("seed", seed, 0, 2**63 - 1)
    check_int("downscale", downscale, 1, 8)
    group = GROUPS[index % len(GROUPS)] if group is None else group
    if group not in GROUPS:
        raise InvalidInputError(None, f"unknown group {group!r}; choose one of {', '.join(GROUPS)}")
    anat = sample_anatomy(np.random.default_rng([seed, index, 0]), group)
    check_contrast(contrast)
    if contrast == "random":
        anat = with_random_contrast(anat, np.random.default_rng([seed, index, 2]))
    if acquisition:
        settings = checked_acquisition(acquisition)
        offset = settings.pop("heart_offset_mm", None)
        anat = replace(anat, **settings)
        if offset is not None:
            centre = (anat.rows / 2 - 0.5, anat.cols / 2 - 0.5)
            anat = replace(
                anat,
                heart_px=(
                    centre[0] + offset[0] / anat.spacing,
                    centre[1] + offset[1] / anat.spacing,
                ),
            )
    if phases is None:
        phase_indices = tuple(range(PHASES))
    elif isinstance(phases, str):
        if phases not in LABELLED_PHASES:
            raise InvalidInputError(
                None, f"phases must be a list, 'ed_es' or 'all', got {phases!r}"
            )
        phase_indices = (0, anat.es_phase) if phases == "ed_es" else tuple(range(PHASES))
    else:
        phase_indices = tuple(sorted({int(p) for p in phases}))
        if not phase_indices or not all(0 <= p < PHASES for p in phase_indices):
            raise InvalidInputError(None, f"phases must be indices in 0..{PHASES - 1}")

    rows, cols = anat.rows // downscale, anat.cols // downscale
    spacing = round(anat.spacing * downscale, 4)
    grid = pixel_grid(anat, rows, cols, spacing, downscale)
    optics = make_optics(anat, rows, cols)
    slices = len(anat.z_slices)
    shape = (len(phase_indices), slices, rows, cols)
    images = np.zeros(shape, np.float32)
    lv = np.zeros(shape, bool)
    myocardium = np.zeros(shape, bool)
    rv = np.zeros(shape, bool)
    endocardium: dict[tuple[int, int], np.ndarray] = {}
    epicardium: dict[tuple[int, int], np.ndarray] = {}
    contour_theta = np.linspace(-math.pi, math.pi, CONTOUR_POINTS, endpoint=False)
    contour_angles = angles_at(anat, contour_theta)

    for s, z in enumerate(anat.z_slices):
        scene = slice_scene(anat, grid, float(z), np.random.default_rng([seed, index, 1, s]))
        base = scene.background**anat.gamma * scene.gain
        for i, phase in enumerate(phase_indices):
            state = heart_state(anat, float(z), phase)
            obj = base.copy()
            window_radii = boundary_radii(anat, state, scene.angles)
            heart = 0.5 * paint_heart(anat, scene, state, window_radii, spacing)
            # slice profile: the slice also sees the heart a third of its thickness either side
            for offset in (-anat.thickness / 3, anat.thickness / 3):
                side = heart_state(anat, float(z) + offset, phase)
                side_radii = boundary_radii(anat, side, scene.angles)
                heart += 0.25 * paint_heart(anat, scene, side, side_radii, spacing)
            obj[scene.window] = np.maximum(heart, 0.0) ** anat.gamma * scene.gain[scene.window]
            images[i, s] = acquire(
                anat, optics, obj, np.random.default_rng([seed, index, 2, s, phase])
            )
            if not state.epi_present:
                continue
            radii = boundary_radii(anat, state, contour_angles)
            epi_points = contour_polygon(
                anat, radii["epi"], contour_theta, scene.centre, spacing, downscale
            )
            epi_mask = contours.fill_contour(epi_points, (rows, cols))
            if state.lv_present:
                endo_points = contour_polygon(
                    anat, radii["endo"], contour_theta, scene.centre, spacing, downscale
                )
                lv[i, s] = contours.fill_contour(endo_points, (rows, cols))
                endocardium[(phase, s)] = endo_points
            epicardium[(phase, s)] = epi_points
            myocardium[i, s] = epi_mask & ~lv[i, s]
            rv_window = (scene.rho < window_radii["rv_cavity"]) & (window_radii["rv_width"] > 0.3)
            rv[i, s][scene.window] = rv_window & ~epi_mask[scene.window]

    orientation = anat.orientation
    heart_row, heart_col = heart_pixel(anat, downscale)
    # the heart's world point lies in the plane of slice position 0, so that
    # SliceLocation = ImagePositionPatient . normal = the slice position
    heart_world = anat.heart_world - (anat.heart_world @ orientation[2]) * orientation[2]
    positions = []
    slice_positions = []
    for z in anat.z_slices:
        slice_position = round(anat.position_offset + float(z), 3)
        corner = (
            heart_world
            - heart_col * spacing * orientation[0]
            - heart_row * spacing * orientation[1]
            + slice_position * orientation[2]
        )
        positions.append(tuple(round(float(c), 4) for c in corner))
        slice_positions.append(slice_position)
    rr_ms = 60000.0 / anat.heart_rate
    number = index + 1
    return PhantomPatient(
        index=index,
        seed=seed,
        patient_id=f"PH{number:05d}01",
        original_id=f"PH-{group}-{number:02d}",
        group=group,
        images=images,
        lv=lv,
        myocardium=myocardium,
        rv=rv,
        phase_indices=phase_indices,
        endocardium=endocardium,
        epicardium=epicardium,
        pixel_spacing_mm=(spacing, spacing),
        slice_thickness_mm=anat.thickness,
        slice_spacing_mm=anat.slice_spacing,
        slice_positions_mm=tuple(slice_positions),
        image_positions_mm=tuple(positions),
        image_orientation=tuple(round(float(c), 6) for c in orientation[:2].ravel()),
        trigger_times_ms=tuple(round(p * rr_ms / PHASES, 2) for p in range(PHASES)),
        heart_rate_bpm=anat.heart_rate,
        ed_phase=0,
        es_phase=anat.es_phase,
        ejection_fraction=round(anat.ef, 3),
        height_cm=anat.height,
        weight_kg=anat.weight,
        downscale=downscale,
    )


def patient_records(
    patient: PhantomPatient, labelled_phases: str = "ed_es", source_prefix: str | None = None
) -> list[SliceRecord]:
    """The patient's labelled slices as records: every slice with an LV at the chosen phases.

    ``labelled_phases`` is ``"ed_es"`` (the two phases Sunnybrook contours) or ``"all"`` (those
    of the 20 that were rendered). Records hold LV, myocardium and RV masks (RV may be empty).
    """
    if labelled_phases not in LABELLED_PHASES:
        raise InvalidInputError(
            None,
            f"labelled_phases must be one of {', '.join(LABELLED_PHASES)}, got {labelled_phases!r}",
        )
    wanted = (
        [p for p in (patient.ed_phase, patient.es_phase) if p in patient.phase_indices]
        if labelled_phases == "ed_es"
        else list(patient.phase_indices)
    )
    prefix = source_prefix or f"phantom(seed={patient.seed})"
    affine = patient.affine()
    records = []
    for s in range(patient.slices):
        for phase in wanted:
            if (phase, s) not in patient.endocardium:
                continue
            i = patient.row(phase)
            name = {patient.ed_phase: ED, patient.es_phase: ES}.get(phase)
            records.append(
                SliceRecord(
                    image=patient.images[i, s],
                    masks={
                        LV: patient.lv[i, s],
                        MYOCARDIUM: patient.myocardium[i, s],
                        RV: patient.rv[i, s],
                    },
                    patient_id=patient.original_id,
                    source=f"{prefix}/{patient.patient_id}/{patient.instance_number(s, phase)}",
                    geometry=Geometry(
                        original_shape=patient.shape,
                        pixel_spacing_mm=patient.pixel_spacing_mm,
                        image_position_mm=patient.image_positions_mm[s],
                        image_orientation=patient.image_orientation,
                        affine=affine,
                        volume_index=s,
                    ),
                    slice_index=s,
                    slice_position_mm=patient.slice_positions_mm[s],
                    phase_index=phase,
                    phase=name,
                    pixel_spacing_mm=patient.pixel_spacing_mm,
                    slice_thickness_mm=patient.slice_thickness_mm,
                    slice_spacing_mm=patient.slice_spacing_mm,
                    group=patient.group,
                )
            )
    return records


def phantom_dataset(
    patients: int = DEFAULT_PATIENTS,
    seed: int = DEFAULT_SEED,
    labelled_phases: str = "ed_es",
    *,
    downscale: int = 1,
) -> Dataset:
    """An in-memory phantom of ``patients`` synthetic patients as a :class:`Dataset`.

    >>> dataset = phantom_dataset(patients=2, seed=0, downscale=4)
    >>> sorted({r.phase for r in dataset}), dataset.patients
    (['ED', 'ES'], ['PH-HF-I-02', 'PH-N-01'])
    """
    check_int("patients", patients, 1, MAX_PATIENTS)
    if labelled_phases not in LABELLED_PHASES:
        raise InvalidInputError(
            None,
            f"labelled_phases must be one of {', '.join(LABELLED_PHASES)}, got {labelled_phases!r}",
        )
    records: list[SliceRecord] = []
    for index in range(patients):
        patient = generate_patient(index, seed, phases=labelled_phases, downscale=downscale)
        records.extend(patient_records(patient, labelled_phases))
    return Dataset(records=records, format="phantom", root=f"phantom(seed={seed})")


def check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(None, f"{name} must be an integer, got {value!r}")
    if not low <= int(value) <= high:
        raise InvalidInputError(None, f"{name} must be in {low}..{high}, got {value}")
