"""What one slice shows around the heart: the body, its organs, texture and coil sensitivity.

Everything here is the same at every phase of a slice; :mod:`~lvseg.data.phantom.render` paints
the beating heart over it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from lvseg.data.phantom.anatomy import Anatomy, ImagePlane
from lvseg.data.phantom.heart import Angles, angles_at
from lvseg.data.phantom.thorax import Blob


@dataclass
class Grid:
    """Pixel-centre coordinates in body mm (u = screen right, v = screen down, LV centre = 0)."""

    u: np.ndarray
    v: np.ndarray
    spacing: float  # mm per pixel
    heart_px: tuple[float, float]  # (row, col) of the body origin in this image
    rotation: float  # in-plane rotation of the anatomy, radians

    @property
    def shape(self) -> tuple[int, int]:
        return self.u.shape

    def to_pixels(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Body mm -> (x = col, y = row) pixel coordinates, as contour files hold them."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        heart_row, heart_col = self.heart_px
        x = heart_col + (c * u - s * v) / self.spacing
        y = heart_row + (s * u + c * v) / self.spacing
        return np.stack([x, y], axis=-1)


def pixel_grid(plane: ImagePlane, downscale: int) -> Grid:
    """The image grid, its matrix divided by ``downscale`` (same anatomy, fewer pixels)."""
    rows, cols = plane.rows // downscale, plane.cols // downscale
    spacing = round(plane.spacing * downscale, 4)
    heart_row = (plane.heart_px[0] + 0.5) / downscale - 0.5
    heart_col = (plane.heart_px[1] + 0.5) / downscale - 0.5
    y = (np.arange(rows, dtype=np.float32) - heart_row)[:, None] * spacing
    x = (np.arange(cols, dtype=np.float32) - heart_col)[None, :] * spacing
    c, s = math.cos(plane.rotation), math.sin(plane.rotation)
    return Grid(
        u=(c * x + s * y).astype(np.float32),
        v=(-s * x + c * y).astype(np.float32),
        spacing=spacing,
        heart_px=(heart_row, heart_col),
        rotation=plane.rotation,
    )


def coverage(signed_distance_mm: np.ndarray, spacing: float) -> np.ndarray:
    """Partial-volume coverage of a pixel by a region, from its signed distance (inside < 0)."""
    return np.clip(0.5 - signed_distance_mm / spacing, 0.0, 1.0)


def _blob_distance(blob: Blob, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance (mm) to a perturbed ellipse."""
    x, y = u - blob.centre[0], v - blob.centre[1]
    c, s = math.cos(blob.angle), math.sin(blob.angle)
    xr, yr = (c * x + s * y) / blob.axes[0], (-s * x + c * y) / blob.axes[1]
    q = np.sqrt(xr * xr + yr * yr)
    boundary: np.ndarray | float = 1.0
    if blob.harmonics:
        phi = np.arctan2(yr, xr)
        boundary = 1.0 + sum(a * np.cos(k * phi + p) for k, a, p in blob.harmonics)
    return (q - boundary) * (0.5 * (blob.axes[0] + blob.axes[1]))


