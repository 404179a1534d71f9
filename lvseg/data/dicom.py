"""Reading DICOM files: one place for what every DICOM reader needs (the Sunnybrook reader, single
slice inputs, whole cine studies): recognising a file, reading it with every failure turned into
one :class:`InvalidInputError` line, its pixels in modality units, and the few tags read as
numbers.

>>> positive_float("1.5"), positive_float("-2"), tuple_of_floats(["1", "2"], 2)
(1.5, None, (1.0, 2.0))
>>> instance_number("12"), instance_number("twelve"), instance_number("nan"), instance_number(1e30)
(12, None, None, None)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lvseg.errors import InvalidInputError

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""DICOM patient coordinates are LPS (x to the patient's left, y to the back); NIfTI's world is
RAS+ (x to the right, y to the front): the same axes with x and y negated."""


def is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def read_dicom(path: Path, *, headers_only: bool = False):
    """Read one DICOM file's header and data (only the header with ``headers_only``), turning
    every failure into InvalidInputError."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Sunnybrook UIDs are slightly off-standard
            return pydicom.dcmread(path, stop_before_pixels=headers_only)
    except InvalidDicomError:
        raise InvalidInputError(path, "not a DICOM file (no DICM preamble)") from None
    except OSError as error:
        raise InvalidInputError(path, f"cannot read file ({error.strerror or error})") from None
    except Exception as error:  # noqa: BLE001 - pydicom raises many types on corrupt input
        raise InvalidInputError(path, f"corrupt DICOM file ({type(error).__name__})") from None


def dicom_pixels(dicom, path: Path) -> np.ndarray:
    """The image as float32 in modality units (RescaleSlope/Intercept applied)."""
    from pydicom.pixels import apply_modality_lut

    if "PixelData" not in dicom:
        raise InvalidInputError(path, "DICOM file has no pixel data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = apply_modality_lut(dicom.pixel_array, dicom)
    except (NotImplementedError, RuntimeError) as error:
        syntax = getattr(getattr(dicom, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", None) or str(syntax)
        raise InvalidInputError(
            path, f"cannot decode pixel data (transfer syntax {name}: {type(error).__name__})"
        ) from None
    except Exception as error:  # noqa: BLE001 - truncated or inconsistent pixel data
        raise InvalidInputError(
            path, f"cannot decode pixel data ({type(error).__name__})"
        ) from None
    if pixels.ndim != 2:
        raise InvalidInputError(path, f"expected one 2D frame, got pixel array {pixels.shape}")
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    if not np.isfinite(pixels).all():
        slope, intercept = tag(dicom, "RescaleSlope"), tag(dicom, "RescaleIntercept")
        raise InvalidInputError(
            path,
            f"pixel values are not finite (RescaleSlope {slope}, RescaleIntercept {intercept})",
        )
    return pixels


def tag(dicom, name: str):
    """The value of the tag ``name``, None where it is absent or pydicom cannot turn its bytes
    into a value (an IS of "Infinity" raises OverflowError, junk text ValueError): a reader
    treats a junk tag as a missing one, and checks what it needs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dicom.get(name)
    except (ValueError, TypeError, OverflowError, ArithmeticError):
        return None


def positive_float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def positive_int(value) -> int | None:
    number = positive_float(value)
    return int(number) if number else None


MAX_INSTANCE = 2**31 - 1
"""InstanceNumber is an IS (integer string) of at most 12 characters; beyond a signed 32-bit
integer it is junk, whatever Python could hold."""


def instance_number(value) -> int | None:
    """A DICOM InstanceNumber as a positive integer; None where it is absent, not a whole
    number, not finite or out of range (junk text, NaN, 1e30...)."""
    number = positive_float(value)
    if number is None or number != int(number) or number > MAX_INSTANCE:
        return None
    return int(number)


def tuple_of_floats(value, length: int):
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == length and all(np.isfinite(numbers)) else None


def finite_number(value) -> float | None:
    """A finite number from a DICOM value, None where it is absent or does not parse."""
    found = tuple_of_floats([value], 1)
    return found[0] if found else None


@dataclass(frozen=True)
class SliceTags:
    """The tags that place one image in a cine stack, as the readers use them: each None where
    it is absent, junk or out of range (:func:`SliceTags.of`)."""

    instance_number: int | None
    cardiac_images: int | None
    """CardiacNumberOfImages: the phases of the cine."""
    image_position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None
    slice_location: float | None
    pixel_spacing: tuple[float, float] | None
    """(row, col) spacing in mm."""
    slice_thickness: float | None
    slice_spacing: float | None
    """SpacingBetweenSlices."""

    @classmethod
    def of(cls, dicom) -> SliceTags:
        return cls(
            instance_number=instance_number(tag(dicom, "InstanceNumber")),
            cardiac_images=positive_int(tag(dicom, "CardiacNumberOfImages")),
            image_position=tuple_of_floats(tag(dicom, "ImagePositionPatient"), 3),
            orientation=tuple_of_floats(tag(dicom, "ImageOrientationPatient"), 6),
            slice_location=finite_number(tag(dicom, "SliceLocation")),
            pixel_spacing=pixel_spacing(dicom),
            slice_thickness=positive_float(tag(dicom, "SliceThickness")),
            slice_spacing=positive_float(tag(dicom, "SpacingBetweenSlices")),
        )


def pixel_spacing(dicom) -> tuple[float, float] | None:
    spacing = tuple_of_floats(tag(dicom, "PixelSpacing"), 2)
    return spacing if spacing and min(spacing) > 0 else None


def dicom_ras_affine(
    orientation: Sequence[float],
    first_position_mm: Sequence[float],
    pixel_spacing_mm: tuple[float, float],
    slice_step_mm: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """The 4x4 voxel-to-world matrix, RAS+ in mm (the NIfTI convention), of a DICOM stack's
    volume indexed ``[col, row, slice]``.

    ``orientation`` is the ImageOrientationPatient (row direction r, then column direction c),
    ``first_position_mm`` the first slice's ImagePositionPatient (IPP), ``pixel_spacing_mm`` the
    PixelSpacing (row spacing dr, column spacing dc) and ``slice_step_mm`` the LPS vector from one
    slice to the next: ``LPS(col, row, k) = IPP + col * dc * r + row * dr * c + k * step``,
    turned into RAS+ by :data:`LPS_TO_RAS`.
    """
    orientation = np.asarray(orientation, float)
    lps = np.eye(4)
    lps[:3, 0] = orientation[:3] * pixel_spacing_mm[1]  # voxel x = column, along the row direction
    lps[:3, 1] = orientation[3:] * pixel_spacing_mm[0]  # voxel y = row, along the column direction
    lps[:3, 2] = slice_step_mm
    lps[:3, 3] = first_position_mm
    return LPS_TO_RAS @ lps
