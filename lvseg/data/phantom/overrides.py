"""What a caller may change about a drawn patient: its contrast and some acquisition settings.

Both leave the anatomy (and so the labels) as drawn, so one patient can be seen through several
contrasts or acquisitions (domain randomisation, the domain-shift benchmark).
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from typing import Any

import numpy as np

from lvseg.data.phantom.anatomy import Anatomy, Tissues
from lvseg.errors import InvalidInputError

CONTRASTS = ("ssfp", "random")
"""How tissues look: ``ssfp``, the balanced-SSFP cine contrast drawn within realistic ranges
(bright blood, dark myocardium); ``random``, domain randomisation as SynthSeg does it (Billot et
al. 2023): every tissue's value drawn anew and independently per patient (0 to 1.5, the blood
0.3 to 1.5, a gamma of 0.5 to 2), so that a model must learn shapes, not one contrast. The anatomy,
motion, labels and acquisition stay as drawn; only :class:`~lvseg.data.phantom.anatomy.Tissues`
and the gamma change (their own random stream, so the same patient keeps its heart)."""

ACQUISITION = {
    "spacing": "pixel spacing in mm (the matrix is kept, so the field of view changes)",
    "thickness": "slice thickness in mm (the partial volume of the slice profile)",
    "rotation": "in-plane rotation of the anatomy in radians (0: the standard view)",
    "gamma": "the contrast curve: tissue values to the power gamma",
    "noise": "noise level in k-space (0.015-0.06 as drawn)",
    "k_fraction": "(rows, cols) fraction of k-space acquired (blur, Gibbs ringing)",
    "k_taper": "apodisation of the k-space edge (0: a hard cut)",
    "fov_kind": "none, circle or curved (the reconstruction's field-of-view mask)",
    "heart_offset_mm": "(down, right) of the LV centre from the image centre in mm (the whole "
    "thorax moves with it, as when the field of view is placed off the heart)",
}
"""The acquisition and appearance draws ``generate_patient(acquisition=...)`` can fix, so one
patient's anatomy can be seen through several acquisitions (the domain-shift benchmark)."""

_ACQUISITION_RANGES = {
    "spacing": (0.3, 5.0),
    "thickness": (1.0, 30.0),
    "rotation": (-2 * math.pi, 2 * math.pi),
    "gamma": (0.1, 10.0),
    "noise": (0.0, 1.0),
    "k_fraction": (0.05, 1.0),
    "k_taper": (0.0, 1.0),
    "heart_offset_mm": (-300.0, 300.0),
}
_ACQUISITION_PART = {
    # setting -> the part of the Anatomy that holds it (heart_offset_mm moves plane.heart_px)
    "spacing": "plane",
    "thickness": "plane",
    "rotation": "plane",
    "gamma": "contrast",
    "noise": "scanner",
    "k_fraction": "scanner",
    "k_taper": "scanner",
    "fov_kind": "scanner",
}


def check_contrast(contrast: str) -> None:
    if contrast not in CONTRASTS:
        raise InvalidInputError(
            None, f"unknown contrast {contrast!r}; choose {' or '.join(CONTRASTS)}"
        )


def with_random_contrast(anat: Anatomy, rng: np.random.Generator) -> Anatomy:
    """``anat`` with SynthSeg-style random tissue values and gamma (see :data:`CONTRASTS`).

    The organ blobs of the thorax and the clutter keep the values they were drawn with (they
    took them when the anatomy was drawn): body fat, muscle, mediastinum, lung vessels and the
    heart's tissues change.
    """
    drawn = {field.name: float(rng.uniform(0.0, 1.5)) for field in fields(Tissues)}
    tissues = replace(Tissues(**drawn), blood=float(rng.uniform(0.3, 1.5)))
    contrast = replace(anat.contrast, tissues=tissues, gamma=float(rng.uniform(0.5, 2.0)))
    return replace(anat, contrast=contrast)


def with_acquisition(anat: Anatomy, acquisition: dict[str, Any]) -> Anatomy:
    """``anat`` with the acquisition settings ``acquisition`` fixes (keys of
    :data:`ACQUISITION`), checked; everything else stays as drawn."""
    settings = checked_acquisition(acquisition)
    offset = settings.pop("heart_offset_mm", None)
    for part in ("plane", "contrast", "scanner"):
        changes = {key: value for key, value in settings.items() if _ACQUISITION_PART[key] == part}
        if changes:
            anat = replace(anat, **{part: replace(getattr(anat, part), **changes)})
    if offset is not None:
        plane = anat.plane
        centre = (plane.rows / 2 - 0.5, plane.cols / 2 - 0.5)
        heart_px = (centre[0] + offset[0] / plane.spacing, centre[1] + offset[1] / plane.spacing)
        anat = replace(anat, plane=replace(plane, heart_px=heart_px))
    return anat


def checked_acquisition(acquisition: dict[str, Any]) -> dict[str, Any]:
    """The settings as floats (pairs as tuples); an unknown key or a value out of range raises
    :class:`~lvseg.errors.InvalidInputError`."""
    unknown = sorted(set(acquisition) - set(ACQUISITION))
    if unknown:
        raise InvalidInputError(
            None,
            f"unknown acquisition setting(s) {', '.join(unknown)}; "
            f"choose from {', '.join(ACQUISITION)}",
        )
    checked: dict[str, Any] = {}
    for key, value in acquisition.items():
        if key == "fov_kind":
            if value not in ("none", "circle", "curved"):
                raise InvalidInputError(
                    None, f"fov_kind must be none, circle or curved, got {value!r}"
                )
            checked[key] = value
            continue
        pair = key in ("k_fraction", "heart_offset_mm")
        values = tuple(value) if pair else (value,)
        low, high = _ACQUISITION_RANGES.get(key, (0.0, math.inf))
        if len(values) != (2 if pair else 1) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high
            for v in values
        ):
            raise InvalidInputError(
                None, f"acquisition {key} ({ACQUISITION[key]}) out of range: {value!r}"
            )
        checked[key] = tuple(float(v) for v in values) if pair else float(value)
    return checked
