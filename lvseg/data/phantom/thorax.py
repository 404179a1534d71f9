"""The body around the heart: thorax, organs and clutter as perturbed ellipses in body mm.

Body coordinates: +u screen right, +v screen down, the LV centre (at the base) at the origin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Blob:
    """A perturbed, rotated ellipse in body coordinates (mm), with a tissue value."""

    centre: tuple[float, float]
    axes: tuple[float, float]
    angle: float
    harmonics: tuple[tuple[int, float, float], ...]
    value: float
    rim: float = 0.0
    """Thickness (mm) of a dark outline, as bSSFP draws at fat/water and organ boundaries."""
    depth: tuple[float, float, float, float] | None = None
    """Where along the long axis the structure lies: (centre mm, half extent mm, drift u and v
    in mm per mm): an ellipsoid that grows, shrinks and moves from slice to slice, as bowel,
    stomach and vessels do. None: a cylinder through every slice (lungs, liver, spine, aorta)."""


@dataclass
class Thorax:
    """The static body around the heart, in body mm (+u screen right, +v screen down, LV centre
    at the origin): body outline with bright subcutaneous fat, chest wall muscle, dark lungs with
    vessels, liver, stomach, spine, descending aorta, and arms sometimes."""

    body: Blob
    subcutaneous_fat: float  # mm
    chest_muscle: float  # mm
    lungs: tuple[Blob, Blob]  # left (screen right), right (screen left)
    liver: Blob
    stomach: Blob
    spine: Blob
    aorta: Blob
    arms: tuple[Blob, ...]
    coils: tuple[tuple[float, float, float, float], ...]  # u, v, weight, decay length mm


def sample_thorax(rng: np.random.Generator) -> Thorax:
    """The body and its organs (their tissue values are filled in once those are drawn)."""
    u = rng.uniform
    body_b = u(125, 175)
    anterior_gap = u(75, 125)  # LV centre to the anterior skin
    body = Blob(  # its centre lies posterior (screen down) of the heart
        centre=(u(-20, 35), body_b - anterior_gap),
        axes=(u(185, 260), body_b),
        angle=u(-0.35, 0.35),
        harmonics=_harmonics(rng, 4, 0.03),
        value=0.0,
    )
    subcutaneous_fat, chest_muscle = u(6, 28), u(8, 25)
    # lungs: left lung lateral (screen right), right lung beyond the RV (screen left, anterior)
    lungs = (
        _organ(rng, ((55, 85), (-10, 30)), ((40, 65), (55, 90)), 0.6, (4, 0.06)),
        _organ(rng, ((-95, -60), (-40, 0)), ((30, 55), (50, 85)), 0.6, (4, 0.06)),
    )
    # liver (screen lower left), stomach (lower right), spine and descending aorta (posterior)
    liver = _organ(rng, ((-75, -25), (55, 100)), ((55, 95), (40, 70)), 0.5, (3, 0.05))
    stomach = _organ(rng, ((25, 80), (60, 105)), ((22, 55), (18, 45)), 1.0, (3, 0.08))
    aorta_centre = (u(10, 45), u(52, 80))
    spine_centre = (aorta_centre[0] + u(-45, -25), aorta_centre[1] + u(8, 25))
    spine = Blob(spine_centre, (u(14, 19),) * 2, 0.0, _harmonics(rng, 3, 0.05), 0.0)
    aorta = Blob(aorta_centre, (u(9, 13),) * 2, 0.0, (), 0.0, rim=u(1.0, 2.5))
    arms = []
    for side in (-1.0, 1.0):  # the oblique plane often cuts an arm beside the anterior chest
        if u() < 0.35:
            centre = (side * u(90, 180), -anterior_gap - u(15, 70))
            axes = (u(30, 50), u(35, 60))
            arms.append(Blob(centre, axes, u(-math.pi, math.pi), _harmonics(rng, 3, 0.05), 0.0))
    coils = (  # surface coils: two on the chest, one on the back
        (u(-80, 80), body.centre[1] - body_b - u(0, 15), u(0.7, 1.3), u(50, 130)),
        (u(-80, 80), body.centre[1] - body_b - u(0, 15), u(0.7, 1.3), u(50, 130)),
        (u(-80, 80), body.centre[1] + body_b + u(0, 20), u(0.5, 1.0), u(50, 130)),
    )
    return Thorax(
        body,
        subcutaneous_fat,
        chest_muscle,
        lungs,
        liver,
        stomach,
        spine,
        aorta,
        tuple(arms),
        coils,
    )


def _organ(
    rng: np.random.Generator,
    centre: tuple[tuple[float, float], tuple[float, float]],
    axes: tuple[tuple[float, float], tuple[float, float]],
    tilt: float,
    harmonics: tuple[int, float],
) -> Blob:
    """An organ drawn within ranges: centre and axes (u, v), tilt up to ``tilt`` radians either
    way, outline perturbation (count, amplitude); its value is filled in later."""
    u = rng.uniform
    return Blob(
        (u(*centre[0]), u(*centre[1])),
        (u(*axes[0]), u(*axes[1])),
        u(-tilt, tilt),
        _harmonics(rng, *harmonics),
        0.0,
    )


def sample_clutter(rng: np.random.Generator, long_axis: float) -> tuple[Blob, ...]:
    """Organ clutter in the abdomen and around the thorax: each structure an ellipsoid that
    appears, grows, moves and vanishes over a few slices (as cylinders through the whole stack,
    bright ones outvoted the LV when predict located the heart)."""
    u = rng.uniform
    brightness = u(0.6, 1.2)
    clutter = []
    for _ in range(int(rng.integers(4, 13))):  # bowel, vessels, spleen...
        angle = u(0.0, math.pi) if u() < 0.75 else u(-math.pi, 0.0)
        distance = u(75, 150)
        clutter.append(
            Blob(
                (distance * math.cos(angle), distance * math.sin(angle)),
                (u(6, 32), u(6, 32)),
                u(-math.pi, math.pi),
                _harmonics(rng, 3, 0.08),
                u(0.08, 1.2) * brightness,
                rim=u(0.8, 3.0) if u() < 0.5 else 0.0,
                depth=(u(-30, long_axis + 30), u(12, 60), u(-0.4, 0.4), u(-0.4, 0.4)),
            )
        )
    for _ in range(int(rng.integers(5, 16))):  # small vessels and bowel loops anywhere
        angle, distance, size = u(-math.pi, math.pi), u(60, 170), u(2.5, 9)
        clutter.append(
            Blob(
                (distance * math.cos(angle), distance * math.sin(angle)),
                (size, size * u(0.6, 1.0)),
                u(-math.pi, math.pi),
                (),
                u(0.1, 1.2),
                rim=u(0.8, 2.0) if u() < 0.3 else 0.0,
                depth=(u(-30, long_axis + 30), u(15, 120), u(-0.6, 0.6), u(-0.6, 0.6)),
            )
        )
    return tuple(clutter)


def _harmonics(rng: np.random.Generator, count: int, amplitude: float) -> tuple:
    return tuple(
        (k, float(rng.normal(0.0, amplitude / k)), float(rng.uniform(0, 2 * math.pi)))
        for k in range(2, count + 2)
    )
