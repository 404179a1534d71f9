"""Quality-control signals: how far to trust each segmented slice, from what inference has anyway.

Nothing here runs the network again: every signal is read off the crop's LV probability, the
mask and the other frames of the same stack (one patient's slices and phases, cut by one crop).

Per frame, on the crop (pixels of the plan's grid, areas in mm^2 where the plan has a spacing):

- ``area``: the predicted LV area (after the largest-region rule).
- ``peak``: the highest LV probability; a network that saw no LV anywhere stays low.
- ``uncertainty``: the pixels the network hesitates on, ``sum 4 p (1 - p)`` (1 at p = 0.5, 0 at
  0 or 1), per pixel of predicted LV (plus :data:`AREA_FLOOR_PX`, so an empty, confident crop
  scores 0). A clean segmentation has a one-pixel rim of doubt; a confused one is mostly doubt.
- ``fragments``: regions of ``p > 0.5`` before the largest is kept, and ``kept``: the share of
  predicted pixels in that largest region (scattered predictions keep little).
- ``solidity``: area over convex-hull area of the mask; a blood pool is nearly convex, a mask
  that leaks along the septum or into the atrium is not.
- ``edge``: the share of the mask's boundary pixels on the crop's edge; a crop placed beside the
  heart cuts the LV there.

Per stack, each frame against the others (the LV varies smoothly along the stack and in time):

- ``area_jump``: ``|log((area + a) / (m + a))|`` with ``m`` the median area of the frame's
  neighbouring slices at the same phase (``a`` = :data:`AREA_FLOOR_PX`); 0 without neighbours.
- ``drift``: the distance (mm, or pixels without spacing) from the mask's centroid to the median
  centroid of the stack's other non-empty frames: a slice segmented on another structure sits
  away from the rest.

:func:`frame_signals` computes them; the score that combines them into a predicted Dice is fitted
on cross-validation predictions (``benchmarks/quality_control.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
from scipy.spatial import ConvexHull, QhullError

from lvseg.data.errors import InvalidInputError
from lvseg.data.records import SliceRecord
from lvseg.segment.segmenter import THRESHOLD, SliceSegmentation, stacks

SCORED = ("uncertainty", "solidity")
"""The signals the shipped score weighs. In the 5-fold cross-validation of
``benchmarks/quality_control.py`` the others (area, peak, fragments, kept, edge, area jump,
drift) added nothing to these two (failure AUROC on the scored frames, mean over folds: 0.896
with all nine, 0.911 with these two, 0.912 with uncertainty alone): they stay as rules, as
reasons and in the outputs."""
SIGNALS = (
    "area",
    "peak",
    "uncertainty",
    "fragments",
    "kept",
    "solidity",
    "edge",
    "area_jump",
    "drift",
)
"""The signals of :func:`frame_signals`, in the order they are reported."""
AREA_FLOOR_PX = 20.0
"""Pixels added to areas before ratios, so empty and tiny masks give finite, calm signals."""
_EIGHT = np.ones((3, 3), bool)


@dataclass
class FrameSignals:
    """One frame's signals (:data:`SIGNALS`), and what the stack signals need of it: small, so
    ``predict`` keeps these and lets the crops and probabilities go."""

    values: dict[str, float]
    centroid: np.ndarray | None
    """The mask's centroid on the crop, (row, col); None when empty."""
    pixel_mm: float
    """The side of a crop pixel in mm (1 where the plan works in pixels)."""


def frame_signals(results: Sequence[SliceSegmentation]) -> list[dict[str, float]]:
    """The signals of every result (one dict per result, keys :data:`SIGNALS`, in order)."""
    return with_stack_signals([r.record for r in results], [own_signals(r) for r in results])


def with_stack_signals(
    records: Sequence[SliceRecord], own: Sequence[FrameSignals]
) -> list[dict[str, float]]:
    """Every frame's signals, its stack's (``area_jump``, ``drift``) filled in from the others."""
    for group in stacks(records):
        _stack_signals([records[i] for i in group], [own[i] for i in group])
    return [f.values for f in own]


def own_signals(result: SliceSegmentation) -> FrameSignals:
    """The frame's own signals (its stack's are 0 until :func:`with_stack_signals`)."""
    return crop_signals(result.probability, pixel_side_mm(result.crop.pixel_spacing_mm))


