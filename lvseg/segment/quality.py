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
- ``presence``: the mean LV-versus-background margin over the crop, ``mean log(p / (1 - p))``
  (p clipped to :data:`PRESENCE_CLIP`): the global average of the class-score maps that LVNet's
  "LV present" head reads (its logit is an affine map of it), so it says how much of the crop
  the CAM calls LV, and how surely; a segmentation the CAM barely supports scores low.
- ``disagreement``: with test-time augmentation, 1 minus the mean Dice of each of the 8 views'
  masks with the averaged one (``SliceSegmentation.view_agreement``); 0 without it.

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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
from scipy.spatial import ConvexHull, QhullError

from lvseg.data.records import SliceRecord
from lvseg.errors import InvalidInputError
from lvseg.segment.segmenter import THRESHOLD, SliceSegmentation, stacks

SCORED = ("uncertainty", "solidity")
"""The signals the shipped score weighs. In the 5-fold cross-validation of
``benchmarks/quality_control.py`` (3,682 held-out frames, as they are and under 6 shifts) the
others added nothing to these two (failure AUROC on the segmented frames, mean over folds: 0.910
with these two, 0.910 with uncertainty alone, 0.897 with all ten, 0.901 with the class map's
``presence`` added): they stay as rules, as reasons and in the outputs."""
TTA_SCORED = (*SCORED, "disagreement")
"""The signals the shipped score for test-time augmentation weighs, fitted on frames segmented
with it: the two of :data:`SCORED` and the views' ``disagreement``. Alone, disagreement detects
failures nearly as well as the averaged probability's doubt (failure AUROC 0.880 against 0.897),
and it hardly moves the ranking (mean AUROC over folds 0.895 against 0.894 without it), but its
fitted weight is negative: at equal doubt, a frame whose doubt comes from views that disagree
(orientation slips that the average smooths out) failed less often than one whose views all
doubt the same boundary (an image that is ambiguous). That moves the flags where they count: 20
of the 21 EFs off by more than 10 points go for review against 15 without it, for 28 against 27
of the 119 within 5 points."""
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
    "presence",
    "disagreement",
)
"""The signals of :func:`frame_signals`, in the order they are reported."""
PRESENCE_CLIP = 1e-4
"""``presence`` clips p to [this, 1 - this] (a margin of at most 9.2 a pixel): float32
probabilities of 0 or 1 have no finite logit."""
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
    pixel_mm = pixel_side_mm(result.crop.pixel_spacing_mm)
    return crop_signals(result.probability, pixel_mm, result.view_agreement)


def pixel_side_mm(spacing: Sequence[float] | None) -> float:
    """The side in mm of a pixel of (row, col) ``spacing`` (1 where there is none)."""
    return float(np.sqrt(spacing[0] * spacing[1])) if spacing else 1.0


def crop_signals(
    probability: np.ndarray, pixel_mm: float = 1.0, view_agreement: float | None = None
) -> FrameSignals:
    """The signals of one crop's LV probability (S, S), pixels of ``pixel_mm`` a side, and the
    agreement of its test-time views where there were some."""
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
    clipped = np.clip(p, PRESENCE_CLIP, 1.0 - PRESENCE_CLIP)
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
        "presence": float(np.mean(np.log(clipped / (1.0 - clipped)))),
        "disagreement": 0.0 if view_agreement is None else 1.0 - float(view_agreement),
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


FEATURES: dict[str, Callable[[float], float]] = {
    "area": lambda v: math.log1p(v / 100.0),
    "peak": float,
    "uncertainty": math.log1p,
    "fragments": lambda v: min(v, 5.0),
    "kept": float,
    "solidity": float,
    "edge": float,
    "area_jump": float,
    "drift": lambda v: math.log1p(v / 5.0),
    "presence": float,
    "disagreement": float,
}
"""How each signal enters the score: the long-tailed ones on a log scale."""


def features(signals: Sequence[dict[str, float]], names: Sequence[str] = SIGNALS) -> np.ndarray:
    """(N, len(names)) features of frames' signals (:data:`FEATURES`)."""
    rows = [[FEATURES[name](s[name]) for name in names] for s in signals]
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(names))


