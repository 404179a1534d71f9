"""Clinical measures from segmented areas: LV volumes, ejection fraction, myocardial mass, and the
agreement of predicted with reference measures. Plain numbers in, plain numbers out (numpy/scipy,
no torch), so the report and a torch-free install share them.

- Volume by Simpson's disc summation, the clinical standard for short-axis cine MRI: each slice is
  a disc of its segmented area and of thickness equal to the slice spacing, V = sum(area) * spacing.
- Ejection fraction EF = (EDV - ESV) / EDV as a fraction in 0..1 (the report prints percent);
  None when EDV <= 0. Stroke volume SV = EDV - ESV.
- LV mass = myocardial volume * 1.05 g/ml (the density used throughout the CMR literature).
- Agreement (Bland-Altman): differences d = predicted - reference; bias = mean(d), sd = sample SD
  of d (ddof=1; 0 for one pair), limits of agreement = bias -+ 1.96 sd; Pearson r where it is
  defined (n >= 3 and both series vary), else None.

>>> ejection_fraction(edv=150.0, esv=60.0)
0.6
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

MYOCARDIAL_DENSITY_G_PER_ML = 1.05


def disc_volume_ml(areas_mm2: Sequence[float], slice_spacing_mm: float) -> float:
    """Simpson's disc summation: sum(area) * slice spacing, in ml (1 ml = 1000 mm^3)."""
    if slice_spacing_mm <= 0:
        raise ValueError(f"slice spacing must be positive, got {slice_spacing_mm} mm")
    return float(np.sum(areas_mm2, dtype=float)) * slice_spacing_mm / 1000.0


def ejection_fraction(edv: float, esv: float) -> float | None:
    """(EDV - ESV) / EDV as a fraction; None when EDV <= 0 (no end-diastolic volume to eject)."""
    return None if edv <= 0 else float((edv - esv) / edv)


def stroke_volume(edv: float, esv: float) -> float:
    """EDV - ESV, in the unit of the volumes (ml)."""
    return float(edv - esv)


def lv_mass_g(myocardium_areas_mm2: Sequence[float], slice_spacing_mm: float) -> float:
    """Myocardial disc volume times the myocardial density, in grams."""
    return disc_volume_ml(myocardium_areas_mm2, slice_spacing_mm) * MYOCARDIAL_DENSITY_G_PER_ML


@dataclass(frozen=True)
class Agreement:
    """Bland-Altman statistics and correlation of predicted against reference measures."""

    n: int
    bias: float
    sd: float
    loa_low: float
    loa_high: float
    pearson_r: float | None
    mean_abs_diff: float

    def to_dict(self) -> dict:
        return asdict(self)


def agreement(predicted: Sequence[float], reference: Sequence[float]) -> Agreement | None:
    """Agreement of paired measures (for example per-patient EF); None when there are none."""
    predicted, reference = np.asarray(predicted, float), np.asarray(reference, float)
    if predicted.shape != reference.shape or predicted.ndim != 1:
        raise ValueError(
            f"need two equally long 1-D series, got {predicted.shape} and {reference.shape}"
        )
    n = len(predicted)
    if n == 0:
        return None
    differences = predicted - reference
    bias = float(differences.mean())
    sd = float(differences.std(ddof=1)) if n > 1 else 0.0
    varies = np.ptp(predicted) > 0 and np.ptp(reference) > 0
    r = float(stats.pearsonr(predicted, reference)[0]) if n >= 3 and varies else None
    return Agreement(
        n=n,
        bias=bias,
        sd=sd,
        loa_low=bias - 1.96 * sd,
        loa_high=bias + 1.96 * sd,
        pearson_r=r,
        mean_abs_diff=float(np.abs(differences).mean()),
    )
