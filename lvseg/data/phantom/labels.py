"""One frame's labels: contours first, masks from them.

The endocardium and epicardium are polygons in the coordinates of Sunnybrook contour files
(corner origin, see :data:`CONTOUR_OFFSET_PX`; rounded to 0.01 px); the LV and myocardium masks
are those polygons filled by :func:`lvseg.data.contours.fill_contour`, so reading a written
phantom back through the Sunnybrook reader gives the very same masks, placed on the anatomy as
the expert masks are on real images. The RV mask is rasterised directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lvseg.data import contours
from lvseg.data.phantom.anatomy import Anatomy
from lvseg.data.phantom.heart import Angles, angles_at, boundary_radii
from lvseg.data.phantom.render import Frame
from lvseg.data.phantom.scene import Grid

CONTOUR_POINTS = 96
CONTOUR_OFFSET_PX = 0.5
"""Added to contour coordinates: Sunnybrook contour files count from the top-left *corner* of the
image (OsiriX convention), so a boundary at pixel-centre coordinates (x, y) is written as
(x + 0.5, y + 0.5). Measured on the 96 expert i-contours of ``sunnybrook-dicom``: filled with
:func:`~lvseg.data.contours.fill_contour`, they fit the image's blood-pool edge best unshifted,
while centre-convention phantom boundaries needed +0.6 px; with this offset phantom and real masks
sit on the anatomy the same way (Pillow's fill of a smooth polygon lands 0.5 px up-left)."""


@dataclass
class Outline:
    """The angles contour polygons are sampled at, and the patient's heart shape there."""

    theta: np.ndarray
    angles: Angles


def outline(anat: Anatomy) -> Outline:
    theta = np.linspace(-math.pi, math.pi, CONTOUR_POINTS, endpoint=False)
    return Outline(theta, angles_at(anat, theta))


@dataclass
class FrameLabels:
    """The contours and masks of one frame that cuts the heart."""

    endocardium: np.ndarray | None  # (x, y) polygon; None where the slice has no LV cavity
    epicardium: np.ndarray
    lv: np.ndarray
    myocardium: np.ndarray
    rv: np.ndarray


def label_frame(anat: Anatomy, grid: Grid, contour: Outline, frame: Frame) -> FrameLabels | None:
    """The labels of ``frame``; None where the slice misses the heart."""
    state, scene = frame.state, frame.scene
    if not state.epi_present:
        return None
    radii = boundary_radii(anat, state, contour.angles)
    epicardium = _polygon(grid, radii.epi, contour.theta, scene.centre)
    epi_mask = contours.fill_contour(epicardium, grid.shape)
    endocardium = None
    lv = np.zeros(grid.shape, bool)
    if state.lv_present:
        endocardium = _polygon(grid, radii.endo, contour.theta, scene.centre)
        lv = contours.fill_contour(endocardium, grid.shape)
    rv = np.zeros(grid.shape, bool)
    rv_window = (scene.rho < frame.radii.rv_cavity) & (frame.radii.rv_width > 0.3)
    rv[scene.window] = rv_window & ~epi_mask[scene.window]
    return FrameLabels(endocardium, epicardium, lv, epi_mask & ~lv, rv)


def _polygon(
    grid: Grid, radius: np.ndarray, theta: np.ndarray, centre: tuple[float, float]
) -> np.ndarray:
    """Contour points (x, y) as a contour file holds them (corner origin, 0.01 px)."""
    u = centre[0] + radius * np.cos(theta)
    v = centre[1] + radius * np.sin(theta)
    return np.round(grid.to_pixels(u, v) + CONTOUR_OFFSET_PX, 2)
