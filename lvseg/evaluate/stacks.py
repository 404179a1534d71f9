"""Per-patient short-axis stacks at ED and ES, from predicted and reference masks, to the clinical
measures of :mod:`lvseg.evaluate.clinical` (EDV, ESV, SV, EF, LV mass) and their agreement.

A patient qualifies when its labelled slices cover the LV at both phases: at least
:data:`MIN_SLICES` slices with an LV reference at ED and at ES. Predicted and reference volumes
are summed over the **same** slices (those with a reference), so the comparison is about the
segmentation, not about which slices were contoured.

Units: with pixel spacing and slice spacing known, areas are in mm^2 and volumes in ml. Without
them (the Sunnybrook PNGs store no spacing), areas are in pixels and each slice counts as one
unit of thickness: the volumes are then *relative* and only the ejection fraction, a ratio in
which the unknown units cancel, is meaningful. Slice spacing is the records' own
``slice_spacing_mm``, else the median gap between their slice positions, else their thickness.

LV mass needs a myocardium reference at ED (Sunnybrook's o-contours); the networks segment the
blood pool only, so the predicted mass is not available.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lvseg.data.records import ED, ES, LV, MYOCARDIUM, SliceRecord
from lvseg.evaluate import clinical

MIN_SLICES = 3
MEASURES = ("edv", "esv", "sv", "ef", "mass_g")


def _slice_spacing_mm(records: Sequence[SliceRecord]) -> float | None:
    spacings = [r.slice_spacing_mm for r in records if r.slice_spacing_mm]
    if spacings:
        return float(statistics.median(spacings))
    positions = sorted({r.slice_position_mm for r in records if r.slice_position_mm is not None})
    gaps = [b - a for a, b in zip(positions, positions[1:], strict=False) if b - a > 1e-3]
    if gaps:
        return float(statistics.median(gaps))
    thickness = [r.slice_thickness_mm for r in records if r.slice_thickness_mm]
    return float(statistics.median(thickness)) if thickness else None


def _location(record: SliceRecord) -> float:
    if record.slice_position_mm is not None:
        return float(record.slice_position_mm)
    return float(record.slice_index if record.slice_index is not None else 0)


@dataclass
class ClinicalMeasures:
    """EDV, ESV, SV (ml, or relative units), EF (a fraction) and LV mass (g) of one stack."""

    edv: float
    esv: float
    sv: float
    ef: float | None
    mass_g: float | None


@dataclass
class PhaseStack:
    """One phase's slices along the stack: location, reference and predicted LV area."""

    positions: list[float]
    reference_area: list[float]
    predicted_area: list[float]


@dataclass
class PatientVolumes:
    """One patient's reference and predicted measures, and the stacks they come from."""

    patient_id: str
    slice_spacing_mm: float | None
    """None: relative units (the spacing is unknown for some patient)."""
    reference: ClinicalMeasures
    predicted: ClinicalMeasures
    stack: dict[str, PhaseStack]
    """``{"ED": ..., "ES": ...}``."""


@dataclass
class SkippedPatient:
    patient_id: str
    reason: str


@dataclass
class Agreements:
    """The agreement of predicted with reference values of every measure (None where no
    patient has both, or where relative volumes make it meaningless)."""

    edv: clinical.Agreement | None
    esv: clinical.Agreement | None
    sv: clinical.Agreement | None
    ef: clinical.Agreement | None
    mass_g: clinical.Agreement | None


@dataclass
class ClinicalSection:
    """The ``clinical`` block of ``metrics.json``."""

    volume_units: str
    """``"ml"``, or ``"relative"`` where a pixel or slice spacing is unknown."""
    note: str
    patients: list[PatientVolumes]
    agreement: Agreements
    skipped: list[SkippedPatient]


def _measures(
    lv_areas: Mapping[str, Sequence[float]], myo_areas: Sequence[float] | None, spacing: float
) -> ClinicalMeasures:
    # with spacing 1 and areas in pixels, disc_volume_ml is in relative units (x 1/1000)
    edv = clinical.disc_volume_ml(lv_areas[ED], spacing)
    esv = clinical.disc_volume_ml(lv_areas[ES], spacing)
    return ClinicalMeasures(
        edv=edv,
        esv=esv,
        sv=clinical.stroke_volume(edv, esv),
        ef=clinical.ejection_fraction(edv, esv),
        mass_g=None if myo_areas is None else clinical.lv_mass_g(myo_areas, spacing),
    )


