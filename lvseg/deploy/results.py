"""What ``lvseg predict`` found, typed: one :class:`StudySummary` per study (its ``summary.json``,
written by :func:`lvseg.jsonsafe.json_safe`, fields in file order) and the :class:`Prediction`
that gathers them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lvseg.errors import Skipped
from lvseg.jsonsafe import json_safe, not_in_json
from lvseg.segment.locate import Placement
from lvseg.segment.quality import Judgement


@dataclass
class ModelUsed:
    """The exported model that segmented the studies, as every ``summary.json`` names it."""

    file: str
    name: str
    precision: str
    tta: bool
    plan: dict[str, Any]
    """The preprocessing plan embedded in the model file."""
    quality_score: str | None
    """The source of the quality-control score used, None without one."""


@dataclass
class StudyFacts:
    """The study as read: its name, shape (slices, phases, rows, cols), spacing and notes."""

    name: str
    patient_id: str
    kind: str
    series_description: str | None
    shape: list[int]
    pixel_spacing_mm: list[float] | None
    slice_spacing_mm: float | None
    notes: list[str]


@dataclass
class FlaggedFrame:
    """A frame quality control doubts, with its predicted Dice ("" where not judged)."""

    slice: int
    phase: int
    predicted_dice: float | str
    reason: str


@dataclass
class StudyQuality:
    """What quality control says about a study: its frames, and whether its EF can be trusted."""

    flag_below: float
    judged_frames: int
    mean_predicted_dice: float | str | None
    min_predicted_dice: float | str | None
    flagged_frames: list[FlaggedFrame]
    volume_share_flagged: dict[str, float | str] | None
    """Share of the ED and ES volume in flagged frames (None without an EF)."""
    volume_curve_minima: list[int] | None
    ef_trusted: bool | None
    verdict: str | None


@dataclass
class Segmentation:
    """The masks of one study and how they were made."""

    masks: np.ndarray
    """(slices, phases, rows, cols) bool, on the source grid."""
    placement: Placement
    notes: list[str] = field(default_factory=list)
    signals: list[dict[str, float]] = field(default_factory=list)
    """Every frame's quality signals (:mod:`lvseg.segment.quality`), slice by slice, phase by
    phase."""
    quality: Judgement | None = None
    """The frames' predicted Dice and flags (slice by slice, phase by phase), where the model
    embeds a quality score."""


@dataclass
class StudyVolumes:
    """The measures of one study: LV area per frame, the volume curve, ED, ES and EF (volumes
    None without the geometry; ED, ES and EF None with fewer than two phases)."""

    slices: int
    phases: int
    pixel_spacing_mm: list[float] | None
    slice_spacing_mm: float | None
    lv_pixels: np.ndarray
    """(slices, phases) LV pixels per frame."""
    lv_area_mm2: np.ndarray | None
    volume_ml: np.ndarray | None = None
    volume_note: str | None = None
    ed_phase: int | None = None
    es_phase: int | None = None
    edv_ml: float | None = None
    esv_ml: float | None = None
    sv_ml: float | None = None
    ef: float | None = None


@dataclass
class StudySummary:
    """One study's ``summary.json``, and the folder its outputs went to."""

    lvseg_version: str
    created: str
    model: ModelUsed
    study: StudyFacts
    crop_centre_resampled_px: list[float]
    heart_located: bool
    notes: list[str]
    volume_note: str | None
    volumes_ml: list[float] | None
    ed_phase: int | None
    es_phase: int | None
    edv_ml: float | None
    esv_ml: float | None
    sv_ml: float | None
    ef: float | None
    quality: StudyQuality | None
    folder: str | None = not_in_json(default=None)


@dataclass
class Prediction:
    """Every study segmented, the files left out (``skip_invalid``) and the folder written."""

    model: ModelUsed
    studies: list[StudySummary] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    out: str = ""

    def studies_json(self) -> list[dict[str, Any]]:
        """The per-study summaries as ``--json`` prints them: ``summary.json`` and its folder."""
        return [{**json_safe(study), "folder": study.folder} for study in self.studies]
