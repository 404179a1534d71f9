"""NIfTI volumes with label volumes beside them: ACDC, M&Ms-1, M&Ms-2, or any ``X`` + ``X_gt``.

A reader of :mod:`lvseg.data.load` (:func:`looks_like`, :func:`read`). The layouts it recognises
are in :mod:`.layouts`, the label conventions in :mod:`.labels`, the ED/ES and group metadata in
:mod:`.metadata`, how slices become records in :mod:`.reader`, and the guarded nibabel access
(also used by :mod:`lvseg.data.study`) in :mod:`.volumes`.
"""

from lvseg.data.nifti.labels import (
    IGNORE,
    PRESETS,
    STRUCTURE_ALIASES,
    LabelSpec,
    format_labels,
    label_mapping,
    parse_labels,
)
from lvseg.data.nifti.layouts import (
    LOOKS_LIKE_DEPTH,
    LOOKS_LIKE_ENTRIES,
    looks_like,
    split_nifti_name,
)
from lvseg.data.nifti.reader import read
from lvseg.data.nifti.volumes import (
    MAX_VOLUME_BYTES,
    NiftiVolume,
    load_nifti,
    mm_per_unit_of,
    nifti_affine,
    nifti_shape,
    nifti_zooms,
    open_volume,
    read_frame,
    slice_positions_of,
)

__all__ = [
    "IGNORE",
    "LOOKS_LIKE_DEPTH",
    "LOOKS_LIKE_ENTRIES",
    "MAX_VOLUME_BYTES",
    "PRESETS",
    "STRUCTURE_ALIASES",
    "LabelSpec",
    "NiftiVolume",
    "format_labels",
    "label_mapping",
    "load_nifti",
    "looks_like",
    "mm_per_unit_of",
    "nifti_affine",
    "nifti_shape",
    "nifti_zooms",
    "open_volume",
    "parse_labels",
    "read",
    "read_frame",
    "slice_positions_of",
    "split_nifti_name",
]
