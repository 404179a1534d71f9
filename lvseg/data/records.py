"""The one record type that flows from every reader to every consumer: a labelled 2D slice.

Readers differ, records do not. A :class:`SliceRecord` carries the image, the masks of the
structures the source labels, and everything needed to put a prediction back where it belongs
(:class:`Geometry`). A :class:`Dataset` is a list of records plus the files a reader skipped.

>>> import numpy as np
>>> image = np.zeros((4, 4), np.float32)
>>> lv = np.zeros((4, 4), bool); lv[1:3, 1:3] = True
>>> record = SliceRecord(image=image, masks={LV: lv}, patient_id="P1", source="p1.png",
...                      geometry=Geometry(original_shape=(4, 4)))
>>> record.structures, record.key
(('lv',), 'P1/s-/p-')
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from lvseg.errors import Skipped

LV = "lv"
"""LV blood pool: the filled endocardial contour (papillary muscles count as blood pool)."""
MYOCARDIUM = "myocardium"
"""LV myocardium: filled epicardial contour minus filled endocardial contour."""
RV = "rv"
"""Right-ventricular blood pool."""
MASK_STRUCTURES = (LV, MYOCARDIUM, RV)
"""Every structure a record's masks may hold (each source labels some or all), in the channel
order of stacked masks."""

ED = "ED"
ES = "ES"


@dataclass
class Geometry:
    """Where the slice's pixels sit in the source, so predictions can be mapped back.

    ``original_shape`` and ``source_pixel_spacing_mm`` describe the image as read from the source
    (resampling changes :attr:`SliceRecord.pixel_spacing_mm`, never these); the preprocessing
    fills ``zoom`` (resampling factor per axis, new/old) and ``crop_box`` (row0, row1, col0, col1
    in resampled pixels) when it changes the image.
    """

    original_shape: tuple[int, int]
    source_pixel_spacing_mm: tuple[float, float] | None = None
    image_position_mm: tuple[float, float, float] | None = None
    image_orientation: tuple[float, float, float, float, float, float] | None = None
    affine: np.ndarray | None = None
    """4x4 voxel-to-world matrix of the source volume (NIfTI), with ``volume_index`` the slice."""
    volume_index: int | None = None
    zoom: tuple[float, float] = (1.0, 1.0)
    crop_box: tuple[int, int, int, int] | None = None


@dataclass
class SliceRecord:
    """One labelled 2D short-axis slice.

    ``image`` is float32 (rows, cols) in source intensity units; ``masks`` maps structure names
    (:data:`LV`, :data:`MYOCARDIUM`, :data:`RV`) to boolean arrays of the same shape, for the
    structures the source labels on this slice only. ``pixel_spacing_mm`` is the (row, col) spacing
    of ``image`` as it is now (after any resampling), None where the source does not store it.
    """

    image: np.ndarray
    masks: dict[str, np.ndarray]
    patient_id: str
    source: str
    geometry: Geometry
    slice_index: int | None = None
    slice_position_mm: float | None = None
    phase_index: int | None = None
    phase: str | None = None
    """"ED", "ES" or None where unknown."""
    pixel_spacing_mm: tuple[float, float] | None = None
    slice_thickness_mm: float | None = None
    slice_spacing_mm: float | None = None
    group: str | None = None
    """Pathology group where known (e.g. "HF-I", "HF-NI", "HYP", "N", or ACDC's "DCM")."""
    annotation_sources: tuple[str, ...] = ()

    @property
    def structures(self) -> tuple[str, ...]:
        return tuple(name for name in MASK_STRUCTURES if name in self.masks)

    @property
    def key(self) -> str:
        """A unique, readable id within a dataset: patient, slice and phase."""
        slice_part = "-" if self.slice_index is None else str(self.slice_index)
        phase_part = "-" if self.phase_index is None else str(self.phase_index)
        return f"{self.patient_id}/s{slice_part}/p{phase_part}"

    def replace(self, **changes) -> SliceRecord:
        return replace(self, **changes)


@dataclass
class Dataset:
    """The records a reader produced, in a stable order, and the files it skipped."""

    records: list[SliceRecord]
    format: str
    root: str
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[SliceRecord]:
        return iter(self.records)

    def __getitem__(self, index: int) -> SliceRecord:
        return self.records[index]

    @property
    def patients(self) -> list[str]:
        return sorted({record.patient_id for record in self.records})

    def by_patient(self) -> dict[str, list[SliceRecord]]:
        grouped: dict[str, list[SliceRecord]] = defaultdict(list)
        for record in self.records:
            grouped[record.patient_id].append(record)
        return dict(sorted(grouped.items()))

    def subset(self, patients: Iterable[str]) -> Dataset:
        """The records of the given patients, in the same order."""
        wanted = set(patients)
        records = [record for record in self.records if record.patient_id in wanted]
        return Dataset(records=records, format=self.format, root=self.root, skipped=[])


def label_ed_es_by_area(records: Sequence[SliceRecord]) -> list[SliceRecord]:
    """Name the contoured phases ED and ES per patient, where the source does not say.

    Sunnybrook contours exist at two phases per patient. End-diastole is the phase with the larger
    LV blood-pool area, summed over the slice positions contoured at both phases (a geometric
    rule, independent of how instances were numbered). Patients with one or more than two labelled
    phases keep ``phase=None``. Records that already have a phase are left as they are.
    """
    by_patient: dict[str, list[SliceRecord]] = defaultdict(list)
    for record in records:
        by_patient[record.patient_id].append(record)
    phase_of: dict[tuple[str, int], str] = {}
    for patient_id, patient_records in by_patient.items():
        lv_records = [r for r in patient_records if LV in r.masks and r.phase_index is not None]
        phases = sorted({r.phase_index for r in lv_records})
        if len(phases) != 2:
            continue
        slices_at = {p: {r.slice_index for r in lv_records if r.phase_index == p} for p in phases}
        common = slices_at[phases[0]] & slices_at[phases[1]]
        areas = {
            p: sum(
                float(r.masks[LV].sum())
                for r in lv_records
                if r.phase_index == p and (not common or r.slice_index in common)
            )
            for p in phases
        }
        ed_phase = max(phases, key=lambda p: (areas[p], -p))
        for p in phases:
            phase_of[(patient_id, p)] = ED if p == ed_phase else ES
    return [
        record
        if record.phase is not None or (record.patient_id, record.phase_index) not in phase_of
        else record.replace(phase=phase_of[(record.patient_id, record.phase_index)])
        for record in records
    ]
