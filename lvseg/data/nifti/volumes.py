"""NIfTI volumes read through nibabel with every failure an :class:`InvalidInputError`, and
the geometry of their headers (shape, voxel spacing in mm, affine, slice positions).

Memory: label volumes are read whole in their stored dtype (small integers); of a 4D image,
only the frames that carry labels are read, one at a time, through nibabel's lazy ``dataobj``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener

from lvseg.data.nifti.labels import format_labels
from lvseg.errors import InvalidInputError

MAX_VOLUME_BYTES = 2 * 1024**3
"""Volumes whose header promises more voxel data than this are refused, not allocated."""


@contextlib.contextmanager
def _nibabel_errors(path: Path, what: str) -> Iterator[None]:
    """Turn whatever nibabel, gzip or numpy raise while reading into an InvalidInputError."""
    try:
        yield
    except InvalidInputError:
        raise
    except Exception as error:  # library errors of every kind end here
        detail = str(error) or type(error).__name__
        raise InvalidInputError(path, f"cannot read {what}: {detail}") from None


def load_nifti(path: Path) -> nib.Nifti1Image:
    """The NIfTI image at ``path``, header checked, voxel data not yet read."""
    with _nibabel_errors(path, "NIfTI header"):
        image = nib.load(path, mmap=False)
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InvalidInputError(path, f"not a NIfTI image ({type(image).__name__})")
    with _nibabel_errors(path, "NIfTI header"):
        dtype = np.dtype(image.header.get_data_dtype())
        shape = tuple(int(n) for n in image.shape)
        offset = int(image.dataobj.offset)
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise InvalidInputError(path, f"unsupported voxel data type {dtype}")
    if not shape or min(shape) < 1:
        raise InvalidInputError(path, f"empty volume of shape {shape}")
    size = math.prod(shape) * dtype.itemsize
    if size > MAX_VOLUME_BYTES:
        raise InvalidInputError(
            path, f"header promises {size} bytes of voxel data, over the {MAX_VOLUME_BYTES} limit"
        )
    if path.name.lower().endswith(".nii"):
        stored = path.stat().st_size
        if stored < offset + size:
            raise InvalidInputError(
                path, f"truncated: header promises {offset + size} bytes, file holds {stored}"
            )
    return image


def nifti_shape(image: nib.Nifti1Image, path: Path) -> tuple[int, ...]:
    """The volume's shape without trailing length-1 axes beyond the third; 3D or 4D only."""
    shape = tuple(int(n) for n in image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in (3, 4):
        raise InvalidInputError(
            path, f"expected a 3D or 4D volume, got shape {format_shape(shape)}"
        )
    return shape


def format_shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def nifti_zooms(image: nib.Nifti1Image, path: Path) -> tuple[float, float, float]:
    """Voxel spacing along the three spatial axes, in mm.

    nibabel quietly turns a stored spacing of 0 into 1 (and -s into s) when it loads a header, so
    the stored values are read again, unchecked, to refuse zeros rather than invent a spacing.
    """
    with _nibabel_errors(path, "voxel spacing"):
        zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
        with ImageOpener(path) as handle:
            stored = type(image.header).from_fileobj(handle, check=False)["pixdim"][1:4]
    stored_zooms = tuple(float(z) for z in stored)
    if any(z == 0 for z in stored_zooms):
        zooms = stored_zooms
    if len(zooms) < 3 or not all(math.isfinite(z) and z > 0 for z in zooms):
        raise InvalidInputError(path, f"voxel spacing {zooms} is not positive and finite")
    # Stored as float32: 1.37 reads 1.3700000047683716; a micrometre is far below any voxel.
    return tuple(round(z * mm_per_unit_of(image), 6) for z in zooms)  # type: ignore[return-value]


def mm_per_unit_of(image: nib.Nifti1Image) -> float:
    """Millimetres per spatial unit of the header (xyzt_units; unknown is taken as mm)."""
    try:
        unit = image.header.get_xyzt_units()[0]
    except Exception:  # an unknown unit code is read as mm, as most tools do
        return 1.0
    return {"meter": 1000.0, "micron": 0.001}.get(unit, 1.0)


def nifti_affine(image: nib.Nifti1Image, path: Path) -> np.ndarray:
    with _nibabel_errors(path, "affine"):
        affine = np.array(image.affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise InvalidInputError(path, "the affine (qform/sform) is not a finite 4x4 matrix")
    return affine


def slice_positions_of(affine: np.ndarray, depth: int, thickness_mm: float) -> list[float]:
    """Each slice's origin projected on the slice normal; ``k * thickness`` if degenerate."""
    axes = affine[:3, :3]
    normal = np.cross(axes[:, 0], axes[:, 1])
    length = float(np.linalg.norm(normal))
    along = float(normal @ axes[:, 2]) if length > 0 else 0.0
    if not math.isfinite(length) or length == 0 or along == 0:
        return [k * thickness_mm for k in range(depth)]
    normal = normal / length * (1.0 if along > 0 else -1.0)
    origin = float(normal @ affine[:3, 3])
    step = float(normal @ axes[:, 2])
    return [round(origin + k * step, 6) for k in range(depth)]


def read_labels(image: nib.Nifti1Image, path: Path, mapping: dict[int, str]) -> np.ndarray:
    """The whole label volume as integers, checked against the mapping."""
    shape = nifti_shape(image, path)
    with _nibabel_errors(path, "label volume"):
        data = np.asanyarray(image.dataobj).reshape(shape)
    if data.dtype.kind == "f":
        if not np.isfinite(data).all() or not (data == np.round(data)).all():
            raise InvalidInputError(path, "label values are not integers")
        data = data.astype(np.int64)
    elif data.dtype.kind not in "biu":
        raise InvalidInputError(path, f"label values are not integers ({data.dtype})")
    values = np.unique(data)
    unexpected = [int(v) for v in values if v != 0 and int(v) not in mapping]
    if unexpected:
        shown = ", ".join(str(v) for v in unexpected[:8]) + (" ..." if len(unexpected) > 8 else "")
        raise InvalidInputError(
            path, f"unexpected label values {shown} (expected 0 or {format_labels(mapping)})"
        )
    return data


def read_frame(
    image: nib.Nifti1Image, path: Path, frame: int | None, shape: tuple[int, ...]
) -> np.ndarray:
    """The whole 3D volume (``frame=None``) or one frame of a 4D one, as read from disk."""
    full_ndim = len(image.shape)
    if frame is None:
        index: tuple = (slice(None),) * 3 + (0,) * (full_ndim - 3)
    else:
        index = (slice(None),) * 3 + (frame,) + (0,) * (full_ndim - 4)
    with _nibabel_errors(path, "image volume" if frame is None else f"frame {frame}"):
        data = np.asarray(image.dataobj[index])
    if data.dtype.kind not in "biuf":
        raise InvalidInputError(path, f"unsupported voxel data type {data.dtype}")
    return data.reshape(shape[:3])


@dataclass
class NiftiVolume:
    """An image volume opened and its header checked: what training and prediction both read."""

    image: nib.Nifti1Image
    path: Path
    shape: tuple[int, ...]
    zooms: tuple[float, float, float]
    """Voxel spacing in mm."""
    affine: np.ndarray
    """The voxel-to-world matrix as stored (in the header's unit)."""
    affine_mm: np.ndarray
    """The same with its rows scaled to mm."""
    slice_positions_mm: list[float]

    def frame(self, frame: int | None) -> np.ndarray:
        """The whole 3D volume (``frame=None``) or one frame of a 4D one; see :func:`read_frame`."""
        return read_frame(self.image, self.path, frame, self.shape)


def open_volume(path: Path) -> NiftiVolume:
    """Load the image at ``path`` and read its geometry, each step's failure an
    :class:`InvalidInputError`; no voxel data is read yet."""
    image = load_nifti(path)
    shape = nifti_shape(image, path)
    zooms = nifti_zooms(image, path)
    affine = nifti_affine(image, path)
    affine_mm = affine.copy()
    affine_mm[:3] *= mm_per_unit_of(image)
    positions = slice_positions_of(affine_mm, shape[2], zooms[2])
    return NiftiVolume(image, path, shape, zooms, affine, affine_mm, positions)
