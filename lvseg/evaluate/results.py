"""What ``lvseg evaluate`` found, typed: :class:`Evaluation` is ``metrics.json`` (written by
:func:`lvseg.jsonsafe.json_safe`, fields in file order) plus what stays in memory (the per-slice
rows, the masks, the folder written).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lvseg.evaluate.quality import QualityAssessment
from lvseg.evaluate.stacks import ClinicalSection
from lvseg.evaluate.summary import Breakdowns, PatientStats, Summary
from lvseg.jsonsafe import not_in_json


@dataclass
class ModelFacts:
    """The model scored, and the patients it trained and was validated on (None: unknown)."""

    name: str
    source: str
    runtime: str
    parameters: int | None
    size_mb_fp32: float | None
    train_patients: list[str] | None
    val_patients: list[str] | None
    train_data: str | None


@dataclass
class DataFacts:
    """The data scored: which patients, which were left out and why, and the distance units."""

    path: str
    format: str
    split: str
    split_note: str
    patients: list[str]
    excluded_patients: list[str]
    distance_units: str
    """``"mm"``, or ``"px"`` where the data store no pixel spacing."""
    spacing_note: str | None


@dataclass
class Placements:
    """How the crops were placed: the rule, and the slices per outcome (``stack``: the heart
    located in the patient's stack; ``slice``: located on a single frame; ``image``: centred
    on the image, as asked or for want of an LV)."""

    crop: str
    slices_by_placement: dict[str, int]


@dataclass
class Settings:
    good_contour_mm: list[float]
    crop: str
    tta: bool
    largest_component: bool
    geometry: str
    prediction: str
    placement: Placements


@dataclass
class Evaluation:
    """``metrics.json``'s content, and the rows, masks and folder that stay in memory."""

    lvseg_version: str
    created: str
    model: ModelFacts
    data: DataFacts
    settings: Settings
    summary: Summary
    patients: list[PatientStats]
    breakdowns: Breakdowns
    clinical: ClinicalSection | None
    explanations: dict[str, Any] | None
    """The means of an ``lvseg explain --metrics`` output (``source``, ``means``), if given."""
    quality: QualityAssessment | None
    """How well the quality score predicted the slices' Dice, if there was one."""
    rows: list[dict[str, Any]] = not_in_json(default_factory=list)
    """One per scored slice (``slices.csv``), in input order."""
    out: str | None = not_in_json(default=None)
    """The folder written (None with ``write=False``)."""
    masks: dict[str, np.ndarray] | None = not_in_json(default=None)
    """With ``keep_masks``: record key to the predicted mask on the source grid."""