def clinical_section(
    records: Sequence[SliceRecord], predicted: Mapping[str, np.ndarray]
) -> ClinicalSection | None:
    """The ``clinical`` block of ``metrics.json`` (None when no record has a phase).

    ``predicted`` maps ``record.key`` to the predicted LV mask on the record's own grid.
    """
    by_patient: dict[str, list[SliceRecord]] = defaultdict(list)
    for record in records:
        if record.phase in (ED, ES) and LV in record.masks and record.key in predicted:
            by_patient[record.patient_id].append(record)
    if not by_patient:
        return None
    candidates: list[tuple[str, list[SliceRecord], float | None, bool]] = []
    skipped: list[SkippedPatient] = []
    for patient, members in sorted(by_patient.items()):
        counts = {phase: sum(r.phase == phase for r in members) for phase in (ED, ES)}
        if min(counts.values()) < MIN_SLICES:
            reason = (
                f"{counts[ED]} ED and {counts[ES]} ES slices with a reference LV; "
                f"a volume needs at least {MIN_SLICES} at each phase"
            )
            skipped.append(SkippedPatient(patient, reason))
            continue
        spacing = _slice_spacing_mm(members)
        in_mm = spacing is not None and all(r.pixel_spacing_mm is not None for r in members)
        candidates.append((patient, members, spacing, in_mm))
    relative = any(not in_mm for *_, in_mm in candidates)
    patients = []
    for patient, members, spacing, _ in candidates:
        patients.append(_patient(patient, members, predicted, None if relative else spacing))
    agreement = {}
    for measure in MEASURES:
        pairs = [
            (getattr(p.predicted, measure), getattr(p.reference, measure))
            for p in patients
            if getattr(p.predicted, measure) is not None
            and getattr(p.reference, measure) is not None
        ]
        usable = measure == "ef" or not relative
        agreement[measure] = (
            clinical.agreement(*zip(*pairs, strict=True)) if pairs and usable else None
        )
    note = (
        "Volumes by disc summation (area x slice spacing) over the slices with a reference LV; "
        "predicted and reference use the same slices."
    )
    if relative:
        note += (
            " Pixel or slice spacing is unknown, so volumes are relative (pixels x slices / 1000)"
            " and only the ejection fraction is meaningful."
        )
    if any(p.predicted.mass_g is None and p.reference.mass_g for p in patients):
        note += " LV mass: reference only (the model segments the blood pool, not the myocardium)."
    return ClinicalSection(
        volume_units="relative" if relative else "ml",
        note=note,
        patients=patients,
        agreement=Agreements(**agreement),
        skipped=skipped,
    )


def _patient(
    patient: str,
    members: Sequence[SliceRecord],
    predicted: Mapping[str, np.ndarray],
    spacing: float | None,
) -> PatientVolumes:
    """One patient's stacks, areas and measures; ``spacing`` None means relative units."""

    def area(record: SliceRecord, mask: np.ndarray) -> float:
        pixels = float(np.count_nonzero(mask))
        if spacing is None:
            return pixels
        row_mm, col_mm = record.pixel_spacing_mm
        return pixels * row_mm * col_mm

    stack: dict[str, PhaseStack] = {}
    reference_areas: dict[str, list[float]] = {}
    predicted_areas: dict[str, list[float]] = {}
    for phase in (ED, ES):
        at_phase = sorted((r for r in members if r.phase == phase), key=_location)
        reference_areas[phase] = [area(r, r.masks[LV]) for r in at_phase]
        predicted_areas[phase] = [area(r, predicted[r.key]) for r in at_phase]
        positions = [_location(r) for r in at_phase]
        stack[phase] = PhaseStack(positions, reference_areas[phase], predicted_areas[phase])
    myocardium = [r for r in members if r.phase == ED and MYOCARDIUM in r.masks]
    myo_areas = (
        [area(r, r.masks[MYOCARDIUM]) for r in myocardium]
        if len(myocardium) >= MIN_SLICES and spacing is not None
        else None
    )
    thickness = 1.0 if spacing is None else spacing
    return PatientVolumes(
        patient_id=patient,
        slice_spacing_mm=spacing,
        reference=_measures(reference_areas, myo_areas, thickness),
        predicted=_measures(predicted_areas, None, thickness),
        stack=stack,
    )