@dataclass(frozen=True)
class QualityModel:
    """A fitted score (see :func:`lvseg.evaluate.quality.fit_quality_model`), applied with
    NumPy alone so ``predict`` needs nothing else: standardised features, a linear failure score
    (logistic regression for Dice < :data:`FLAG_BELOW`), then a decreasing isotonic map from that
    score to the Dice seen in cross-validation, and the residual quantiles around it, per range
    of the score (a likely failure's Dice is less certain than a likely success's).

    Test-time augmentation changes the probabilities the signals are read from (an average of 8
    views is softer at the boundary), so a score is fitted for one way of segmenting: ``tta``
    says which, and a plain score may carry the TTA one as ``with_tta`` (:meth:`for_tta`)."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    score_points: tuple[float, ...]
    """Failure scores, increasing, where the isotonic map is known ..."""
    dice_points: tuple[float, ...]
    """... and the predicted Dice there (decreasing); linear in between, flat outside."""
    interval: tuple[float, float]
    """Quantiles (10%, 90%) of true minus predicted Dice in cross-validation, all frames."""
    fitted_on: int = 0
    """Frames the model was fitted on."""
    source: str = ""
    """What it was fitted on, in words (recipe, folds, shifts)."""
    signals: tuple[str, ...] = SIGNALS
    """The signals of ``mean``, ``scale`` and ``weights``, in order."""
    interval_edges: tuple[float, ...] = ()
    """Failure scores that cut the frames into ranges of equal count, increasing ..."""
    interval_low: tuple[float, ...] = ()
    """... and in each range (one more than edges) the 10% quantile of true minus predicted
    Dice ..."""
    interval_high: tuple[float, ...] = ()
    """... and the 90% one (without ranges, :attr:`interval` serves every frame)."""
    tta: bool = False
    """Fitted on frames segmented with test-time augmentation."""
    with_tta: QualityModel | None = None
    """The score for test-time augmentation that goes with this plain one, where fitted."""

    def for_tta(self, tta: bool) -> QualityModel | None:
        """The score for segmenting with (or without) test-time augmentation: this one where it
        was fitted that way, its ``with_tta`` for TTA, else None (no calibrated score)."""
        if self.tta == tta:
            return self
        return self.with_tta if tta else None

    def standardised(self, signals: Sequence[dict[str, float]]) -> np.ndarray:
        """(N, len(self.signals)) the frames' features, standardised as fitted."""
        return (features(signals, self.signals) - np.asarray(self.mean)) / np.asarray(self.scale)

    def failure_score(self, signals: Sequence[dict[str, float]]) -> np.ndarray:
        return self.standardised(signals) @ np.asarray(self.weights) + self.bias

    def contributions(self, signals: Sequence[dict[str, float]]) -> np.ndarray:
        """(N, len(self.signals)) each signal's part of the failure score (weight x
        standardised value): the largest is what a flag's reason names."""
        return self.standardised(signals) * np.asarray(self.weights)

    def dice_of(self, score: np.ndarray) -> np.ndarray:
        """Predicted Dice of failure scores."""
        return np.interp(score, self.score_points, self.dice_points).astype(np.float64)

    def predict(self, signals: Sequence[dict[str, float]]) -> np.ndarray:
        """Predicted Dice of each frame (N,)."""
        return self.dice_of(self.failure_score(signals))

    def interval_of(self, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The (low, high) offsets from the predicted Dice of failure scores: their range's
        10% and 90% residual quantiles."""
        score = np.asarray(score, dtype=np.float64)
        if not self.interval_low:
            return np.full(score.shape, self.interval[0]), np.full(score.shape, self.interval[1])
        where = np.searchsorted(np.asarray(self.interval_edges), score)
        return np.asarray(self.interval_low)[where], np.asarray(self.interval_high)[where]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["with_tta"] = None if self.with_tta is None else self.with_tta.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> QualityModel:
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        names = fields.get("signals", SIGNALS)
        unknown = [name for name in names if name not in FEATURES]
        if unknown:
            raise ValueError(f"fitted on signals this version does not compute: {unknown}")
        for key in ("mean", "scale", "weights"):
            if len(fields.get(key, ())) != len(names):
                raise ValueError(f"{key} has {len(fields.get(key, ()))} values for {len(names)}")
        if fields.get("with_tta") is not None:
            fields["with_tta"] = cls.from_dict(data["with_tta"])
        return cls(**fields)


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
    "area": ("a large LV", "a small LV"),
    "peak": ("high confidence", "low confidence"),
    "uncertainty": ("an uncertain boundary", "a boundary with no doubt at all"),
    "fragments": ("fragments", "a single region"),
    "kept": ("a whole prediction", "a scattered prediction"),
    "solidity": ("a shape too regular", "an irregular shape"),
    "edge": ("an LV cut by the crop", "an LV clear of the crop's edge"),
    "area_jump": ("an area unlike its neighbouring slices'", "an area like its neighbours'"),
    "drift": ("a position away from the rest of the stack", "a position in line with the stack"),
    "presence": ("a class map that calls much LV", "little support from the class map"),
    "disagreement": ("views of the slice that disagree", "views that agree on a doubtful edge"),
}
"""How a flag's reason names the signal that weighs most toward failure: its words for a value
above the fitted frames' mean, and for one below (a signal weighs toward failure on the side its
weight points to)."""


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
    dice_low: np.ndarray | None = None
    """The low end of each frame's predicted-Dice interval (10%; NaN where not scored) ..."""
    dice_high: np.ndarray | None = None
    """... and the high end (90%)."""


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
    low, high = np.full(len(signals), np.nan), np.full(len(signals), np.nan)
    if chosen.size:
        frames = [signals[i] for i in chosen]
        failure[chosen] = scorer.failure_score(frames)
        predicted[chosen] = scorer.dice_of(failure[chosen])
        offset_low, offset_high = scorer.interval_of(failure[chosen])
        low[chosen] = np.clip(predicted[chosen] + offset_low, 0.0, 1.0)
        high[chosen] = np.clip(predicted[chosen] + offset_high, 0.0, 1.0)
        blame = scorer.contributions(frames)
        side = scorer.standardised(frames)
    flagged = np.zeros(len(signals), bool)
    reasons: dict[int, str] = {}
    for row, i in enumerate(chosen):
        why = [rule(signals[i]) for rule in RULES]
        why = [text for text in why if text]
        if predicted[i] < flag_below:
            worst = int(np.argmax(blame[row]))
            above, under = BLAME[scorer.signals[worst]]
            words = above if side[row, worst] > 0 else under
            why.insert(0, f"predicted Dice {predicted[i]:.2f}, mostly for {words}")
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
    return Judgement(predicted, flagged, reasons, flag_below, failure, low, high)


