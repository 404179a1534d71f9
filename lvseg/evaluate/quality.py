"""The quality score against the truth: fitting it on cross-validation predictions, and
measuring how well it predicts Dice (scikit-learn; the train install).

The score must predict Dice on patients and scanners the model never saw, so it is fitted on
held-out predictions only: each cross-validation fold's model segments the patients it held out
(and, for failures to learn from, the same patients under controlled shifts), and the signals of
:mod:`lvseg.segment.quality` are paired with the true Dice. Two small, documented steps:

1. logistic regression (L2, balanced classes) of "Dice < FLAG_BELOW" on the standardised features:
   one weight per signal, readable as how much that signal says "failed";
2. isotonic regression (decreasing) of the true Dice on that failure score: a monotone,
   calibrated map to a predicted Dice; the 10% and 90% quantiles of the residuals, in
   :data:`INTERVAL_RANGES` ranges of the score with as many frames each, give the interval
   reported with it (a likely failure's Dice is far less certain than a likely success's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lvseg.data.records import ED, ES, SliceRecord
from lvseg.evaluate.stacks import ClinicalSection
from lvseg.segment.quality import (
    EF_REVIEW_SHARE,
    FLAG_BELOW,
    SCORED,
    Judgement,
    QualityModel,
    features,
    share_at_risk,
)

INTERVAL_RANGES = 4
"""Ranges of the failure score, of equal count, each with its own residual quantiles."""
CALIBRATION_EDGES = (0.0, 0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0)
"""Bins of predicted Dice in which the calibration table compares it with the true Dice."""


@dataclass
class CalibrationBin:
    """A range of predicted Dice: its frames and their mean predicted and true Dice."""

    predicted_from: float
    predicted_to: float
    frames: int
    mean_predicted: float
    mean_true: float


@dataclass
class StudiesReview:
    """Which ejection fractions quality control sends for review, against their errors."""

    studies: int
    review: int
    ef_error_over_5: int
    ef_error_over_5_reviewed: int
    ef_error_over_10: int
    ef_error_over_10_reviewed: int
    ef_within_5_reviewed: int
    auroc_ef_error_over_5: float | None


@dataclass
class QualityAssessment:
    """How well the quality score predicted the true Dice (``metrics.json``'s ``quality``)."""

    flag_below: float
    frames: int
    scored_frames: int
    failures: int
    auroc: float | None
    auroc_segmented: float | None
    empty_failures: int
    empty_failures_flagged: int
    spearman: float | None
    mae: float | None
    interval_coverage: float | None
    flagged: int
    failures_flagged: float | None
    good_flagged: float | None
    calibration: list[CalibrationBin]
    score: dict[str, Any] | None = None
    """The score judged: its source, the frames it was fitted on, and whether for TTA."""
    studies: StudiesReview | None = None


def fit_quality_model(
    signals: Sequence[dict[str, float]],
    dice: Sequence[float],
    *,
    flag_below: float = FLAG_BELOW,
    use: Sequence[str] = SCORED,
    tta: bool = False,
) -> QualityModel:
    """The score fitted on frames' signals and their true Dice, weighing the signals in
    ``use``; ``tta`` records that the frames were segmented with test-time augmentation."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    use = tuple(use)
    x = features(signals, use)
    y = np.asarray(dice, dtype=np.float64)
    if len(y) != len(x) or len(y) < 10:
        raise ValueError(f"need at least 10 frames with a Dice to fit on, got {len(y)}")
    failed = y < flag_below
    if failed.all() or not failed.any():
        raise ValueError(f"need frames both under and over Dice {flag_below} to fit on")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    logistic = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000)
    logistic.fit(z, failed)
    score = z @ logistic.coef_[0] + logistic.intercept_[0]
    isotonic = IsotonicRegression(increasing=False, out_of_bounds="clip").fit(score, y)
    residual = y - isotonic.predict(score)
    low, high = np.quantile(residual, [0.1, 0.9])
    edges = np.quantile(score, np.arange(1, INTERVAL_RANGES) / INTERVAL_RANGES)
    where = np.searchsorted(edges, score)
    ranges = [residual[where == k] for k in range(INTERVAL_RANGES)]
    return QualityModel(
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        weights=tuple(float(v) for v in logistic.coef_[0]),
        bias=float(logistic.intercept_[0]),
        score_points=tuple(float(v) for v in isotonic.X_thresholds_),
        dice_points=tuple(float(v) for v in isotonic.y_thresholds_),
        interval=(float(low), float(high)),
        fitted_on=len(y),
        signals=use,
        interval_edges=tuple(float(v) for v in edges),
        interval_low=tuple(float(np.quantile(r, 0.1)) if r.size else float(low) for r in ranges),
        interval_high=tuple(float(np.quantile(r, 0.9)) if r.size else float(high) for r in ranges),
        tta=tta,
    )


def risk(judgement: Judgement) -> np.ndarray:
    """What quality control says of every frame as one number, higher for likelier failure: the
    failure score where scored (the predicted Dice, negated, without one), and for an unscored
    frame +inf when it is flagged (a hole in the stack), -inf when not; a rule's flag ranks a
    scored frame first too."""
    scored = np.isfinite(judgement.predicted_dice)
    score = judgement.failure_score
    if score is None:
        score = -judgement.predicted_dice
    rule = scored & judgement.flagged & (judgement.predicted_dice >= judgement.flag_below)
    unscored = np.where(judgement.flagged, np.inf, -np.inf)
    return np.where(rule, np.inf, np.where(scored, score, unscored))


def assess(judgement: Judgement, dice: Sequence[float]) -> QualityAssessment:
    """How well the score predicted the true Dice of these frames (``metrics.json``'s
    ``quality``): failure detection (AUROC for Dice under the flag threshold, flagged shares),
    rank agreement (Spearman), error (mean absolute, coverage of the frames' 10-90% intervals)
    and a calibration table. Frames with no LV segmented are not scored: ``auroc`` ranks them
    by their flag (a hole in the stack first, the rest last), ``auroc_segmented`` leaves them
    out, and ``empty_failures`` counts those that had an LV to find."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    truth = np.asarray(dice, dtype=np.float64)
    failed = truth < judgement.flag_below
    scored = np.isfinite(judgement.predicted_dice)
    predicted = judgement.predicted_dice[scored]
    both = failed.any() and not failed.all()
    ranked = -risk(judgement)[scored]
    varied = scored.sum() > 2 and np.ptp(ranked) > 0 and np.ptp(truth[scored]) > 0
    spearman = spearmanr(ranked, truth[scored]).statistic if varied else None
    lower = judgement.predicted_dice if judgement.dice_low is None else judgement.dice_low
    upper = judgement.predicted_dice if judgement.dice_high is None else judgement.dice_high
    inside = (truth[scored] >= lower[scored]) & (truth[scored] <= upper[scored])
    ranks = _finite_ranks(risk(judgement))
    segmented_both = failed[scored].any() and not failed[scored].all()
    calibration = []
    for low, high in zip(CALIBRATION_EDGES, CALIBRATION_EDGES[1:], strict=False):
        members = (predicted >= low) & ((predicted < high) if high < 1.0 else (predicted <= high))
        if members.any():
            mean_predicted = float(predicted[members].mean())
            mean_true = float(truth[scored][members].mean())
            found = CalibrationBin(low, high, int(members.sum()), mean_predicted, mean_true)
            calibration.append(found)
    return QualityAssessment(
        flag_below=judgement.flag_below,
        frames=int(truth.size),
        scored_frames=int(scored.sum()),
        failures=int(failed.sum()),
        auroc=float(roc_auc_score(failed, ranks)) if both else None,
        auroc_segmented=(
            float(roc_auc_score(failed[scored], ranks[scored])) if segmented_both else None
        ),
        empty_failures=int((failed & ~scored).sum()),
        empty_failures_flagged=int((failed & ~scored & judgement.flagged).sum()),
        spearman=None if spearman is None else float(spearman),
        mae=float(np.abs(predicted - truth[scored]).mean()) if scored.any() else None,
        interval_coverage=float(inside.mean()) if scored.any() else None,
        flagged=int(judgement.flagged.sum()),
        failures_flagged=float(judgement.flagged[failed].mean()) if failed.any() else None,
        good_flagged=float(judgement.flagged[~failed].mean()) if (~failed).any() else None,
        calibration=calibration,
    )


def _finite_ranks(values: np.ndarray) -> np.ndarray:
    """The values' ranks (ties averaged): +-inf allowed, as roc_auc_score does not."""
    from scipy.stats import rankdata

    return rankdata(values)


def assess_studies(
    judgement: Judgement,
    records: Sequence[SliceRecord],
    signals: Sequence[dict[str, float]],
    clinical: ClinicalSection | None,
) -> StudiesReview | None:
    """How well quality control says which ejection fractions to review (``metrics.json``'s
    ``quality.studies``; None without a patient with both EFs): per patient, the share of the
    ED or ES LV area in flagged frames (:func:`~lvseg.segment.quality.share_at_risk`, as
    ``predict`` judges an EF) against the EF's error, in points: AUROC of that share for
    errors over 5 points, and the studies for review (a share over
    :data:`~lvseg.segment.quality.EF_REVIEW_SHARE`) among the wrong and the right EFs."""
    from sklearn.metrics import roc_auc_score

    errors, risks = [], []
    for patient in [] if clinical is None else clinical.patients:
        predicted, reference = patient.predicted.ef, patient.reference.ef
        if predicted is None or reference is None:
            continue
        members = [
            i
            for i, r in enumerate(records)
            if r.patient_id == patient.patient_id and r.phase in (ED, ES)
        ]
        shares = share_at_risk(
            judgement.flagged[members],
            [records[i].phase_index for i in members],
            [signals[i]["area"] for i in members],
        )
        errors.append(100 * abs(predicted - reference))
        risks.append(max(shares.values(), default=0.0))
    if not errors:
        return None
    error, risk_of = np.asarray(errors), np.asarray(risks)
    review = risk_of > EF_REVIEW_SHARE
    wrong = error > 5
    return StudiesReview(
        studies=len(errors),
        review=int(review.sum()),
        ef_error_over_5=int(wrong.sum()),
        ef_error_over_5_reviewed=int((review & wrong).sum()),
        ef_error_over_10=int((error > 10).sum()),
        ef_error_over_10_reviewed=int((review & (error > 10)).sum()),
        ef_within_5_reviewed=int((review & ~wrong).sum()),
        auroc_ef_error_over_5=(
            float(roc_auc_score(wrong, risk_of)) if wrong.any() and not wrong.all() else None
        ),
    )