def pixel_side_mm(spacing: Sequence[float] | None) -> float:
    """The side in mm of a pixel of (row, col) ``spacing`` (1 where there is none)."""
    return float(np.sqrt(spacing[0] * spacing[1])) if spacing else 1.0


def crop_signals(probability: np.ndarray, pixel_mm: float = 1.0) -> FrameSignals:
    """The signals of one crop's LV probability (S, S), pixels of ``pixel_mm`` a side."""
    p = probability.astype(np.float64)
    predicted = p > THRESHOLD
    labels, fragments = ndi.label(predicted, structure=_EIGHT)
    if fragments:
        sizes = np.bincount(labels.ravel())[1:]
        mask = labels == int(np.argmax(sizes)) + 1
        kept = float(sizes.max() / sizes.sum())
    else:
        mask, kept = predicted, 1.0
    area_px = float(mask.sum())
    doubt = float((4.0 * p * (1.0 - p)).sum())
    centroid = np.argwhere(mask).mean(axis=0) if area_px else None
    values = {
        "area": area_px * pixel_mm**2,
        "peak": float(p.max()),
        "uncertainty": doubt / (area_px + AREA_FLOOR_PX),
        "fragments": float(fragments),
        "kept": kept,
        "solidity": solidity(mask),
        "edge": edge_share(mask),
        "area_jump": 0.0,
        "drift": 0.0,
    }
    return FrameSignals(values, centroid, pixel_mm)


def solidity(mask: np.ndarray) -> float:
    """Area over convex-hull area (pixel centres; 1 for an empty or degenerate mask).

    >>> m = np.zeros((9, 9), bool); m[2:7, 2:7] = True
    >>> solidity(m)
    1.0
    >>> m[3:6, 4:7] = False  # a C shape
    >>> round(solidity(m), 2)
    0.64
    """
    points = np.argwhere(mask)
    if len(points) < 3:
        return 1.0
    # Each pixel as its four corners, so a one-pixel-wide mask has an area and the hull of a
    # full square is the square itself.
    corners = (points[:, None, :] + np.array([[0, 0], [0, 1], [1, 0], [1, 1]])).reshape(-1, 2)
    try:
        hull = ConvexHull(corners)
    except QhullError:
        return 1.0
    return float(min(1.0, len(points) / hull.volume))


def edge_share(mask: np.ndarray) -> float:
    """Share of the mask's boundary pixels that lie on the border of the crop.

    >>> m = np.zeros((6, 6), bool); m[0:3, 1:4] = True
    >>> edge_share(m)  # 8 boundary pixels, the 3 of the top row on the crop's edge
    0.375
    """
    if not mask.any():
        return 0.0
    boundary = mask & ~ndi.binary_erosion(mask, structure=_EIGHT, border_value=0)
    border = np.zeros_like(mask)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    return float((boundary & border).sum() / max(1, boundary.sum()))


def slices_by_phase(records: Sequence[SliceRecord], positions: Sequence[int]) -> list[list[int]]:
    """The positions (of one stack) with a slice index, one list per phase, in slice order."""
    by_phase: dict[object, list[int]] = {}
    for i in positions:
        if records[i].slice_index is not None:
            by_phase.setdefault(records[i].phase_index, []).append(i)
    return [sorted(members, key=lambda i: records[i].slice_index) for members in by_phase.values()]


def _stack_signals(records: list[SliceRecord], own: list[FrameSignals]) -> None:
    """Fill in ``area_jump`` and ``drift`` of one stack's frames."""
    signals = [f.values for f in own]
    floor_mm2 = AREA_FLOOR_PX * own[0].pixel_mm ** 2
    for members in slices_by_phase(records, range(len(records))):
        for k, i in enumerate(members):
            neighbours = [signals[j]["area"] for j in members[max(0, k - 1) : k + 2] if j != i]
            if neighbours:
                ratio = (signals[i]["area"] + floor_mm2) / (np.median(neighbours) + floor_mm2)
                signals[i]["area_jump"] = abs(math.log(ratio))
    for i, frame in enumerate(own):
        others = [f.centroid for j, f in enumerate(own) if j != i and f.centroid is not None]
        if frame.centroid is not None and others:
            distance = float(np.linalg.norm(frame.centroid - np.median(others, axis=0)))
            signals[i]["drift"] = distance * frame.pixel_mm


# ---- the score: signals -> predicted Dice ------------------------------------------------------

FLAG_BELOW = 0.7
"""A frame whose predicted Dice is under this is flagged for review."""


