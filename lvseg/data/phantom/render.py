"""One frame's MR image: the heart painted over the slice's scene, seen through the scanner.

Appearance (balanced SSFP cine): bright blood and fat, dark myocardium, intermediate organs,
per-patient random contrast (tissue values and a gamma), a smooth texture and a surface-coil
sensitivity (:mod:`~lvseg.data.phantom.scene`), then the scanner's k-space and noise
(:mod:`~lvseg.data.phantom.kspace`); the blur of the slice profile comes from rendering the heart
a third of the slice thickness either side too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lvseg.data.phantom.anatomy import Anatomy
from lvseg.data.phantom.heart import (
    Boundaries,
    HeartState,
    angles_at,
    boundary_radii,
    heart_state,
    mean_radius,
)
from lvseg.data.phantom.kspace import Optics, acquire
from lvseg.data.phantom.scene import SliceScene, coverage


@dataclass
class Frame:
    """One slice at one phase: where it cuts the heart, and the boundaries over its window."""

    scene: SliceScene
    phase: int
    state: HeartState
    radii: Boundaries


def make_frame(anat: Anatomy, scene: SliceScene, phase: int) -> Frame:
    state = heart_state(anat, scene.z, phase)
    return Frame(scene, phase, state, boundary_radii(anat, state, scene.angles))


def frame_image(
    anat: Anatomy, optics: Optics, frame: Frame, rng: np.random.Generator
) -> np.ndarray:
    """The magnitude image of ``frame``, its k-space noise drawn from ``rng``."""
    scene = frame.scene
    obj = scene.base.copy()
    heart = 0.5 * paint_heart(anat, scene, frame.state, frame.radii)
    # slice profile: the slice also sees the heart a third of its thickness either side
    for offset in (-anat.plane.thickness / 3, anat.plane.thickness / 3):
        side = heart_state(anat, scene.z + offset, frame.phase)
        heart += 0.25 * paint_heart(anat, scene, side, boundary_radii(anat, side, scene.angles))
    obj[scene.window] = np.maximum(heart, 0.0) ** anat.contrast.gamma * scene.gain[scene.window]
    return acquire(optics, obj, rng)


def paint_heart(
    anat: Anatomy, scene: SliceScene, state: HeartState, radii: Boundaries
) -> np.ndarray:
    """The heart window of one frame: the background with the heart composited over it."""
    canvas = scene.background[scene.window].copy()
    _paint_base(canvas, anat, scene, state)
    if not state.epi_present:
        return canvas
    _paint_walls(canvas, anat, scene, radii)
    if not state.lv_present:
        return canvas
    # the pool brightens from the wall inward (trabeculated, slow-flowing periphery)
    tissues = anat.contrast.tissues
    depth = np.clip((radii.endo - scene.rho) / radii.ramp, 0.0, 1.0) ** anat.pool.trabecular_power
    pool = tissues.myocardium + (tissues.blood - tissues.myocardium) * depth
    canvas += (pool - canvas) * coverage(scene.rho - radii.endo, scene.spacing)
    _paint_papillary(canvas, anat, scene, state)
    return canvas


def _paint_base(canvas: np.ndarray, anat: Anatomy, scene: SliceScene, state: HeartState) -> None:
    """Basal slices: left atrium (posterior) and aortic root (anterior-septal), bright blood."""
    base, tissues, long_axis = anat.base, anat.contrast.tissues, anat.lv.long_axis
    epi_mean = mean_radius(anat.lv, state.zeta, epi=True)
    la_size = float(np.clip((0.12 * long_axis - state.zeta) / (0.15 * long_axis), 0.0, 1.0))
    if la_size > 0:
        radius = base.la_radius * math.sqrt(la_size)
        distance = max(epi_mean, 8.0) + 0.7 * radius
        at = (distance * math.cos(base.la_angle), distance * math.sin(base.la_angle))
        _disc(canvas, scene, at, radius + 2.0, tissues.myocardium)
        _disc(canvas, scene, at, radius, tissues.atrium)
    root_size = float(np.clip((0.06 * long_axis - state.zeta) / (0.06 * long_axis), 0.0, 1.0))
    if root_size > 0:
        radius = base.aortic_root_radius * root_size**0.3
        distance = max(epi_mean, 8.0) + 0.5 * radius
        at = (
            distance * math.cos(base.aortic_root_angle),
            distance * math.sin(base.aortic_root_angle),
        )
        _disc(canvas, scene, at, radius + 1.5, tissues.myocardium)
        _disc(canvas, scene, at, radius, tissues.aorta)


def _paint_walls(canvas: np.ndarray, anat: Anatomy, scene: SliceScene, radii: Boundaries) -> None:
    """From the outside in: pericardium, epicardial fat, RV wall and cavity, LV myocardium."""
    tissues, spacing = anat.contrast.tissues, scene.spacing
    fat_thickness = radii.fat - radii.rv_outer
    rv_width = radii.rv_width
    layers = (
        (radii.fat + 1.2, tissues.pericardium, None),
        (radii.fat, tissues.epicardial_fat, np.clip(fat_thickness / spacing, 0.0, 1.0)),
        (radii.rv_outer, tissues.myocardium, np.clip(rv_width / 2.0, 0.0, 1.0)),
        (radii.rv_cavity, tissues.rv_blood, np.clip(rv_width / spacing, 0.0, 1.0)),
        (radii.epi, tissues.myocardium, None),
    )
    for radius, value, gate in layers:
        alpha = coverage(scene.rho - radius, spacing)
        if gate is not None:
            alpha *= gate
        canvas += (value - canvas) * alpha


def _paint_papillary(
    canvas: np.ndarray, anat: Anatomy, scene: SliceScene, state: HeartState
) -> None:
    """Papillary muscles and trabeculations: dark blobs against the wall, inside the blood pool."""
    zeta = state.zeta / anat.lv.long_axis
    blobs = []
    papillary_weight = float(np.clip(min(zeta - 0.2, 0.92 - zeta) / 0.1, 0.0, 1.0))
    if papillary_weight > 0:
        grow = papillary_weight * (1 + 0.5 * state.contraction)
        for angle, radius, second in anat.pool.papillary:
            blobs.append((angle, radius * grow))
            if second > 0.4:  # a second head beside the first
                blobs.append((angle + 0.35 * (second - 0.7), 0.8 * second * radius * grow))
    for angle, radius, where in anat.pool.trabeculae:
        if abs(zeta - where) < 0.25:
            blobs.append((angle, radius))
    if not blobs:
        return
    angles = np.array([angle for angle, _ in blobs])
    endo = boundary_radii(anat, state, angles_at(anat, angles)).endo
    for (angle, radius), wall in zip(blobs, endo, strict=True):
        if radius < 0.5 or wall < 3.0:
            continue
        distance = max(wall - 0.9 * radius, 0.0)
        at = (distance * math.cos(angle), distance * math.sin(angle))
        _disc(canvas, scene, at, radius, anat.contrast.tissues.myocardium)


def _disc(
    canvas: np.ndarray,
    scene: SliceScene,
    at: tuple[float, float],
    radius: float,
    value: float,
) -> None:
    """Composite a disc (centre ``at`` relative to the slice's heart centre, mm) onto the
    window."""
    x, y = at
    spacing = scene.spacing
    c, s = math.cos(scene.rotation), math.sin(scene.rotation)
    row = scene.centre_px[0] + (s * x + c * y) / spacing
    col = scene.centre_px[1] + (c * x - s * y) / spacing
    reach = radius / spacing + 2.0
    r0, r1 = max(int(row - reach), 0), min(int(row + reach) + 2, canvas.shape[0])
    c0, c1 = max(int(col - reach), 0), min(int(col + reach) + 2, canvas.shape[1])
    if r0 >= r1 or c0 >= c1:
        return
    box = (slice(r0, r1), slice(c0, c1))
    distance = np.hypot(scene.du[box] - x, scene.dv[box] - y) - radius
    canvas[box] += (value - canvas[box]) * coverage(distance, spacing)
