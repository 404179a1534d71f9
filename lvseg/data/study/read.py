"""Reading whole cine studies for prediction: each frame of a short-axis stack, its geometry,
no labels. :func:`read_study` dispatches on the path:

- **DICOM folder** (searched recursively; hidden files and folders are ignored): headers are read
  without pixels, files are grouped into studies by (PatientID, StudyInstanceUID), and in each
  study the short-axis cine is picked (:mod:`.stacks`). One study per (PatientID,
  StudyInstanceUID), sorted by patient id.
- **A single DICOM file**: one frame, a 1 x 1 study, cine or not.
- **NIfTI file** (``.nii``, ``.nii.gz``): 3D (x, y, z) gives one phase, 4D (x, y, z, t) t phases;
  pixels are oriented as :mod:`lvseg.data.nifti` orients training data
  (``image = volume[:, :, k].T``), so a model sees what it was trained on.
- **Image files** (PNG, TIFF, BMP, JPEG; one file, or a folder holding no DICOM and no NIfTI):
  one 1 x 1 study per file, without spacing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np

from lvseg.data.dicom import is_dicom_file
from lvseg.data.files import walk
from lvseg.data.folders import DEFAULT_PATTERN, IMAGE_SUFFIXES, load_grey, match_name
from lvseg.data.nifti import open_volume, split_nifti_name
from lvseg.data.study.cine import CineStudy, safe_name, unique_names
from lvseg.data.study.dicom_folder import Skips, read_dicom_file, read_dicom_folder
from lvseg.errors import InvalidInputError, Skipped
from lvseg.progress import track

NOT_AN_INPUT = "not a DICOM folder, NIfTI file or image file"
_TIME_UNIT_MS = {"sec": 1000.0, "msec": 1.0, "usec": 0.001}


def read_study(
    path: str | Path, *, skip_invalid: bool = False, skipped: list[Skipped] | None = None
) -> list[CineStudy]:
    """Every cine study under ``path`` (see the module docstring for what is read, and how).

    Raises :class:`InvalidInputError` naming the file or folder for anything unreadable; with
    ``skip_invalid`` see :func:`iter_studies`.
    """
    return list(iter_studies(path, skip_invalid=skip_invalid, skipped=skipped))


def iter_studies(
    path: str | Path, *, skip_invalid: bool = False, skipped: list[Skipped] | None = None
) -> Iterator[CineStudy]:
    """The studies of :func:`read_study` one at a time: all headers are read first (so names
    are unique and a folder with no cine fails at once), a study's pixels when it is reached,
    so a folder of many studies never sits in memory whole.

    ``skip_invalid`` (DICOM folders): a file whose header or pixels cannot be read, or that
    does not fit its stack (no slice position, another image size), is left out and the stack
    made from the others; a study with no usable short-axis cine is left out whole. Each is
    appended to ``skipped``; a folder where nothing is left is still an error.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(path, "no such file or folder")
    if path.is_file():
        if split_nifti_name(path.name) is not None:
            yield _read_nifti(path)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            yield from _named([_read_image(path)])
        elif is_dicom_file(path):
            yield from _named([read_dicom_file(path)])
        else:
            raise InvalidInputError(path, NOT_AN_INPUT)
        return
    if not path.is_dir():
        raise InvalidInputError(path, NOT_AN_INPUT)
    dicoms, niftis, pictures = _scan(path)
    if dicoms:
        skips = Skips(skip_invalid, [] if skipped is None else skipped)
        yield from read_dicom_folder(path, dicoms, skips)
    elif niftis:
        raise InvalidInputError(
            path, f"holds {len(niftis)} NIfTI files and no DICOM: give a .nii/.nii.gz file itself"
        )
    elif pictures:
        yield from _named([_read_image(file) for file in track(pictures, f"Reading {path.name}")])
    else:
        raise InvalidInputError(path, f"no DICOM files found: {NOT_AN_INPUT}")


def _scan(root: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """DICOM, NIfTI and image files under ``root``, each list sorted."""
    dicoms: list[Path] = []
    niftis: list[Path] = []
    pictures: list[Path] = []
    for folder, _, files in walk(root):
        for name in files:
            file = folder / name
            if split_nifti_name(name) is not None:
                niftis.append(file)
            elif file.suffix.lower() in IMAGE_SUFFIXES:
                pictures.append(file)
            elif is_dicom_file(file):
                dicoms.append(file)
    return dicoms, niftis, pictures


def _named(studies: list[CineStudy]) -> list[CineStudy]:
    """Studies with their names made file-safe, and unique by a ``_1``, ``_2`` suffix."""
    for study, name in zip(studies, unique_names([s.name for s in studies]), strict=True):
        study.name = name
    return studies


def _read_nifti(path: Path) -> CineStudy:
    """A 3D or 4D NIfTI file as a study, oriented as :mod:`lvseg.data.nifti` reads training data."""
    volume = open_volume(path)
    image, shape, zooms = volume.image, volume.shape, volume.zooms
    depth = shape[2]
    phases = shape[3] if len(shape) == 4 else 1
    images = np.empty((depth, phases, shape[1], shape[0]), np.float32)
    frames: list[int | None] = [None] if len(shape) == 3 else list(range(phases))
    for t, frame in enumerate(frames):
        images[:, t] = volume.frame(frame).transpose(2, 1, 0)  # (x, y, z) to (z, y, x)
    finite = np.isfinite(images)
    if not finite.all():
        k, t = (int(i) for i in np.argwhere(~finite)[0][:2])
        raise InvalidInputError(path, f"non-finite intensities in slice {k}, frame {t}")
    stem = split_nifti_name(path.name)[0]
    return CineStudy(
        images=images,
        patient_id=stem,
        name=safe_name(stem),
        kind="nifti",
        pixel_spacing_mm=(float(zooms[1]), float(zooms[0])),
        slice_positions_mm=np.array(volume.slice_positions_mm, np.float64),
        slice_thickness_mm=float(zooms[2]),
        trigger_times_ms=_nifti_times(image, depth, phases),
        affine=volume.affine_mm,
        sources=[[str(path)] * phases for _ in range(depth)],
        instance_numbers=None,
        series_description=None,
        nifti_header=image.header.copy(),
    )


def _nifti_times(image: nib.Nifti1Image, depth: int, phases: int) -> np.ndarray | None:
    """Frame times from the 4th voxel size, where the header gives it a time unit."""
    if phases < 2:
        return None
    try:
        per_unit = _TIME_UNIT_MS.get(image.header.get_xyzt_units()[1])
        interval = float(image.header.get_zooms()[3])
    except Exception:  # noqa: BLE001 - an odd unit code or a short pixdim: time unknown
        return None
    if per_unit is None or not (math.isfinite(interval) and interval > 0):
        return None
    return np.tile(np.arange(phases) * interval * per_unit, (depth, 1))


def _read_image(path: Path) -> CineStudy:
    """One image file as a 1 x 1 study; the patient id follows the Sunnybrook PNG names."""
    image = load_grey(path).astype(np.float32)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    fields = match_name(DEFAULT_PATTERN, path.name) or {}
    return CineStudy(
        images=image[None, None],
        patient_id=fields.get("patient", stem),
        name=stem,
        kind="image",
        pixel_spacing_mm=None,
        slice_positions_mm=None,
        slice_thickness_mm=None,
        trigger_times_ms=None,
        affine=np.eye(4),
        sources=[[str(path)]],
        instance_numbers=None,
        series_description=None,
    )
