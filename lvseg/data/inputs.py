"""Inputs of the commands that run a model on data: datasets, and single slice files.

``lvseg explain`` (and later ``evaluate`` and ``predict``) take INPUT arguments that are either
what :func:`lvseg.data.load.load_dataset` reads (a dataset folder, a study, a NIfTI file,
``phantom``) or a *single 2-D slice file*, which no dataset reader accepts:

- an image file (PNG, TIFF, BMP, JPEG): read with :func:`lvseg.data.folders.load_grey`; if it
  sits in an ``Images/`` tree with a mask of the same relative path under the sibling
  ``Labels/``, that mask is the reference LV (as the folders reader would pair them);
- a DICOM file (``.dcm``, or any file with the DICM preamble): read with
  :func:`lvseg.data.dicom.read_dicom`, with its pixel spacing; no reference.

The patient id of a single file comes from the Sunnybrook name pattern where it matches, else
the file name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lvseg.data.dicom import is_dicom_file
from lvseg.data.records import LV, Geometry, SliceRecord
from lvseg.errors import InvalidInputError


def _single_identity(path: Path) -> dict[str, Any]:
    from lvseg.data.folders import DEFAULT_PATTERN, match_name

    fields = match_name(DEFAULT_PATTERN, path.name) or {}
    identity: dict[str, Any] = {"patient_id": fields.get("patient", path.name)}
    if "instance" in fields:
        identity["slice_index"], identity["phase_index"] = divmod(int(fields["instance"]) - 1, 20)
    return identity


def _partner_mask(path: Path) -> Path | None:
    """The ``Labels/`` file matching an image under ``Images/`` (the folders layout), if any."""
    from lvseg.data.folders import IMAGES_FOLDER, LABELS_FOLDER

    resolved = path.resolve()
    for parent in resolved.parents:
        if parent.name == IMAGES_FOLDER:
            mask = parent.parent / LABELS_FOLDER / resolved.relative_to(parent)
            return mask if mask.is_file() else None
    return None


def read_single_slice(path: str | Path) -> SliceRecord:
    """One record from a single 2-D image or DICOM file (see the module docstring)."""
    from lvseg.data.folders import load_grey

    path = Path(path)
    identity = _single_identity(path)
    if is_dicom_file(path):
        from lvseg.data.dicom import dicom_pixels, pixel_spacing, read_dicom

        dicom = read_dicom(path)
        image = dicom_pixels(dicom, path)
        spacing = pixel_spacing(dicom)
        return SliceRecord(
            image=image,
            masks={},
            source=str(path),
            geometry=Geometry(original_shape=image.shape, source_pixel_spacing_mm=spacing),
            pixel_spacing_mm=spacing,
            **identity,
        )
    image = load_grey(path).astype(np.float32)
    masks: dict[str, np.ndarray] = {}
    annotations: tuple[str, ...] = ()
    mask_file = _partner_mask(path)
    if mask_file is not None:
        mask = load_grey(mask_file, mask=True)
        if mask.shape != image.shape:
            raise InvalidInputError(mask_file, f"mask is {mask.shape}, image is {image.shape}")
        masks, annotations = {LV: mask > 0}, (str(mask_file),)
    return SliceRecord(
        image=image,
        masks=masks,
        source=str(path),
        geometry=Geometry(original_shape=image.shape),
        annotation_sources=annotations,
        **identity,
    )


def read_inputs(
    inputs: Sequence[str | Path], format: str = "auto", limit: int | None = None
) -> list[SliceRecord]:
    """The records of every input, in order; at most ``limit`` (the first ones)."""
    from lvseg.data.folders import IMAGE_SUFFIXES
    from lvseg.data.load import EMBEDDED_PHANTOM, load_dataset
    from lvseg.data.nifti import looks_like as looks_like_nifti

    records: list[SliceRecord] = []
    for item in inputs:
        path = Path(item)
        single = (
            path.is_file()
            and not looks_like_nifti(path)
            and (
                (format in ("auto", "folders") and path.suffix.lower() in IMAGE_SUFFIXES)
                or (format in ("auto", "sunnybrook") and is_dicom_file(path))
            )
        )
        if single:
            records.append(read_single_slice(path))
        elif str(item) == EMBEDDED_PHANTOM or path.exists():
            records.extend(load_dataset(path, format).records)
        else:
            raise InvalidInputError(path, "no such file or folder")
        if limit is not None and len(records) >= limit:
            break
    if limit is not None:
        records = records[:limit]
    if not records:
        raise InvalidInputError(None, "the inputs hold no slices to explain")
    return records
