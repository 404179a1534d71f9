"""The phantom as labelled 2D slices: records of one patient, or an in-memory dataset."""

from __future__ import annotations

from lvseg.data.phantom.generate import (
    DEFAULT_PATIENTS,
    DEFAULT_SEED,
    LABELLED_PHASES,
    MAX_PATIENTS,
    check_int,
    generate_patient,
)
from lvseg.data.phantom.patient import PhantomPatient
from lvseg.data.records import ED, ES, LV, MYOCARDIUM, RV, Dataset, Geometry, SliceRecord
from lvseg.errors import InvalidInputError


def patient_records(
    patient: PhantomPatient, labelled_phases: str = "ed_es", source_prefix: str | None = None
) -> list[SliceRecord]:
    """The patient's labelled slices as records: every slice with an LV at the chosen phases.

    ``labelled_phases`` is ``"ed_es"`` (the two phases Sunnybrook contours) or ``"all"`` (those
    of the 20 that were rendered). Records hold LV, myocardium and RV masks (RV may be empty).
    """
    _check_labelled_phases(labelled_phases)
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
                        source_pixel_spacing_mm=patient.pixel_spacing_mm,
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
    _check_labelled_phases(labelled_phases)
    records: list[SliceRecord] = []
    for index in range(patients):
        patient = generate_patient(index, seed, phases=labelled_phases, downscale=downscale)
        records.extend(patient_records(patient, labelled_phases))
    return Dataset(records=records, format="phantom", root=f"phantom(seed={seed})")


def _check_labelled_phases(labelled_phases: str) -> None:
    if labelled_phases not in LABELLED_PHASES:
        raise InvalidInputError(
            None,
            f"labelled_phases must be one of {', '.join(LABELLED_PHASES)}, got {labelled_phases!r}",
        )
