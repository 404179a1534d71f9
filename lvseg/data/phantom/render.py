"""Rendering the MR images: the thorax, the heart, and the scanner's k-space and noise."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from lvseg.data.phantom.anatomy import Anatomy, Blob
from lvseg.data.phantom.heart import Angles, HeartState, angles_at, boundary_radii, mean_radius

CONTOUR_POINTS = 96
CONTOUR_OFFSET_PX = 0.5
"""Added to contour coordinates: Sunnybrook contour files count from the top-left *corner* of the
image (OsiriX convention), so a boundary at pixel-centre coordinates (x, y) is written as
(x + 0.5, y + 0.5). Measured on the 96 expert i-contours of ``sunnybrook-dicom``: filled with
:func:`~lvseg.data.contours.fill_contour`, they fit the image's blood-pool edge best unshifted,
while centre-convention phantom boundaries needed +0.6 px; with this offset phantom and real masks
sit on the anatomy the same way (Pillow's fill of a smooth polygon lands 0.5 px up-left)."""


@dataclass
class Grid:
    """Pixel-centre coordinates in body mm (u = screen right, v = screen down, LV centre = 0)."""

    u: np.ndarray
    v: np.ndarray
    spacing: float


def heart_pixel(anat: Anatomy, downscale: int) -> tuple[float, float]:
    """(row, col) of the body origin in the (possibly downscaled) image."""
    return (
        (anat.heart_px[0] + 0.5) / downscale - 0.5,
        (anat.heart_px[1] + 0.5) / downscale - 0.5,
    )


def pixel_grid(anat: Anatomy, rows: int, cols: int, spacing: float, downscale: int) -> Grid:
    heart_row, heart_col = heart_pixel(anat, downscale)
    y = (np.arange(rows, dtype=np.float32) - heart_row)[:, None] * spacing
    x = (np.arange(cols, dtype=np.float32) - heart_col)[None, :] * spacing
    c, s = math.cos(anat.rotation), math.sin(anat.rotation)
    return Grid(
        u=(c * x + s * y).astype(np.float32),
        v=(-s * x + c * y).astype(np.float32),
        spacing=spacing,
    )


def _to_pixels(
    anat: Anatomy, u: np.ndarray, v: np.ndarray, spacing: float, downscale: int
) -> np.ndarray:
    """Body mm -> (x = col, y = row) pixel coordinates, as contour files hold them."""
    c, s = math.cos(anat.rotation), math.sin(anat.rotation)
    heart_row, heart_col = heart_pixel(anat, downscale)
    x = heart_col + (c * u - s * v) / spacing
    y = heart_row + (s * u + c * v) / spacing
    return np.stack([x, y], axis=-1)


def _coverage(signed_distance_mm: np.ndarray, spacing: float) -> np.ndarray:
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
        canvas[box] += (0.04 - canvas[box]) * _coverage(distance - blob.rim, grid.spacing) * weight
    canvas[box] += (blob.value - canvas[box]) * _coverage(distance, grid.spacing) * weight


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

    background: np.ndarray  # tissue values, before gamma
    gain: np.ndarray  # texture x coil sensitivity
    window: tuple[slice, slice]
    du: np.ndarray
    dv: np.ndarray
    rho: np.ndarray
    angles: Angles
    centre: tuple[float, float]  # heart centre of this slice, body mm
    centre_px: tuple[float, float]  # the same in (row, col) pixels of the window


def slice_scene(anat: Anatomy, grid: Grid, z: float, rng: np.random.Generator) -> SliceScene:
    rows, cols = grid.u.shape
    values = anat.values
    zeta_ed = z / anat.long_axis
    toward_apex = float(np.clip(zeta_ed, 0.0, 1.0))

    canvas = np.zeros((rows, cols), np.float32)
    for arm in anat.arms:  # behind the body: where they touch, the body's skin wins
        _paint(canvas, grid, Blob(arm.centre, arm.axes, arm.angle, arm.harmonics, values["fat"]))
        inner = (arm.axes[0] - anat.subcutaneous_fat, arm.axes[1] - anat.subcutaneous_fat)
        _paint(canvas, grid, Blob(arm.centre, inner, arm.angle, arm.harmonics, arm.value))
    body_distance = _blob_distance(anat.body, grid.u, grid.v)
    fat_thickness = anat.subcutaneous_fat * (1.0 + 0.35 * _smooth_noise(rng, rows, cols, 5))
    body = _coverage(body_distance, grid.spacing)
    canvas += (values["fat"] - canvas) * body
    muscle = _coverage(body_distance + fat_thickness, grid.spacing)
    canvas += (values["muscle"] - canvas) * muscle
    cavity = _coverage(body_distance + fat_thickness + anat.chest_muscle, grid.spacing)
    canvas += (values["mediastinum"] - canvas) * cavity

    # Organs move with the slice: lungs shrink and the liver and stomach rise toward the apex.
    for number, blob in enumerate(anat.inside_cavity):
        centre, axes = blob.centre, blob.axes
        if number < 2:
            axes = (axes[0] * (1 - 0.25 * toward_apex), axes[1] * (1 - 0.2 * toward_apex))
        elif number < 4:
            centre = (centre[0], centre[1] - 25.0 * toward_apex)
            axes = (axes[0] * (0.8 + 0.3 * toward_apex), axes[1] * (0.8 + 0.3 * toward_apex))
        elif blob.depth is not None:
            middle, half, drift_u, drift_v = blob.depth
            along = (z - middle) / half
            scale = math.sqrt(max(0.0, 1.0 - along * along))
            if scale * min(axes) < 1.0:
                continue  # this slice misses it
            axes = (axes[0] * scale, axes[1] * scale)
            centre = (centre[0] + drift_u * (z - middle), centre[1] + drift_v * (z - middle))
        shifted = Blob(centre, axes, blob.angle, blob.harmonics, blob.value, blob.rim)
        _paint(canvas, grid, shifted, within=cavity)
        if number < 2:  # vessels in the lungs
            for _ in range(int(rng.integers(3, 10))):
                r, a = math.sqrt(rng.uniform(0, 0.6)), rng.uniform(0, 2 * math.pi)
                c, s = math.cos(blob.angle), math.sin(blob.angle)
                x, y = r * math.cos(a) * axes[0], r * math.sin(a) * axes[1]
                vessel_centre = (centre[0] + c * x - s * y, centre[1] + s * x + c * y)
                size = rng.uniform(1.2, 4.0)
                vessel = Blob(vessel_centre, (size, size), 0.0, (), values["lung_vessel"])
                _paint(canvas, grid, vessel, within=cavity)
        if number == 4:  # bright marrow inside the vertebral body
            marrow = (axes[0] * 0.6, axes[1] * 0.6)
            _paint(canvas, grid, Blob(centre, marrow, 0.0, blob.harmonics, blob.value * 1.5))

    # Multiplicative fields: tissue texture and the coil sensitivity (normalised at the heart).
    texture = 1.0 + anat.texture * (
        _smooth_noise(rng, rows, cols, max(6, rows // 10)) + 0.5 * _smooth_noise(rng, rows, cols, 4)
    )
    sensitivity = np.zeros((rows, cols), np.float32)
    reference = 0.0
    for cu, cv, weight, decay in anat.coils:
        sensitivity += weight * np.exp(-np.hypot(grid.u - cu, grid.v - cv) / decay)
        reference += weight * math.exp(-math.hypot(cu, cv) / decay)
    gain = (np.clip(texture, 0.5, 1.5) * sensitivity / reference).astype(np.float32)

    # The heart's centre drifts along the slices (oblique long axis) and between breath-holds.
    centre = (
        anat.drift[0] * (z - 0.5 * anat.long_axis) + rng.normal(0.0, 1.5),
        anat.drift[1] * (z - 0.5 * anat.long_axis) + rng.normal(0.0, 1.5),
    )
    # what the heart paints reaches the RV, fat and pericardium beyond the epicardium, or the
    # left atrium (at most 1.7 of its radius beyond it); the window bounds the larger, with room
    reach = (
        anat.lv_radius
        + 2.0 * anat.wall
        + max(1.3 * anat.rv_width + 10.0, 2.2 * anat.la_radius)
        + 15.0
    )
    near = (np.abs(grid.u - centre[0]) < reach) & (np.abs(grid.v - centre[1]) < reach)
    rows_in, cols_in = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
    window = (slice(rows_in[0], rows_in[-1] + 1), slice(cols_in[0], cols_in[-1] + 1))
    du, dv = grid.u[window] - centre[0], grid.v[window] - centre[1]
    c, s = math.cos(anat.rotation), math.sin(anat.rotation)
    centre_px = (
        rows_in[0] + (rows_in.size - 1) / 2 - float(du.mean() * s + dv.mean() * c) / grid.spacing,
        cols_in[0] + (cols_in.size - 1) / 2 - float(du.mean() * c - dv.mean() * s) / grid.spacing,
    )
    return SliceScene(
        background=canvas,
        gain=gain,
        window=window,
        du=du,
        dv=dv,
        rho=np.hypot(du, dv),
        angles=angles_at(anat, np.arctan2(dv, du)),
        centre=centre,
        centre_px=(centre_px[0] - rows_in[0], centre_px[1] - cols_in[0]),
    )


def _disc(
    canvas: np.ndarray,
    scene: SliceScene,
    anat: Anatomy,
    spacing: float,
    x: float,
    y: float,
    radius: float,
    value: float,
) -> None:
    """Composite a disc (centre relative to the slice's heart centre, mm) onto the window."""
    c, s = math.cos(anat.rotation), math.sin(anat.rotation)
    row = scene.centre_px[0] + (s * x + c * y) / spacing
    col = scene.centre_px[1] + (c * x - s * y) / spacing
    reach = radius / spacing + 2.0
    r0, r1 = max(int(row - reach), 0), min(int(row + reach) + 2, canvas.shape[0])
    c0, c1 = max(int(col - reach), 0), min(int(col + reach) + 2, canvas.shape[1])
    if r0 >= r1 or c0 >= c1:
        return
    box = (slice(r0, r1), slice(c0, c1))
    distance = np.hypot(scene.du[box] - x, scene.dv[box] - y) - radius
    canvas[box] += (value - canvas[box]) * _coverage(distance, spacing)


def paint_heart(
    anat: Anatomy,
    scene: SliceScene,
    state: HeartState,
    radii: dict[str, np.ndarray],
    spacing: float,
) -> np.ndarray:
    """The heart window of one frame: the background with the heart composited over it."""
    values = anat.values
    canvas = scene.background[scene.window].copy()
    rho = scene.rho
    epi_mean = mean_radius(anat, state.zeta, epi=True)
    long_axis = anat.long_axis

    # Basal slices: left atrium (posterior) and aortic root (anterior-septal), bright blood.
    la_size = float(np.clip((0.12 * long_axis - state.zeta) / (0.15 * long_axis), 0.0, 1.0))
    if la_size > 0:
        radius = anat.la_radius * math.sqrt(la_size)
        distance = max(epi_mean, 8.0) + 0.7 * radius
        x, y = distance * math.cos(anat.la_angle), distance * math.sin(anat.la_angle)
        _disc(canvas, scene, anat, spacing, x, y, radius + 2.0, values["myocardium"])
        _disc(canvas, scene, anat, spacing, x, y, radius, values["atrium"])
    root_size = float(np.clip((0.06 * long_axis - state.zeta) / (0.06 * long_axis), 0.0, 1.0))
    if root_size > 0:
        radius = anat.aortic_root_radius * root_size**0.3
        distance = max(epi_mean, 8.0) + 0.5 * radius
        x, y = (
            distance * math.cos(anat.aortic_root_angle),
            distance * math.sin(anat.aortic_root_angle),
        )
        _disc(canvas, scene, anat, spacing, x, y, radius + 1.5, values["myocardium"])
        _disc(canvas, scene, anat, spacing, x, y, radius, values["aorta"])

    if not state.epi_present:
        return canvas
    fat_thickness = radii["fat"] - radii["rv_outer"]
    rv_width = radii["rv_width"]
    layers = (
        (radii["fat"] + 1.2, values["pericardium"], None),
        (radii["fat"], values["epicardial_fat"], np.clip(fat_thickness / spacing, 0.0, 1.0)),
        (radii["rv_outer"], values["myocardium"], np.clip(rv_width / 2.0, 0.0, 1.0)),
        (radii["rv_cavity"], values["rv_blood"], np.clip(rv_width / spacing, 0.0, 1.0)),
        (radii["epi"], values["myocardium"], None),
    )
    for radius, value, gate in layers:
        alpha = _coverage(rho - radius, spacing)
        if gate is not None:
            alpha *= gate
        canvas += (value - canvas) * alpha
    if not state.lv_present:
        return canvas
    # the pool brightens from the wall inward (trabeculated, slow-flowing periphery)
    depth = np.clip((radii["endo"] - rho) / radii["ramp"], 0.0, 1.0) ** anat.trabecular_power
    pool = values["myocardium"] + (values["blood"] - values["myocardium"]) * depth
    canvas += (pool - canvas) * _coverage(rho - radii["endo"], spacing)

    # Papillary muscles and trabeculations: dark blobs against the wall, inside the blood pool.
    zeta = state.zeta / long_axis
    blobs = []
    papillary_weight = float(np.clip(min(zeta - 0.2, 0.92 - zeta) / 0.1, 0.0, 1.0))
    if papillary_weight > 0:
        grow = papillary_weight * (1 + 0.5 * state.contraction)
        for angle, radius, second in anat.papillary:
            blobs.append((angle, radius * grow))
            if second > 0.4:  # a second head beside the first
                blobs.append((angle + 0.35 * (second - 0.7), 0.8 * second * radius * grow))
    for angle, radius, where in anat.trabeculae:
        if abs(zeta - where) < 0.25:
            blobs.append((angle, radius))
    if blobs:
        angles = np.array([angle for angle, _ in blobs])
        endo = boundary_radii(anat, state, angles_at(anat, angles))["endo"]
        for (angle, radius), wall in zip(blobs, endo, strict=True):
            if radius < 0.5 or wall < 3.0:
                continue
            distance = max(wall - 0.9 * radius, 0.0)
            x, y = distance * math.cos(angle), distance * math.sin(angle)
            _disc(canvas, scene, anat, spacing, x, y, radius, values["myocardium"])
    return canvas


@dataclass
class Optics:
    """Per-patient k-space filter, noise level and field-of-view mask."""

    k_filter: np.ndarray
    acquired_rows: np.ndarray
    acquired_cols: np.ndarray
    noise_k: float
    fov_mask: np.ndarray | None


def make_optics(anat: Anatomy, rows: int, cols: int) -> Optics:
    def window(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        frequencies = np.fft.fftfreq(n) * 2.0  # -1..1 of Nyquist
        half = fraction
        inside = np.abs(frequencies) <= half
        edge = np.clip((half - np.abs(frequencies)) / max(anat.k_taper * half, 1e-6), 0.0, 1.0)
        taper = np.where(anat.k_taper > 0, 0.5 - 0.5 * np.cos(np.pi * edge), 1.0)
        return (inside * taper).astype(np.float32), np.flatnonzero(inside)

    row_window, acquired_rows = window(rows, anat.k_fraction[0])
    col_window, acquired_cols = window(cols, anat.k_fraction[1])
    acquired = acquired_rows.size * acquired_cols.size
    noise_k = anat.noise * rows * cols / math.sqrt(acquired)
    fov_mask = None
    radius, offset, curve = anat.fov_params
    y = (np.arange(rows) - rows / 2 + 0.5)[:, None] / cols
    x = (np.arange(cols) - cols / 2 + 0.5)[None, :] / cols
    if anat.fov_kind == "circle":
        fov_mask = ((x - offset) ** 2 + (y + offset) ** 2 <= radius**2).astype(np.float32)
    elif anat.fov_kind == "curved":
        fov_mask = (np.abs(x) <= radius * 0.85 + curve * y**2).astype(np.float32)
    return Optics(
        k_filter=np.outer(row_window, col_window),
        acquired_rows=acquired_rows,
        acquired_cols=acquired_cols,
        noise_k=noise_k,
        fov_mask=fov_mask,
    )


def acquire(anat: Anatomy, optics: Optics, obj: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Object -> magnitude image: k-space truncation, complex noise, magnitude, FOV, scaling."""
    kspace = sfft.fft2(obj, workers=1)
    kspace *= optics.k_filter
    shape = (optics.acquired_rows.size, optics.acquired_cols.size)
    noise = rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(
        shape, dtype=np.float32
    )
    kspace[np.ix_(optics.acquired_rows, optics.acquired_cols)] += optics.noise_k * noise
    image = np.abs(sfft.ifft2(kspace, workers=1))
    if optics.fov_mask is not None:
        image *= optics.fov_mask
    return np.clip(np.rint(image * anat.scale), 0, 32767).astype(np.float32)


def contour_polygon(
    anat: Anatomy,
    radius: np.ndarray,
    theta: np.ndarray,
    centre: tuple[float, float],
    spacing: float,
    downscale: int,
) -> np.ndarray:
    """Contour points (x, y) as a contour file holds them (corner origin, 0.01 px)."""
    u = centre[0] + radius * np.cos(theta)
    v = centre[1] + radius * np.sin(theta)
    return np.round(_to_pixels(anat, u, v, spacing, downscale) + CONTOUR_OFFSET_PX, 2)
