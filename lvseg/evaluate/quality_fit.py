"""Fitting the quality score on cross-validation predictions (scikit-learn; train install only).

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

from lvseg.segment.quality import FLAG_BELOW, QualityModel, features


def fit_quality_model(
    signals: Sequence[dict[str, float]], dice: Sequence[float], *, flag_below: float = FLAG_BELOW
) -> QualityModel:
    """The score fitted on frames' signals and their true Dice."""
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
    logistic = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000).fit(z, failed)
    score = logistic.decision_function(z)
    isotonic = IsotonicRegression(increasing=False, out_of_bounds="clip").fit(score, y)
    residual = y - isotonic.predict(score)
    low, high = np.quantile(residual, [0.1, 0.9])
    return QualityModel(
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        weights=tuple(float(v) for v in logistic.coef_[0]),
        bias=float(logistic.intercept_[0]),
        score_points=tuple(float(v) for v in isotonic.X_thresholds_),
        dice_points=tuple(float(v) for v in isotonic.y_thresholds_),
        interval=(float(low), float(high)),
        fitted_on=len(y),
    )
