"""The shared Dice of boolean masks: exact values and the both-empty convention."""

from __future__ import annotations

import doctest

import numpy as np

from lvseg.evaluate import metrics
from lvseg.evaluate.metrics import dice


def test_dice_on_fixed_masks():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert dice(a, b) == 1.0  # both empty: agreement, never NaN
    a[0, :2] = True
    assert dice(a, b) == 0.0
    b[0, 1:3] = True
    assert dice(a, b) == 0.5  # 2 * 1 / (2 + 2)
    assert doctest.testmod(metrics).failed == 0
