"""Clinical measures: disc-summation volume of a known ellipsoid, EF/SV/mass on simple numbers, and
Bland-Altman agreement with exact figures."""

from __future__ import annotations

import doctest
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from lvseg.evaluate import clinical
from lvseg.evaluate.clinical import (
    agreement,
    disc_volume_ml,
    ejection_fraction,
    lv_mass_g,
    stroke_volume,
)


def test_doctests_and_no_torch():
    assert doctest.testmod(clinical).failed == 0
    code = "import sys, lvseg.evaluate.clinical; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_disc_summation_of_an_ellipsoid_is_within_two_percent():
    a, b, c = 30.0, 25.0, 40.0  # semi-axes in mm; c along the long axis
    spacing_mm = 8.0
    rows, cols = np.mgrid[-40:41, -40:41].astype(float)  # 1 mm in-plane pixels
    areas_mm2 = []
    for z in np.arange(-c + spacing_mm / 2, c, spacing_mm):  # slice centres, each 8 mm thick
        scale = math.sqrt(1 - (z / c) ** 2)
        cross_section = (rows / (a * scale)) ** 2 + (cols / (b * scale)) ** 2 <= 1
        areas_mm2.append(float(cross_section.sum()))  # pixels of 1 mm^2
    exact_ml = 4 / 3 * math.pi * a * b * c / 1000
    assert disc_volume_ml(areas_mm2, spacing_mm) == pytest.approx(exact_ml, rel=0.02)


def test_volume_ef_stroke_volume_and_mass():
    assert disc_volume_ml([1000.0, 2000.0, 1000.0], 10.0) == 40.0
    assert disc_volume_ml([], 10.0) == 0.0
    with pytest.raises(ValueError, match="spacing"):
        disc_volume_ml([1000.0], 0.0)
    assert ejection_fraction(150.0, 60.0) == pytest.approx(0.6)
    assert ejection_fraction(0.0, 10.0) is None
    assert stroke_volume(150.0, 60.0) == 90.0
    assert lv_mass_g([1000.0, 2000.0, 1000.0], 10.0) == pytest.approx(42.0)


def test_agreement_on_fixed_lists():
    predicted, reference = [10.0, 12.0, 15.0, 20.0], [9.0, 13.0, 13.0, 18.0]  # d = 1, -1, 2, 2
    result = agreement(predicted, reference)
    assert result.n == 4
    assert result.bias == 1.0
    assert result.sd == pytest.approx(math.sqrt(2.0))  # sum of squared deviations 6, over 3
    assert result.loa_low == pytest.approx(1.0 - 1.96 * math.sqrt(2.0))
    assert result.loa_high == pytest.approx(1.0 + 1.96 * math.sqrt(2.0))
    assert result.mean_abs_diff == 1.5
    assert result.pearson_r == pytest.approx(stats.pearsonr(predicted, reference)[0])
    assert result.to_dict()["n"] == 4


def test_agreement_edge_cases():
    assert agreement([], []) is None
    one = agreement([5.0], [3.0])
    assert (one.n, one.bias, one.sd, one.loa_low, one.loa_high) == (1, 2.0, 0.0, 2.0, 2.0)
    assert one.pearson_r is None
    assert agreement([1.0, 2.0], [1.0, 3.0]).pearson_r is None  # r of two points is always +-1
    assert agreement([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]).pearson_r is None  # constant: undefined
    with pytest.raises(ValueError, match="equally long"):
        agreement([1.0, 2.0], [1.0])
