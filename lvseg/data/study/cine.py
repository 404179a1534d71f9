"""One cine study, as :func:`lvseg.data.study.read_study` gives it, and the names studies get.

The voxel grid of :meth:`CineStudy.to_nifti` is x = cols, y = rows, z = slices, t = phases, that
is ``volume.transpose(3, 2, 0, 1)``. Its affine, by input:

- NIfTI: the file's own (scaled to mm where the header says metres or microns), and
  :meth:`~CineStudy.to_nifti` writes through a copy of the source header, so the output has the
  input's affine, qform/sform codes, shape and number of dimensions: it undoes exactly what the
  reader did.
- DICOM: the (col, row, slice) voxels mapped to RAS+ world mm (the NIfTI convention), from the
  first slice's position and orientation and the step between slices
  (:func:`lvseg.data.dicom.dicom_ras_affine`). Each voxel then sits exactly over its DICOM pixel
  when slices are evenly spaced on a line; where they are not, a note says how far off the worst
  slice is.
- Image files: the identity (no geometry is known).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np

KINDS = ("dicom", "nifti", "image")
"""What a study was read from: :attr:`CineStudy.kind`."""


@dataclass
class CineStudy:
    """One short-axis stack over the cardiac cycle (or a single image), ready for prediction.

    ``images`` is float32 (slices, phases, rows, cols) in source intensity units; slices ascend
    along the slice normal, phases follow the cardiac cycle. Geometry is None where the source
    does not store it. ``to_nifti`` writes a volume of the same shape (masks, probabilities) over
    the source (see the module docstring for the geometry).
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


def _frame_interval_ms(times: np.ndarray | None) -> float | None:
    """The median time between phases (for a NIfTI header), None where unknown."""
    if times is None or times.shape[1] < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        gaps = np.diff(np.nanmean(times, axis=0))
    gaps = gaps[np.isfinite(gaps) & (gaps > 0)]
    return float(np.median(gaps)) if gaps.size else None


def safe_name(text: str) -> str:
    """``text`` with anything but letters, digits, '.', '_' and '-' turned into '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "study"


def unique_names(names: list[str]) -> list[str]:
    """The names made file-safe, and unique by a ``_1``, ``_2`` suffix where they repeat."""
    counts = Counter(safe_name(name) for name in names)
    seen: Counter[str] = Counter()
    unique = []
    for name in names:
        name = safe_name(name)
        seen[name] += 1
        unique.append(f"{name}_{seen[name]}" if counts[name] > 1 else name)
    return unique