EF_REVIEW_SHARE = 0.05
"""An ejection fraction is for review when the frames flagged at its end-diastolic or
end-systolic phase hold more than this share of that phase's LV area. In the cross-validation
of ``benchmarks/quality_control.py`` (180 studies), 5% sends 23 of the 26 EFs off by more than
10 points for review (20 of 21 with test-time augmentation), and 36 of the 109 within 5 points
(28 of 119); 10% would send 19 (19) and 23 (21)."""


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


CURVE_PHASES = 5
"""A volume curve over at least this many phases is checked for its shape (one minimum)."""
CURVE_PROMINENCE = 0.15
"""A dip of the volume curve counts as a minimum when the curve rises by more than this share of
its range (EDV - ESV) on both sides of it before it falls lower."""


def curve_minima(volumes: Sequence[float]) -> list[int]:
    """The phases where a cine's LV volume curve (one cycle, so the last phase joins the first)
    has a minimum of prominence over :data:`CURVE_PROMINENCE` of its range; empty for a
    curve of fewer than :data:`CURVE_PHASES` phases or a flat one. A heart empties once per
    cycle: a second minimum is a phase segmented short, and the EF may come from it.

    >>> curve_minima([120, 110, 80, 60, 70, 90, 110, 118])
    [3]
    >>> curve_minima([120, 100, 60, 95, 62, 100, 118, 120])  # phase 4 dips away from its rise
    [2, 4]
    """
    from scipy.signal import find_peaks

    values = np.asarray(volumes, dtype=np.float64)
    if values.size < CURVE_PHASES or np.ptp(values) <= 0:
        return []
    n = values.size
    # three cycles end to end, so a minimum at the first or last phase has both sides
    dips, _ = find_peaks(-np.tile(values, 3), prominence=CURVE_PROMINENCE * np.ptp(values))
    return sorted(int(d - n) for d in dips if n <= d < 2 * n)


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


def scorer_for(scorer: QualityModel | None, tta: bool) -> QualityModel | None:
    """The score (or None) that judges frames segmented with (or without) test-time
    augmentation, of a model's embedded one (or None)."""
    return None if scorer is None else scorer.for_tta(tta)


def mode_mismatch(scorer: QualityModel, tta: bool) -> str:
    """Why a score file cannot judge frames segmented with (or without) test-time
    augmentation."""
    fitted = "with" if scorer.tta else "without"
    asked = "with" if tta else "without"
    return (
        f"a quality score fitted on frames segmented {fitted} test-time augmentation, and none "
        f"for frames segmented {asked} it"
    )


def default_quality_model() -> QualityModel | None:
    """The score shipped with lvseg (None where this install has none)."""
    return read_quality_model(DEFAULT_MODEL_FILE) if DEFAULT_MODEL_FILE.is_file() else None