def _paint(
    canvas: np.ndarray,
    grid: Grid,
    blob: Blob,
    within: np.ndarray | None = None,
) -> None:
    """Composite a blob onto ``canvas``, computing only inside its bounding box."""
    reach = max(blob.axes) * 1.4 + blob.rim + 2 * grid.spacing
    near = (np.abs(grid.u - blob.centre[0]) < reach) & (np.abs(grid.v - blob.centre[1]) < reach)
    rows = np.flatnonzero(near.any(axis=1))
    cols = np.flatnonzero(near.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    distance = _blob_distance(blob, grid.u[box], grid.v[box])
    weight = 1.0 if within is None else within[box]
    if blob.rim > 0:
        canvas[box] += (0.04 - canvas[box]) * coverage(distance - blob.rim, grid.spacing) * weight
    canvas[box] += (blob.value - canvas[box]) * coverage(distance, grid.spacing) * weight


def _smooth_noise(rng: np.random.Generator, rows: int, cols: int, cells: int) -> np.ndarray:
    """Smooth zero-mean noise of unit standard deviation: Gaussian bumps on a coarse grid."""

    def basis(n: int) -> np.ndarray:
        centres = np.linspace(-0.5, n - 0.5, cells)
        width = n / (cells - 1)
        return np.exp(-0.5 * ((np.arange(n)[:, None] - centres[None, :]) / width) ** 2)

    field_ = basis(rows) @ rng.standard_normal((cells, cells)) @ basis(cols).T
    return ((field_ - field_.mean()) / (field_.std() + 1e-6)).astype(np.float32)


@dataclass
class SliceScene:
    """What stays the same across the phases of one slice: background, fields, heart window."""

    z: float  # the slice's position along the long axis, mm from the base
    background: np.ndarray  # tissue values, before gamma
    gain: np.ndarray  # texture x coil sensitivity
    base: np.ndarray  # the object without the heart: background ** gamma x gain
    window: tuple[slice, slice]  # the part of the image the heart is painted on
    du: np.ndarray  # body mm from the heart centre, over the window
    dv: np.ndarray
    rho: np.ndarray
    angles: Angles
    centre: tuple[float, float]  # heart centre of this slice, body mm
    centre_px: tuple[float, float]  # the same in (row, col) pixels of the window
    spacing: float  # mm per pixel
    rotation: float  # in-plane rotation of the anatomy, radians


def slice_scene(anat: Anatomy, grid: Grid, z: float, rng: np.random.Generator) -> SliceScene:
    """The slice ``z`` mm from the base, drawing its random details from ``rng``."""
    canvas = np.zeros(grid.shape, np.float32)
    cavity = _paint_body(canvas, anat, grid, rng)
    for organ, inside in _organs_at(anat, z, rng):
        _paint(canvas, grid, organ, within=cavity if inside else None)
    gain = _gain(anat, grid, rng)
    # The heart's centre drifts along the slices (oblique long axis) and between breath-holds.
    drift, long_axis = anat.plane.drift, anat.lv.long_axis
    centre = (
        drift[0] * (z - 0.5 * long_axis) + rng.normal(0.0, 1.5),
        drift[1] * (z - 0.5 * long_axis) + rng.normal(0.0, 1.5),
    )
    window, centre_px = _heart_window(anat, grid, centre)
    du, dv = grid.u[window] - centre[0], grid.v[window] - centre[1]
    return SliceScene(
        z=z,
        background=canvas,
        gain=gain,
        base=canvas**anat.contrast.gamma * gain,
        window=window,
        du=du,
        dv=dv,
        rho=np.hypot(du, dv),
        angles=angles_at(anat, np.arctan2(dv, du)),
        centre=centre,
        centre_px=centre_px,
        spacing=grid.spacing,
        rotation=grid.rotation,
    )


def _paint_body(
    canvas: np.ndarray, anat: Anatomy, grid: Grid, rng: np.random.Generator
) -> np.ndarray:
    """Arms, then the body's fat, muscle and thoracic cavity; returns the cavity's coverage."""
    thorax, tissues = anat.thorax, anat.contrast.tissues
    for arm in thorax.arms:  # behind the body: where they touch, the body's skin wins
        _paint(canvas, grid, Blob(arm.centre, arm.axes, arm.angle, arm.harmonics, tissues.fat))
        inner = (arm.axes[0] - thorax.subcutaneous_fat, arm.axes[1] - thorax.subcutaneous_fat)
        _paint(canvas, grid, Blob(arm.centre, inner, arm.angle, arm.harmonics, arm.value))
    rows, cols = grid.shape
    body_distance = _blob_distance(thorax.body, grid.u, grid.v)
    fat_thickness = thorax.subcutaneous_fat * (1.0 + 0.35 * _smooth_noise(rng, rows, cols, 5))
    body = coverage(body_distance, grid.spacing)
    canvas += (tissues.fat - canvas) * body
    muscle = coverage(body_distance + fat_thickness, grid.spacing)
    canvas += (tissues.muscle - canvas) * muscle
    cavity = coverage(body_distance + fat_thickness + thorax.chest_muscle, grid.spacing)
    canvas += (tissues.mediastinum - canvas) * cavity
    return cavity


def _organs_at(anat: Anatomy, z: float, rng: np.random.Generator) -> list[tuple[Blob, bool]]:
    """The organs where the slice ``z`` cuts them, in painting order, each with True where only
    its part inside the thoracic cavity shows."""
    thorax = anat.thorax
    toward_apex = float(np.clip(z / anat.lv.long_axis, 0.0, 1.0))
    organs: list[tuple[Blob, bool]] = []
    # Organs move with the slice: lungs shrink and the liver and stomach rise toward the apex.
    for lung in thorax.lungs:
        axes = (lung.axes[0] * (1 - 0.25 * toward_apex), lung.axes[1] * (1 - 0.2 * toward_apex))
        organs.append((replace(lung, axes=axes), True))
        vessel_value = anat.contrast.tissues.lung_vessel
        organs += [(vessel, True) for vessel in _lung_vessels(lung, axes, vessel_value, rng)]
    for organ in (thorax.liver, thorax.stomach):
        centre = (organ.centre[0], organ.centre[1] - 25.0 * toward_apex)
        grow = 0.8 + 0.3 * toward_apex
        axes = (organ.axes[0] * grow, organ.axes[1] * grow)
        organs.append((replace(organ, centre=centre, axes=axes), True))
    spine = thorax.spine
    marrow = (spine.axes[0] * 0.6, spine.axes[1] * 0.6)  # bright, inside the vertebral body
    organs.append((spine, True))
    organs.append((Blob(spine.centre, marrow, 0.0, spine.harmonics, spine.value * 1.5), False))
    organs.append((thorax.aorta, True))
    for blob in anat.clutter:
        middle, half, drift_u, drift_v = blob.depth
        along = (z - middle) / half
        scale = math.sqrt(max(0.0, 1.0 - along * along))
        if scale * min(blob.axes) < 1.0:
            continue  # this slice misses it
        axes = (blob.axes[0] * scale, blob.axes[1] * scale)
        centre = (blob.centre[0] + drift_u * (z - middle), blob.centre[1] + drift_v * (z - middle))
        organs.append((replace(blob, centre=centre, axes=axes), True))
    return organs


def _lung_vessels(
    lung: Blob, axes: tuple[float, float], value: float, rng: np.random.Generator
) -> list[Blob]:
    """A few bright vessels at random places inside a lung (of these ``axes`` on this slice)."""
    vessels = []
    for _ in range(int(rng.integers(3, 10))):
        r, a = math.sqrt(rng.uniform(0, 0.6)), rng.uniform(0, 2 * math.pi)
        c, s = math.cos(lung.angle), math.sin(lung.angle)
        x, y = r * math.cos(a) * axes[0], r * math.sin(a) * axes[1]
        centre = (lung.centre[0] + c * x - s * y, lung.centre[1] + s * x + c * y)
        size = rng.uniform(1.2, 4.0)
        vessels.append(Blob(centre, (size, size), 0.0, (), value))
    return vessels


def _gain(anat: Anatomy, grid: Grid, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative fields: tissue texture and the coil sensitivity (normalised at the heart)."""
    rows, cols = grid.shape
    texture = 1.0 + anat.contrast.texture * (
        _smooth_noise(rng, rows, cols, max(6, rows // 10)) + 0.5 * _smooth_noise(rng, rows, cols, 4)
    )
    sensitivity = np.zeros((rows, cols), np.float32)
    reference = 0.0
    for cu, cv, weight, decay in anat.thorax.coils:
        sensitivity += weight * np.exp(-np.hypot(grid.u - cu, grid.v - cv) / decay)
        reference += weight * math.exp(-math.hypot(cu, cv) / decay)
    return (np.clip(texture, 0.5, 1.5) * sensitivity / reference).astype(np.float32)


def _heart_window(
    anat: Anatomy, grid: Grid, centre: tuple[float, float]
) -> tuple[tuple[slice, slice], tuple[float, float]]:
    """The part of the image the heart is painted on, and the heart centre's (row, col) in it."""
    # what the heart paints reaches the RV, fat and pericardium beyond the epicardium, or the
    # left atrium (at most 1.7 of its radius beyond it); the window bounds the larger, with room
    reach = (
        anat.lv.radius
        + 2.0 * anat.lv.wall
        + max(1.3 * anat.rv.width + 10.0, 2.2 * anat.base.la_radius)
        + 15.0
    )
    near = (np.abs(grid.u - centre[0]) < reach) & (np.abs(grid.v - centre[1]) < reach)
    rows_in, cols_in = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
    window = (slice(rows_in[0], rows_in[-1] + 1), slice(cols_in[0], cols_in[-1] + 1))
    du, dv = grid.u[window] - centre[0], grid.v[window] - centre[1]
    c, s = math.cos(grid.rotation), math.sin(grid.rotation)
    centre_px = (
        rows_in[0] + (rows_in.size - 1) / 2 - float(du.mean() * s + dv.mean() * c) / grid.spacing,
        cols_in[0] + (cols_in.size - 1) / 2 - float(du.mean() * c - dv.mean() * s) / grid.spacing,
    )
    return window, (centre_px[0] - rows_in[0], centre_px[1] - cols_in[0])