def features(signals: Sequence[dict[str, float]]) -> np.ndarray:
    """(N, len(SIGNALS)) features of frames' signals: the long-tailed ones on a log scale."""
    rows = []
    for s in signals:
        rows.append(
            [
                math.log1p(s["area"] / 100.0),
                s["peak"],
                math.log1p(s["uncertainty"]),
                min(s["fragments"], 5.0),
                s["kept"],
                s["solidity"],
                s["edge"],
                s["area_jump"],
                math.log1p(s["drift"] / 5.0),
            ]
        )
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(SIGNALS))


@dataclass(frozen=True)
class QualityModel:
    """A fitted score (see :func:`lvseg.evaluate.quality.fit_quality_model`), applied with
    NumPy alone so ``predict`` needs nothing else: standardised features, a linear failure score
    (logistic regression for Dice < :data:`FLAG_BELOW`), then a decreasing isotonic map from that
    score to the Dice seen in cross-validation, and the residual quantiles around it."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    score_points: tuple[float, ...]
    """Failure scores, increasing, where the isotonic map is known ..."""
    dice_points: tuple[float, ...]
    """... and the predicted Dice there (decreasing); linear in between, flat outside."""
    interval: tuple[float, float]
    """Quantiles (10%, 90%) of true minus predicted Dice in cross-validation."""
    fitted_on: int = 0
    """Frames the model was fitted on."""
    source: str = ""
    """What it was fitted on, in words (recipe, folds, shifts)."""

    def failure_score(self, signals: Sequence[dict[str, float]]) -> np.ndarray:
        x = (features(signals) - np.asarray(self.mean)) / np.asarray(self.scale)
        return x @ np.asarray(self.weights) + self.bias

    def contributions(self, signals: Sequence[dict[str, float]]) -> np.ndarray:
        """(N, signals) each signal's part of the failure score (weight x standardised value):
        the largest is what a flag's reason names."""
        x = (features(signals) - np.asarray(self.mean)) / np.asarray(self.scale)
        return x * np.asarray(self.weights)

    def predict(self, signals: Sequence[dict[str, float]]) -> np.ndarray:
        """Predicted Dice of each frame (N,)."""
        score = self.failure_score(signals)
        return np.interp(score, self.score_points, self.dice_points).astype(np.float64)

    def to_dict(self) -> dict:
        return {"signals": list(SIGNALS), **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> QualityModel:
        if tuple(data.get("signals", ())) != SIGNALS:
            raise ValueError("the quality model was fitted on other signals than this version's")
        fields = {k: v for k, v in data.items() if k != "signals"}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


EDGE_LIMIT = 0.2
"""A mask with more of its outline than this on the crop's edge was cut by a misplaced crop."""
FRAGMENT_LIMIT = 0.75
"""A prediction whose largest region holds less than this share of it was scattered."""


def _cut_by_crop(s: dict[str, float]) -> str | None:
    if s["edge"] > EDGE_LIMIT:
        return f"the crop cuts the LV ({s['edge']:.0%} of its outline on the crop's edge)"
    return None


def _scattered(s: dict[str, float]) -> str | None:
    if s["fragments"] > 1 and s["kept"] < FRAGMENT_LIMIT:
        return (
            f"scattered prediction ({s['fragments']:.0f} regions, the largest holds "
            f"{s['kept']:.0%})"
        )
    return None


RULES = (_cut_by_crop, _scattered)
"""Flags that hold whatever the fitted score says, each with its reason."""
BLAME = {
    "area": "a small LV",
    "peak": "low confidence",
    "uncertainty": "an uncertain boundary",
    "fragments": "fragments",
    "kept": "a scattered prediction",
    "solidity": "an irregular shape",
    "edge": "an LV cut by the crop",
    "area_jump": "an area unlike its neighbouring slices'",
    "drift": "a position away from the rest of the stack",
}
"""How a flag's reason names the signal that weighs most toward failure."""


@dataclass
class Judgement:
    """Quality control of a list of frames (arrays of shape (N,), in the frames' order)."""

    predicted_dice: np.ndarray
    """The score's predicted Dice; NaN for frames with no LV segmented (not scored)."""
    flagged: np.ndarray
    """Frames to review: predicted Dice under ``flag_below``, or no LV segmented between
    slices of the same stack and phase that have one (a hole in the stack)."""
    reasons: dict[int, str]
    """Why each flagged frame is flagged, by position."""
    flag_below: float
    failure_score: np.ndarray | None = None
    """The score before its map to Dice (higher: likelier failed; NaN where not scored): it
    ranks frames without the ties of the map's steps."""


def judge(
    scorer: QualityModel,
    records: Sequence[SliceRecord],
    signals: Sequence[dict[str, float]],
    flag_below: float = FLAG_BELOW,
) -> Judgement:
    """Predicted Dice and flags of frames from their signals (:func:`frame_signals`).

    A frame is flagged when its predicted Dice is under ``flag_below`` (the reason names the
    signal that weighs most toward failure), or when one of :data:`RULES` holds whatever the
    score says (failures too plain to leave to a fit on data that rarely shows them). The score
    is fitted on frames that all hold an LV, where an empty mask is a failure; in a study the
    slices past the apex or above the base are rightly empty, so empty frames are not scored,
    and only an empty frame between segmented slices of its phase (a hole in the stack) is
    flagged."""
    segmented = np.array([s["area"] > 0 for s in signals], bool)
    predicted = np.full(len(signals), np.nan)
    chosen = np.flatnonzero(segmented)
    failure = np.full(len(signals), np.nan)
    if chosen.size:
        predicted[chosen] = scorer.predict([signals[i] for i in chosen])
        failure[chosen] = scorer.failure_score([signals[i] for i in chosen])
        blame = scorer.contributions([signals[i] for i in chosen])
    flagged = np.zeros(len(signals), bool)
    reasons: dict[int, str] = {}
    for row, i in enumerate(chosen):
        why = [rule(signals[i]) for rule in RULES]
        why = [text for text in why if text]
        if predicted[i] < flag_below:
            worst = SIGNALS[int(np.argmax(blame[row]))]
            why.insert(0, f"predicted Dice {predicted[i]:.2f}, mostly for {BLAME[worst]}")
        if why:
            flagged[i] = True
            reasons[int(i)] = "; ".join(why)
    for group in stacks(records):
        for members in slices_by_phase(records, group):
            found = [k for k, i in enumerate(members) if segmented[i]]
            for k, i in enumerate(members):
                if not segmented[i] and found and found[0] < k < found[-1]:
                    flagged[i] = True
                    reasons[i] = "no LV between slices that have one"
    return Judgement(predicted, flagged, reasons, flag_below, failure)


EF_REVIEW_SHARE = 0.1
"""An ejection fraction is for review when the frames flagged at its end-diastolic or
end-systolic phase hold more than this share of that phase's LV area."""


def share_at_risk(
    flagged: Sequence[bool], phases: Sequence[object], areas: Sequence[float]
) -> dict[object, float]:
    """Per phase, the share of its LV area held by flagged frames; a flagged empty frame (a hole
    in the stack) counts as the mean area of the phase's segmented frames.

    >>> share_at_risk([False, True, True, False], [0, 0, 0, 1], [300.0, 100.0, 0.0, 200.0])
    {0: 0.5, 1: 0.0}
    """
    shares: dict[object, float] = {}
    for phase in dict.fromkeys(phases):
        members = [i for i, p in enumerate(phases) if p == phase]
        segmented = [areas[i] for i in members if areas[i] > 0]
        fill = float(np.mean(segmented)) if segmented else 0.0
        counted = [areas[i] if areas[i] > 0 else (fill if flagged[i] else 0.0) for i in members]
        risky = sum(a for i, a in zip(members, counted, strict=True) if flagged[i])
        total = sum(counted)
        shares[phase] = risky / total if total > 0 else 0.0
    return shares


DEFAULT_MODEL_FILE = Path(__file__).with_name("quality.json")
"""The score shipped with lvseg, fitted by ``benchmarks/quality_control.py --save`` on the
default recipe's cross-validation; ``lvseg export`` embeds it unless given another."""


def read_quality_model(path: str | Path) -> QualityModel:
    """A score written by ``benchmarks/quality_control.py --save``; one-line errors."""
    path = Path(path)
    try:
        return QualityModel.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise InvalidInputError(path, "no such quality model file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInputError(path, f"not a quality model file ({error})") from None
    except (TypeError, ValueError, AttributeError) as error:
        raise InvalidInputError(path, f"not a valid quality model ({error})") from None


def default_quality_model() -> QualityModel | None:
    """The score shipped with lvseg (None where this install has none)."""
    return read_quality_model(DEFAULT_MODEL_FILE) if DEFAULT_MODEL_FILE.is_file() else None
