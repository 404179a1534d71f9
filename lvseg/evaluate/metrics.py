"""Segmentation metrics on boolean masks (numpy), shared by every command that scores a
prediction: the live monitor's watch slices, ``lvseg explain`` and, later, ``lvseg evaluate``.

>>> import numpy as np
>>> a = np.array([[1, 1], [0, 0]], bool); b = np.array([[1, 0], [0, 0]], bool)
>>> round(dice(a, b), 4), dice(a[:0], b[:0])
(0.6667, 1.0)
"""

from __future__ import annotations

import numpy as np


def dice(predicted: np.ndarray, reference: np.ndarray) -> float:
    """Hard Dice of two boolean masks; 1 where both are empty (as in training)."""
    total = int(predicted.sum()) + int(reference.sum())
    return 1.0 if total == 0 else 2.0 * int((predicted & reference).sum()) / total
