"""Reading image/label pairs into records: one :class:`SliceRecord` per labelled 2D slice.

Records: one per 2D slice (and per frame of a 4D volume) whose label slice holds at least one
mapped structure; slices with only background are left out, so a slice that shows only RV is kept
and has no LV mask. ``masks`` holds the structures present on that slice.
Orientation, shared with the phantom writer: ``image = volume[:, :, k].T`` (rows = voxel axis 1,
cols = voxel axis 0), masks likewise; ``pixel_spacing_mm = (zooms[1], zooms[0])``;
``slice_thickness_mm = slice_spacing_mm = zooms[2]``; ``slice_index = k``; ``slice_position_mm`` is
the slice origin projected on the slice normal of the affine (``k * zooms[2]`` where the affine is
degenerate); ``geometry.affine`` is the 4x4 voxel-to-world matrix and ``geometry.volume_index = k``.
Zooms are in mm (headers in metres or microns are converted; the affine is kept as stored). The
image's header is the geometry; the label volume must match its shape, its header is not compared.
Intensities are the stored values with the header's scaling applied, as float32.

Phases: ACDC's ``phase_index`` is the frame number minus one, ``phase`` "ED"/"ES" where Info.cfg
names that frame. M&Ms-1's ``phase_index`` is the 0-based frame of the 4D volume; ``phase`` comes
from the information table where one is found, None otherwise. M&Ms-2 files hold one phase each,
named in the file name; their frame in the cine is not stored, so ``phase_index`` is 0 for ED and
1 for ES (an ordinal that keeps record keys unique). Generic 4D volumes give ``phase_index`` =
frame, 3D ones None.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lvseg.data.nifti.labels import IGNORE, PRESETS, LabelSpec, label_mapping
from lvseg.data.nifti.layouts import GT, Pair, Problem, find_pairs, find_single, tables_in
from lvseg.data.nifti.metadata import CaseInfo, Metadata
from lvseg.data.nifti.volumes import format_shape, load_nifti, nifti_shape, open_volume, read_labels
from lvseg.data.records import ED, ES, Dataset, Geometry, SliceRecord
from lvseg.errors import InvalidInputError, Skipped
from lvseg.progress import track


def read(
    path: str | Path, *, skip_invalid: bool = False, labels: LabelSpec | None = None
) -> Dataset:
    """Read NIfTI image/label pairs under a folder, or one pair, into a :class:`Dataset`.

    ``labels`` (a preset name, a mapping string or a dict; see :func:`parse_labels`) overrides the
    convention the layout implies, for every file; generic files need it. See :mod:`.layouts`
    for the layouts, :mod:`.labels` for the conventions and this module's docstring for records.
    """
    root = Path(path)
    mapping = None if labels is None else label_mapping(labels)
    if root.is_file():
        found = find_single(root)
    elif root.is_dir():
        found = find_pairs(root)
        if found.nifti_files == 0:
            raise InvalidInputError(root, "no NIfTI files (.nii or .nii.gz) found")
        if not found.pairs and not found.problems:
            raise InvalidInputError(
                root,
                f"{found.nifti_files} NIfTI files but no image/label pairs "
                f"(a label volume is named <image>{GT}.nii.gz)",
            )
        found.tables += tables_in(list(root.resolve().parents)[:3])
    else:
        raise InvalidInputError(root, "no such file or folder")

    metadata = Metadata(found.tables)
    records: list[SliceRecord] = []
    skipped: list[Skipped] = []
    work: list[Pair | Problem] = sorted(
        [*found.pairs, *found.problems],
        key=lambda item: str(item.path if isinstance(item, Problem) else item.image),
    )
    for item in track(work, f"Reading {root.name}"):
        try:
            if isinstance(item, Problem):
                raise InvalidInputError(item.path, item.reason)
            records += _read_pair(item, mapping, metadata.for_pair(item))
        except InvalidInputError as error:
            if not skip_invalid:
                raise
            skipped.append(Skipped(error.path or str(root), error.reason))
    if not records:
        pairs = len(found.pairs)
        reason = "no readable image/label pairs" if skipped else "no labelled slices"
        raise InvalidInputError(root, f"{reason} in {pairs} image/label pair(s)")
    records.sort(key=_record_order)
    return Dataset(records, format="nifti", root=str(root), skipped=skipped)


def _record_order(record: SliceRecord) -> tuple:
    return (
        record.patient_id,
        -1 if record.slice_index is None else record.slice_index,
        -1 if record.phase_index is None else record.phase_index,
        record.source,
    )


def _read_pair(pair: Pair, mapping: dict[int, str] | None, info: CaseInfo) -> list[SliceRecord]:
    """Every labelled slice of one image/label pair."""
    if mapping is None:
        if pair.layout == "generic":
            raise InvalidInputError(
                pair.image,
                "no known label convention for this file name; give a label mapping "
                f"(labels=, --labels): a preset ({', '.join(PRESETS)}) or e.g. "
                "'lv=3,myocardium=2,rv=1'",
            )
        mapping = PRESETS["acdc" if pair.layout == "acdc" else "mnms"]
    image = open_volume(pair.image)
    label = load_nifti(pair.label)
    shape, label_shape = image.shape, nifti_shape(label, pair.label)
    if shape != label_shape:
        raise InvalidInputError(
            pair.label,
            f"label volume is {format_shape(label_shape)}, image is {format_shape(shape)}",
        )
    zooms, affine, positions = image.zooms, image.affine, image.slice_positions_mm
    label_volume = read_labels(label, pair.label, mapping)
    structures = {value: name for value, name in mapping.items() if name != IGNORE}
    labelled = np.isin(label_volume, list(structures)).any(axis=(0, 1))  # (Z,) or (Z, T)

    records: list[SliceRecord] = []
    frames: list[int | None] = [None] if len(shape) == 3 else list(range(shape[3]))
    for frame in frames:
        slices = np.flatnonzero(labelled if frame is None else labelled[:, frame])
        if slices.size == 0:
            continue
        # A 3D image is read whole, once; a 4D one a frame at a time, labelled frames only.
        volume = image.frame(frame)
        labels_now = label_volume if frame is None else label_volume[..., frame]
        phase_index = pair.phase_index if frame is None else frame
        phase = pair.phase or _phase_of(phase_index, info)
        for k in slices.tolist():
            pixels = np.ascontiguousarray(volume[:, :, k].T, dtype=np.float32)
            if not np.isfinite(pixels).all():
                raise InvalidInputError(pair.image, f"non-finite intensities in slice {k}")
            label_slice = labels_now[:, :, k].T
            masks = {name: np.ascontiguousarray(label_slice == v) for v, name in structures.items()}
            masks = {name: mask for name, mask in masks.items() if mask.any()}
            spacing = (float(zooms[1]), float(zooms[0]))
            records.append(
                SliceRecord(
                    image=pixels,
                    masks=masks,
                    patient_id=pair.patient_id,
                    source=str(pair.image),
                    geometry=Geometry(
                        original_shape=(int(pixels.shape[0]), int(pixels.shape[1])),
                        source_pixel_spacing_mm=spacing,
                        affine=affine.copy(),
                        volume_index=k,
                    ),
                    slice_index=k,
                    slice_position_mm=positions[k],
                    phase_index=phase_index,
                    phase=phase,
                    pixel_spacing_mm=spacing,
                    slice_thickness_mm=float(zooms[2]),
                    slice_spacing_mm=float(zooms[2]),
                    group=info.group,
                    annotation_sources=(str(pair.label),),
                )
            )
        del volume
    return records


def _phase_of(phase_index: int | None, info: CaseInfo) -> str | None:
    if phase_index is None:
        return None
    if phase_index == info.ed_index:
        return ED
    if phase_index == info.es_index:
        return ES
    return None
