"""The quality score against the truth: fitting it on cross-validation predictions, and
measuring how well it predicts Dice (scikit-learn; the train install).

The score must predict Dice on patients and scanners the model never saw, so it is fitted on
held-out predictions only: each cross-validation fold's model segments the patients it held out
(and, for failures to learn from, the same patients under controlled shifts), and the signals of
:mod:`lvseg.segment.quality` are paired with the true Dice. Two small, documented steps:

1. logistic regression (L2, balanced classes) of "Dice < FLAG_BELOW" on the standardised features:
   one weight per signal, readable as how much that signal says "failed";
2. isotonic regression (decreasing) of the true Dice on that failure score: a monotone,
   calibrated map to a predicted Dice; the 10% and 90% quantiles of the residuals give the
   interval reported with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lvseg.segment.quality import FLAG_BELOW, SCORED, SIGNALS, Judgement, QualityModel, features

CALIBRATION_EDGES = (0.0, 0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0)
"""Bins of predicted Dice in which the calibration table compares it with the true Dice."""


def fit_quality_model(
    signals: Sequence[dict[str, float]],
    dice: Sequence[float],
    *,
    flag_below: float = FLAG_BELOW,
    use: Sequence[str] = SCORED,
) -> QualityModel:
    """The score fitted on frames' signals and their true Dice; only the signals in ``use``
    get a weight (the others 0)."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    x = features(signals)
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
    columns = [SIGNALS.index(name) for name in use]
    logistic = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000)
    logistic.fit(z[:, columns], failed)
    weights = np.zeros(len(SIGNALS))
    weights[columns] = logistic.coef_[0]
    score = z @ weights + logistic.intercept_[0]
    isotonic = IsotonicRegression(increasing=False, out_of_bounds="clip").fit(score, y)
    residual = y - isotonic.predict(score)
    low, high = np.quantile(residual, [0.1, 0.9])
    return QualityModel(
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        weights=tuple(float(v) for v in weights),
        bias=float(logistic.intercept_[0]),
        score_points=tuple(float(v) for v in isotonic.X_thresholds_),
        dice_points=tuple(float(v) for v in isotonic.y_thresholds_),
        interval=(float(low), float(high)),
        fitted_on=len(y),
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


def assess(judgement: Judgement, dice: Sequence[float], interval: tuple[float, float]) -> dict:
    """How well the score predicted the true Dice of these frames (``metrics.json``'s
    ``quality``): failure detection (AUROC for Dice under the flag threshold, flagged shares),
    rank agreement (Spearman), error (mean absolute, coverage of the interval) and a
    calibration table."""
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
    inside = (truth[scored] >= predicted + interval[0]) & (truth[scored] <= predicted + interval[1])
    calibration = []
    for low, high in zip(CALIBRATION_EDGES, CALIBRATION_EDGES[1:], strict=False):
        members = (predicted >= low) & ((predicted < high) if high < 1.0 else (predicted <= high))
        if members.any():
            calibration.append(
                {
                    "predicted_from": low,
                    "predicted_to": high,
                    "frames": int(members.sum()),
                    "mean_predicted": float(predicted[members].mean()),
                    "mean_true": float(truth[scored][members].mean()),
                }
            )
    return {
        "flag_below": judgement.flag_below,
        "frames": int(truth.size),
        "scored_frames": int(scored.sum()),
        "failures": int(failed.sum()),
        "auroc": float(roc_auc_score(failed, _finite_ranks(risk(judgement)))) if both else None,
        "spearman": None if spearman is None else float(spearman),
        "mae": float(np.abs(predicted - truth[scored]).mean()) if scored.any() else None,
        "interval": list(interval),
        "interval_coverage": float(inside.mean()) if scored.any() else None,
        "flagged": int(judgement.flagged.sum()),
        "failures_flagged": float(judgement.flagged[failed].mean()) if failed.any() else None,
        "good_flagged": float(judgement.flagged[~failed].mean()) if (~failed).any() else None,
        "calibration": calibration,
    }


def _finite_ranks(values: np.ndarray) -> np.ndarray:
    """The values' ranks (ties averaged): +-inf allowed, as roc_auc_score does not."""
    from scipy.stats import rankdata

    return rankdata(values)
