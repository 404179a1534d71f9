"""Image/mask folders: PNG (or any format Pillow reads) images with masks of the same name.

Layout (the ``../shared/data/sunnybrook-png`` one)::

    ROOT/Images/<any sub folders>/<name>.png
    ROOT/Labels/<same sub folders>/<name>.png     # 0 = background, > 0 = structure

The patient id, and where present the slice/phase, come from the file name by a regular
expression with named groups (:data:`DEFAULT_PATTERN`; ``--name-pattern`` on the CLI):

- ``patient`` (required): the patient id;
- ``instance`` (optional): the DICOM instance number, turned into slice and phase with
  ``phases_per_slice`` (Sunnybrook cines have 20 phases: slice = (n-1) // 20, phase = (n-1) % 20);
- ``slice`` / ``phase`` (optional): given directly.

Masks are binary by default (any non-zero pixel is LV blood pool); ``label_values`` maps mask
values to structures for multi-label masks. RGB images are reduced to one channel (the first; the
Sunnybrook PNGs hold three identical ones). No pixel spacing is stored in such files, so records
carry ``pixel_spacing_mm=None`` unless ``pixel_spacing_mm`` is given (``--pixel-spacing``), with
one exception: patients named as in the Sunnybrook Cardiac Data (``SC-HF-I-01``, ``SC-N-40``...)
get :data:`SUNNYBROOK_SPACING_MM`, the spacing those scans have, so a model trained on such an
export works in millimetres and meets other scanners' images at the size it learned.

>>> match_name(DEFAULT_PATTERN, "SC-HF-I-01-IM-0001-0048.dcm.png")
{'patient': 'SC-HF-I-01', 'instance': '0048'}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lvseg.data.files import is_input_file, regular_files
from lvseg.data.records import LV, Dataset, Geometry, SliceRecord, label_ed_es_by_area
from lvseg.errors import InvalidInputError, Skipped
from lvseg.progress import track

DEFAULT_PATTERN = r"^(?P<patient>.+?)-IM-\d{4}-(?P<instance>\d{4})"
"""Sunnybrook PNG names: ``<PATIENT>-IM-0001-<INSTANCE>.dcm.png``."""

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
IMAGES_FOLDER, LABELS_FOLDER = "Images", "Labels"
SUNNYBROOK_GROUP = re.compile(r"^SC-(?P<group>HF-I|HF-NI|HYP|N)-\d+$")
SUNNYBROOK_SPACING_MM = (1.33, 1.33)
"""In-plane spacing of a Sunnybrook Cardiac Data patient exported without one: its scans are
1.29-1.37 mm (the DICOM headers of the challenge data), so this is within 3% of each."""


def match_name(pattern: str, name: str) -> dict[str, str] | None:
    """Named groups of ``pattern`` found in ``name`` (None where it does not match)."""
    found = re.search(pattern, name)
    return {k: v for k, v in found.groupdict().items() if v is not None} if found else None


def looks_like(path: Path) -> bool:
    return (path / IMAGES_FOLDER).is_dir() and (path / LABELS_FOLDER).is_dir()


def read(
    path: str | Path,
    *,
    skip_invalid: bool = False,
    name_pattern: str = DEFAULT_PATTERN,
    phases_per_slice: int = 20,
    label_values: dict[int, str] | None = None,
    pixel_spacing_mm: tuple[float, float] | None = None,
) -> Dataset:
    """Read an image/mask folder tree into a :class:`Dataset` (see the module docstring)."""
    root = Path(path)
    if not looks_like(root):
        raise InvalidInputError(
            root, f"expected '{IMAGES_FOLDER}/' and '{LABELS_FOLDER}/' folders inside"
        )
    try:
        pattern = re.compile(name_pattern)
    except re.error as error:
        raise InvalidInputError(None, f"invalid name pattern {name_pattern!r}: {error}") from None
    if "patient" not in pattern.groupindex:
        raise InvalidInputError(None, f"name pattern {name_pattern!r} has no (?P<patient>...)")

    images_root, labels_root = root / IMAGES_FOLDER, root / LABELS_FOLDER
    image_files = regular_files(
        images_root, lambda name: Path(name).suffix.lower() in IMAGE_SUFFIXES
    )
    if not image_files:
        raise InvalidInputError(images_root, "no image files found")

    options = _PairOptions(pattern, phases_per_slice, label_values, pixel_spacing_mm)
    records: list[SliceRecord] = []
    skipped: list[Skipped] = []
    for image_file in track(image_files, f"Reading {root.name}"):
        try:
            mask_file = labels_root / image_file.relative_to(images_root)
            records.append(_read_pair(image_file, mask_file, labels_root, options))
        except InvalidInputError as error:
            if not skip_invalid:
                raise
            skipped.append(Skipped(error.path or str(image_file), error.reason))
    if not records:
        raise InvalidInputError(root, "no readable image/mask pairs")
    records.sort(key=lambda r: (r.patient_id, r.slice_index or 0, r.phase_index or 0, r.source))
    return Dataset(label_ed_es_by_area(records), format="folders", root=str(root), skipped=skipped)


@dataclass(frozen=True)
class _PairOptions:
    """How :func:`read` turns every image/mask pair into a record (its options, checked)."""

    pattern: re.Pattern
    phases_per_slice: int
    label_values: dict[int, str] | None
    pixel_spacing_mm: tuple[float, float] | None


def _read_pair(
    image_file: Path, mask_file: Path, labels_root: Path, options: _PairOptions
) -> SliceRecord:
    pattern, label_values = options.pattern, options.label_values
    fields = match_name(pattern.pattern, image_file.name)
    if fields is None or "patient" not in fields:
        raise InvalidInputError(
            image_file, f"file name does not match the name pattern {pattern.pattern!r}"
        )
    if not is_input_file(mask_file, labels_root):
        raise InvalidInputError(image_file, f"no mask at {mask_file}")
    image = load_grey(image_file).astype(np.float32)
    mask = load_grey(mask_file, mask=True)
    if mask.shape != image.shape:
        raise InvalidInputError(
            mask_file,
            f"mask is {mask.shape[1]}x{mask.shape[0]}, image is {image.shape[1]}x{image.shape[0]}",
        )
    if label_values:
        masks = {
            name: mask == value for value, name in label_values.items() if (mask == value).any()
        }
    else:
        masks = {LV: mask > 0}

    slice_index = _name_number(fields, "slice", image_file)
    phase_index = _name_number(fields, "phase", image_file)
    if "instance" in fields:
        instance = _name_number(fields, "instance", image_file)
        if instance < 1:
            raise InvalidInputError(image_file, "the name's instance is 0; instances count from 1")
        slice_index, phase_index = divmod(instance - 1, options.phases_per_slice)
    patient_id = fields["patient"]
    group = SUNNYBROOK_GROUP.match(patient_id)
    pixel_spacing_mm = options.pixel_spacing_mm
    if pixel_spacing_mm is None and group:
        pixel_spacing_mm = SUNNYBROOK_SPACING_MM
    return SliceRecord(
        image=image,
        masks=masks,
        patient_id=patient_id,
        source=str(image_file),
        geometry=Geometry(original_shape=image.shape, source_pixel_spacing_mm=pixel_spacing_mm),
        slice_index=slice_index,
        phase_index=phase_index,
        pixel_spacing_mm=pixel_spacing_mm,
        group=group["group"] if group else None,
        annotation_sources=(str(mask_file),),
    )


def _name_number(fields: dict[str, str], group: str, path: Path) -> int | None:
    """A slice, phase or instance number read from a file name (None where the pattern has no
    such group); a group that matched something other than digits is refused."""
    if group not in fields:
        return None
    if not fields[group].isdigit() or len(fields[group]) > 9:
        raise InvalidInputError(
            path,
            f"the name's {group} {fields[group][:20]!r} is not a number (the --name-pattern "
            f"group (?P<{group}>...) must match digits)",
        )
    return int(fields[group])


def load_grey(path: Path, mask: bool = False) -> np.ndarray:
    """A 2D array from an image file; colour images give their first channel.

    With ``mask``, a mask drawn only in the alpha channel (colour channels all one value, alpha
    varying: what some annotation tools save) gives its alpha channel instead of an empty mask.
    """
    try:
        with Image.open(path) as picture:
            array = np.asarray(picture)
    except Image.DecompressionBombError:
        # Pillow's guard: a header claiming more pixels than it will decode
        raise InvalidInputError(path, "image too large to decode (a decompression bomb?)") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        # SyntaxError: Pillow's "broken PNG file" and other malformed chunks
        raise InvalidInputError(path, f"cannot read image ({type(error).__name__})") from None
    if array.ndim == 3:
        drawn_in_alpha = (
            mask
            and array.shape[-1] in (2, 4)
            and (array[..., :-1] == array.flat[0]).all()
            and array[..., -1].min() != array[..., -1].max()
        )
        array = array[..., -1] if drawn_in_alpha else array[..., 0]
    if array.ndim != 2 or min(array.shape) == 0:
        raise InvalidInputError(path, f"expected a 2D image, got shape {array.shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInputError(path, "pixel values are not finite (NaN or infinity)")
    return array
