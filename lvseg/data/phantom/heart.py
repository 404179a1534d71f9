"""The heart's geometry and motion: its boundary radii around the LV centre per slice and phase.

20 phases run from end-diastole (phase 0) to end-systole (phase ``es_phase``) and back, following
a contraction curve (fast ejection, rapid filling, diastasis, atrial kick). The cavity shrinks by
a factor chosen from the ejection fraction, the base descends toward the apex, and the myocardial
area is conserved per angle (``Re^2 - Ri^2`` scaled by the long-axis shortening), so the wall
thickens in systole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lvseg.data.phantom.anatomy import Anatomy, LeftVentricle
from lvseg.data.phantom.patient import PHASES

MIN_RADIUS_MM = 2.0
"""An LV cavity (or epicardium) with a mean radius below this is absent on the slice."""


def contraction(phase: float, es_phase: int) -> float:
    """Fraction of end-systolic contraction at a phase: 0 at ED, 1 at ES (smooth, periodic)."""
    t = phase % PHASES
    if t <= es_phase:
        return 0.5 * (1.0 - math.cos(math.pi * t / es_phase))
    rest = PHASES - es_phase
    knots_t = [es_phase, es_phase + 0.4 * rest, PHASES - 0.2 * rest, PHASES]
    knots_f = [1.0, 0.22, 0.15, 0.0]
    for i in range(3):
        if t <= knots_t[i + 1]:
            s = (t - knots_t[i]) / (knots_t[i + 1] - knots_t[i])
            return knots_f[i] + (knots_f[i + 1] - knots_f[i]) * 0.5 * (1 - math.cos(math.pi * s))
    return 0.0


def _bump(theta: np.ndarray, centre: float, half_width: float, power: float = 2.0) -> np.ndarray:
    """A smooth angular window: 1 at ``centre``, 0 beyond ``half_width`` (radians)."""
    d = np.abs(np.remainder(theta - centre + math.pi, 2 * math.pi) - math.pi) / half_width
    return np.where(
        d < 1.0, np.maximum(np.cos(0.5 * math.pi * np.minimum(d, 1.0)), 0.0) ** power, 0.0
    )


@dataclass
class Angles:
    """Everything about a set of angles around the LV centre that does not change with time."""

    theta: np.ndarray
    shape_base: np.ndarray  # relative endocardial radius at the base and at the apex
    shape_apex: np.ndarray
    thickness: np.ndarray  # relative wall thickness (septal hypertrophy included)
    infarct: np.ndarray | None  # 0..1 infarct sector weight
    rv: np.ndarray  # 0..1 RV crescent profile
    fat: np.ndarray  # epicardial fat thickness before scaling, mm
    trabecular: np.ndarray  # relative depth of the trabeculated ramp (jagged)


def _fourier(theta: np.ndarray, coef: np.ndarray, first: int = 1) -> np.ndarray:
    """Sum of ``coef[j, 0] cos(k theta) + coef[j, 1] sin(k theta)``, k = first + j."""
    unit = np.exp(1j * theta)
    power = unit**first
    total = np.zeros(theta.shape)
    for cos_coef, sin_coef in coef:
        total += cos_coef * power.real + sin_coef * power.imag
        power = power * unit
    return total


def angles_at(anat: Anatomy, theta: np.ndarray) -> Angles:
    """The time-independent shape of the heart at angles ``theta`` (radians)."""
    thickness = 1.0 + _fourier(theta, anat.lv.thick_coef)
    if anat.lv.septal_boost:
        thickness = thickness * (1.0 + anat.lv.septal_boost * _bump(theta, anat.rv.angle, 1.0))
    infarct = None
    if anat.lv.infarct is not None:
        infarct = _bump(theta, anat.lv.infarct[0], anat.lv.infarct[1])
    return Angles(
        theta=theta,
        shape_base=1.0 + _fourier(theta, anat.lv.endo_base),
        shape_apex=1.0 + _fourier(theta, anat.lv.endo_apex),
        thickness=thickness,
        infarct=infarct,
        rv=_bump(theta, anat.rv.angle, anat.rv.half_width, power=anat.rv.power),
        fat=np.maximum(anat.fat.mean + _fourier(theta, anat.fat.coef), 0.0),
        # trabeculation lines the free wall; the septal surface is smooth
        trabecular=np.clip(1.0 + _fourier(theta, anat.pool.trabecular_coef, first=3), 0.1, 1.8)
        * (1.0 - 0.7 * _bump(theta, anat.rv.angle, 1.3)),
    )


@dataclass
class HeartState:
    """Where a slice cuts the heart at one phase: long-axis position and contraction."""

    zeta: float
    contraction: float
    lv_present: bool
    epi_present: bool
    rv_scale: float


def heart_state(anat: Anatomy, z: float, phase: int) -> HeartState:
    """Where the slice at ``z`` mm from the base cuts the heart at ``phase``."""
    f = contraction(phase, anat.motion.es_phase)
    descent = anat.motion.base_descent * f
    zeta = (z - descent) * anat.lv.long_axis / (anat.lv.long_axis - descent)
    endo = mean_radius(anat.lv, zeta, epi=False)
    epi = mean_radius(anat.lv, zeta, epi=True)
    rv_extent = 1.0 - (zeta / (anat.rv.extent * anat.lv.long_axis)) ** 2
    rv_scale = (1.0 - f * anat.rv.contraction) * math.sqrt(max(rv_extent, 0.0)) if zeta >= 0 else 0
    return HeartState(
        zeta=zeta,
        contraction=f,
        lv_present=zeta >= 0
        and endo * (1 - f * (1 - anat.motion.cavity_scale_es)) >= MIN_RADIUS_MM,
        epi_present=zeta >= 0 and epi >= MIN_RADIUS_MM,
        rv_scale=rv_scale,
    )


def mean_radius(lv: LeftVentricle, zeta: float, *, epi: bool) -> float:
    """Mean ED radius of the endocardium (or epicardium) at long-axis position ``zeta``."""
    radius = lv.radius + (lv.wall if epi else 0.0)
    apex = lv.long_axis + (lv.apex_cap if epi else 0.0)
    if zeta >= apex:
        return 0.0
    if zeta >= lv.equator:
        return radius * math.sqrt(1.0 - ((zeta - lv.equator) / (apex - lv.equator)) ** 2)
    return radius * (1.0 - 0.18 * ((lv.equator - zeta) / lv.equator) ** 2)


@dataclass
class Boundaries:
    """Boundary radii (mm) at a set of angles around the LV centre, for one slice and phase."""

    endo: np.ndarray  # endocardium (zero where the slice shows no LV cavity)
    ramp: np.ndarray  # depth of the trabeculated ramp inside the endocardium
    epi: np.ndarray  # epicardium (zero where the slice misses the heart)
    rv_cavity: np.ndarray
    rv_outer: np.ndarray  # the RV free wall's outer edge
    fat: np.ndarray  # the epicardial fat's outer edge
    rv_width: np.ndarray


def boundary_radii(anat: Anatomy, state: HeartState, angles: Angles) -> Boundaries:
    """Where each boundary lies at the given angles, for one slice and phase."""
    zeta = state.zeta
    w = float(np.clip(zeta / anat.lv.long_axis, 0.0, 1.0))
    thick = angles.thickness
    motion: np.ndarray | float = 1.0
    if angles.infarct is not None and anat.lv.infarct is not None:
        _, _, zeta0, zeta1 = anat.lv.infarct
        inside = min(zeta - zeta0 * anat.lv.long_axis, zeta1 * anat.lv.long_axis - zeta) / 8.0
        sector = angles.infarct * float(np.clip(inside, 0.0, 1.0))
        thick = thick * (1.0 - 0.5 * sector)
        motion = 1.0 - 0.9 * sector
    endo_mean = mean_radius(anat.lv, zeta, epi=False)
    epi_mean = mean_radius(anat.lv, zeta, epi=True)
    endo_ed = endo_mean * ((1 - w) * angles.shape_base + w * angles.shape_apex)
    epi_ed = endo_ed + max(epi_mean - endo_mean, 0.0) * thick
    # cavity contraction, then per-angle conservation of the myocardial area
    f = state.contraction
    endo = endo_ed * (1.0 - f * (1.0 - anat.motion.cavity_scale_es) * motion)
    shortening = anat.lv.long_axis / (anat.lv.long_axis - anat.motion.base_descent * f)
    epi = np.sqrt(endo * endo + (epi_ed * epi_ed - endo_ed * endo_ed) * shortening)
    zeros = np.zeros_like(angles.theta)
    depth = anat.pool.trabecular_depth * (1.0 + 0.5 * f) * (0.8 + 0.4 * w) * angles.trabecular
    ramp = np.maximum(np.minimum(depth, 0.7 * endo), 0.3)
    rv_width = (anat.rv.width * state.rv_scale) * angles.rv
    rv_cavity = epi + rv_width
    rv_outer = rv_cavity + anat.rv.wall * np.clip(rv_width / 3.0, 0.0, 1.0)
    return Boundaries(
        endo=endo if state.lv_present else zeros,
        ramp=ramp,
        epi=epi if state.epi_present else zeros,
        rv_cavity=rv_cavity,
        rv_outer=rv_outer,
        fat=rv_outer + angles.fat * min(1.0, epi_mean / 10.0),
        rv_width=rv_width,
    )
