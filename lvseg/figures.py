"""Drawing conventions shared by every picture of a slice (explanation panels, evaluation
reports): the contour colours and how a slice and a mask outline are drawn on a matplotlib axis.

One place, so a reader who learned "red is the prediction, green the reference" in one output
reads every other output the same way.
"""

from __future__ import annotations

import numpy as np

PREDICTION_COLOUR = "#ff3b30"
REFERENCE_COLOUR = "#34c759"


def display_range(image: np.ndarray) -> tuple[float, float]:
    """The grey window of a slice: its 1st to 99th percentile (robust to a few bright pixels)."""
    low, high = np.percentile(image, [1, 99])
    return float(low), float(max(high, low + 1e-6))


def draw_contour(axis, mask: np.ndarray, colour: str) -> None:
    """The outline of a boolean mask on a matplotlib axis (nothing for an empty or full mask)."""
    if mask.any() and not mask.all():
        axis.contour(mask.astype(np.float32), levels=[0.5], colors=colour, linewidths=1.0)
