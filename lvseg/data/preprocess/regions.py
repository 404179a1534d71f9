"""Where the heart is on a slice, and square crops around a point (padded beyond the image)."""

from __future__ import annotations

import math

import numpy as np

from lvseg.data.records import SliceRecord


def heart_mask(record: SliceRecord) -> np.ndarray | None:
    """Union of all labelled structures (None when the record has no non-empty mask)."""
    masks = [m for m in record.masks.values() if m.any()]
    if not masks:
        return None
    return np.logical_or.reduce(masks)


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1), half-open, of the true pixels of a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def heart_centre(record: SliceRecord) -> tuple[float, float] | None:
    """Centre (row, col) of the bounding box of the labelled structures, None without masks.

    The box centre rather than the LV centroid, so a crop centred there holds the RV too where
    it is labelled, and its side equals the box side (what the fingerprint measures).
    """
    mask = heart_mask(record)
    if mask is None:
        return None
    r0, r1, c0, c1 = bounding_box(mask)
    return (r0 + r1 - 1) / 2, (c0 + c1 - 1) / 2


def image_centre(shape: tuple[int, int]) -> tuple[float, float]:
    return (shape[0] - 1) / 2, (shape[1] - 1) / 2


def crop_box_at(
    centre: tuple[float, float], size: int, offset: tuple[int, int] = (0, 0)
) -> tuple[int, int, int, int]:
    """The (row0, row1, col0, col1) square of side ``size`` centred on ``centre`` + ``offset``.

    The centre is rounded half up, so an even crop has ``size // 2`` pixels before the centre
    pixel; a cached context region and any crop taken from it therefore share the same origin.
    """
    row = math.floor(centre[0] + 0.5) + int(offset[0]) - size // 2
    col = math.floor(centre[1] + 0.5) + int(offset[1]) - size // 2
    return row, row + size, col, col + size


def crop_padded(
    array: np.ndarray, box: tuple[int, int, int, int], pad_value: float | bool = 0
) -> np.ndarray:
    """``array[..., row0:row1, col0:col1]``, padded with ``pad_value`` outside the array."""
    r0, r1, c0, c1 = box
    rows, cols = array.shape[-2:]
    out = np.full((*array.shape[:-2], r1 - r0, c1 - c0), pad_value, dtype=array.dtype)
    sr0, sr1, sc0, sc1 = max(r0, 0), min(r1, rows), max(c0, 0), min(c1, cols)
    if sr0 < sr1 and sc0 < sc1:
        out[..., sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0] = array[..., sr0:sr1, sc0:sc1]
    return out
