"""The phantom's public data type: one synthetic patient, and its NIfTI geometry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lvseg.data.dicom import dicom_ras_affine
from lvseg.errors import InvalidInputError

PHASES = 20


@dataclass
class PhantomPatient:
    """One synthetic patient: the cine, its labels and its acquisition geometry.

    ``images`` is float32 ``[phase, slice, rows, cols]`` holding the integer intensities written
    to DICOM/NIfTI; ``lv``, ``myocardium`` and ``rv`` are boolean masks of the same shape. Row
    ``i`` of the phase axis is cardiac phase ``phase_indices[i]`` (all 20 unless ``phases`` was
    given). ``endocardium`` / ``epicardium`` map ``(phase, slice)`` to the (x, y) contour polygon
    where that surface cuts the slice. Slice 0 is the most basal.
    """

    index: int
    seed: int
    patient_id: str
    original_id: str
    group: str
    images: np.ndarray
    lv: np.ndarray
    myocardium: np.ndarray
    rv: np.ndarray
    phase_indices: tuple[int, ...]
    endocardium: dict[tuple[int, int], np.ndarray]
    epicardium: dict[tuple[int, int], np.ndarray]
    pixel_spacing_mm: tuple[float, float]
    slice_thickness_mm: float
    slice_spacing_mm: float
    slice_positions_mm: tuple[float, ...]
    image_positions_mm: tuple[tuple[float, float, float], ...]
    image_orientation: tuple[float, float, float, float, float, float]
    trigger_times_ms: tuple[float, ...]
    heart_rate_bpm: int
    ed_phase: int
    es_phase: int
    ejection_fraction: float
    """The nominal EF the anatomy was drawn for (the masks give the measured one)."""
    height_cm: float
    weight_kg: float
    downscale: int = 1

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def slices(self) -> int:
        return int(self.images.shape[1])

    def row(self, phase: int) -> int:
        """The position of cardiac phase ``phase`` on the phase axis of the arrays."""
        try:
            return self.phase_indices.index(phase)
        except ValueError:
            raise InvalidInputError(None, f"phase {phase} was not rendered") from None

    def instance_number(self, slice_index: int, phase: int) -> int:
        """Sunnybrook/DICOM instance number: ``slice * 20 + phase + 1``."""
        return slice_index * PHASES + phase + 1

    def affine(self) -> np.ndarray:
        """NIfTI (RAS+) voxel-to-world matrix for volumes indexed ``[col, row, slice]``."""
        return nifti_affine(self)

    def label_volumes_ml(self) -> tuple[float, float] | None:
        """(EDV, ESV) of the LV masks by disc summation (area x slice spacing), as ``lvseg
        predict`` measures a study; None unless both ED and ES were rendered."""
        if not {self.ed_phase, self.es_phase} <= set(self.phase_indices):
            return None
        voxel_ml = float(np.prod(self.pixel_spacing_mm)) * self.slice_spacing_mm / 1000.0
        ed, es = (
            float(self.lv[self.row(p)].sum()) * voxel_ml for p in (self.ed_phase, self.es_phase)
        )
        return ed, es


def nifti_affine(patient: PhantomPatient) -> np.ndarray:
    """RAS+ affine of volumes indexed [col, row, slice] (records and NIfTI files both use it)."""
    orientation = np.asarray(patient.image_orientation, float)
    # The slices are stacked along the plane's normal, one slice spacing apart.
    step = np.cross(orientation[:3], orientation[3:]) * patient.slice_spacing_mm
    return dicom_ras_affine(
        orientation, patient.image_positions_mm[0], patient.pixel_spacing_mm, step
    )
