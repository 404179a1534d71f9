"""The scanner: from the painted object to the magnitude image that is written.

k-space truncation with an anisotropic acquisition matrix (blur, partial volume and Gibbs
ringing), complex Gaussian noise added in k-space so the magnitude image has Rician noise, and
sometimes a zeroed reconstruction circle or curved field-of-view edges as in the Sunnybrook scans.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from lvseg.data.phantom.anatomy import Scanner


@dataclass
class Optics:
    """Per-patient k-space filter, noise level, field-of-view mask and intensity scale."""

    k_filter: np.ndarray
    acquired_rows: np.ndarray
    acquired_cols: np.ndarray
    noise_k: float
    fov_mask: np.ndarray | None
    scale: float


def make_optics(scanner: Scanner, rows: int, cols: int) -> Optics:
    """The scanner's filter and masks for an image of ``rows`` x ``cols``."""

    def window(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        frequencies = np.fft.fftfreq(n) * 2.0  # -1..1 of Nyquist
        half = fraction
        inside = np.abs(frequencies) <= half
        edge = np.clip((half - np.abs(frequencies)) / max(scanner.k_taper * half, 1e-6), 0.0, 1.0)
        taper = np.where(scanner.k_taper > 0, 0.5 - 0.5 * np.cos(np.pi * edge), 1.0)
        return (inside * taper).astype(np.float32), np.flatnonzero(inside)

    row_window, acquired_rows = window(rows, scanner.k_fraction[0])
    col_window, acquired_cols = window(cols, scanner.k_fraction[1])
    acquired = acquired_rows.size * acquired_cols.size
    noise_k = scanner.noise * rows * cols / math.sqrt(acquired)
    fov_mask = None
    radius, offset, curve = scanner.fov_params
    y = (np.arange(rows) - rows / 2 + 0.5)[:, None] / cols
    x = (np.arange(cols) - cols / 2 + 0.5)[None, :] / cols
    if scanner.fov_kind == "circle":
        fov_mask = ((x - offset) ** 2 + (y + offset) ** 2 <= radius**2).astype(np.float32)
    elif scanner.fov_kind == "curved":
        fov_mask = (np.abs(x) <= radius * 0.85 + curve * y**2).astype(np.float32)
    return Optics(
        k_filter=np.outer(row_window, col_window),
        acquired_rows=acquired_rows,
        acquired_cols=acquired_cols,
        noise_k=noise_k,
        fov_mask=fov_mask,
        scale=scanner.scale,
    )


def acquire(optics: Optics, obj: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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
    return np.clip(np.rint(image * optics.scale), 0, 32767).astype(np.float32)
