"""Segmentation metrics on boolean masks (numpy), shared by every command that scores a
prediction: the live monitor's watch slices, ``lvseg explain`` and ``lvseg evaluate``.

Everything here is numpy/scipy/scikit-image only, so a torch-free install can score predictions.
Every measure is defined for every input, including empty masks, and never returns NaN.

Overlap, from the pixel counts TP, FP, FN, TN of a predicted mask against a reference:

- ``dice`` = 2 TP / (2 TP + FP + FN); ``iou`` = TP / (TP + FP + FN); both 1.0 when both are empty.
- ``precision`` = TP / (TP + FP): 1.0 when both are empty, 0.0 when only the prediction is empty.
- ``recall`` = TP / (TP + FN): 1.0 when the reference is empty (there is nothing to miss).
- ``pixel_accuracy`` = (TP + TN) / N; ``background_accuracy`` = the accuracy of an all-background
  prediction, 1 - mean(reference): the floor pixel accuracy has to beat on small structures.

Distances, in mm when ``spacing_mm = (row_mm, col_mm)`` is given, else in pixels (units "px"):

- The *surface* of a mask is ``mask XOR binary_erosion(mask)`` (cross structuring element, pixels
  outside the image count as background): its inner boundary pixels, as MONAI's ``get_mask_edges``.
- ``hausdorff95``: the larger of the two directed 95th percentiles (linear interpolation) of the
  surface-to-surface distances; ``assd``: the mean of both directed distance sets together.
- ``average_perpendicular_distance`` (APD, the Sunnybrook challenge measure, Radau et al. 2009):
  the mean, over the points of the predicted contour, of the distance to the nearest point on the
  reference contour polyline. A contour is "good" when its APD is below 5 mm (most papers) or
  4 mm (the challenge's first evaluation script).
- All three are 0.0 when both masks are empty and None when exactly one is: a distance to nothing
  is undefined, and the caller counts such slices (``SliceScores.detected``/``false_positive``).

>>> import numpy as np
>>> a = np.array([[1, 1], [0, 0]], bool); b = np.array([[1, 0], [0, 0]], bool)
>>> round(dice(a, b), 4), dice(a[:0], b[:0])
(0.6667, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from skimage import measure

# APD thresholds of a good contour: 5 mm as in most papers, 4 mm as in the challenge's first script
GOOD_CONTOUR_MM = (5.0, 4.0)


def dice(predicted: np.ndarray, reference: np.ndarray) -> float:
    """Hard Dice of two boolean masks; 1 where both are empty (as in training)."""
    total = int(predicted.sum()) + int(reference.sum())
    return 1.0 if total == 0 else 2.0 * int((predicted & reference).sum()) / total


# ---------------------------------------------------------------------------------------------
# input checks


def _mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got an array of shape {mask.shape}")
    return mask


def _masks(predicted: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predicted, reference = _mask(predicted), _mask(reference)
    if predicted.shape != reference.shape:
        raise ValueError(
            f"predicted and reference masks differ in shape: {predicted.shape} != {reference.shape}"
        )
    return predicted, reference


def _spacing(spacing_mm: Sequence[float] | None) -> tuple[float, float]:
    if spacing_mm is None:
        return (1.0, 1.0)
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != 2 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing_mm must be two positive numbers (row_mm, col_mm), got {spacing}")
    return spacing  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# overlap


def iou(predicted: np.ndarray, reference: np.ndarray) -> float:
    """Intersection over union (Jaccard); 1.0 when both masks are empty."""
    predicted, reference = _masks(predicted, reference)
    union = int((predicted | reference).sum())
    return 1.0 if union == 0 else int((predicted & reference).sum()) / union


def precision(predicted: np.ndarray, reference: np.ndarray) -> float:
    """TP / (TP + FP); 1.0 when both are empty, 0.0 when only the prediction is empty."""
    predicted, reference = _masks(predicted, reference)
    n_predicted = int(predicted.sum())
    if n_predicted == 0:
        return 0.0 if reference.any() else 1.0
    return int((predicted & reference).sum()) / n_predicted


def recall(predicted: np.ndarray, reference: np.ndarray) -> float:
    """TP / (TP + FN), the sensitivity; 1.0 when the reference is empty (nothing to miss)."""
    predicted, reference = _masks(predicted, reference)
    n_reference = int(reference.sum())
    return 1.0 if n_reference == 0 else int((predicted & reference).sum()) / n_reference


def pixel_accuracy(predicted: np.ndarray, reference: np.ndarray) -> float:
    """(TP + TN) / N, the fraction of pixels labelled right; 1.0 for a zero-size image."""
    predicted, reference = _masks(predicted, reference)
    return 1.0 if reference.size == 0 else 1.0 - int((predicted ^ reference).sum()) / reference.size


def background_accuracy(reference: np.ndarray) -> float:
    """Pixel accuracy of predicting background everywhere, 1 - mean(reference)."""
    reference = _mask(reference)
    return 1.0 if reference.size == 0 else 1.0 - int(reference.sum()) / reference.size


# ---------------------------------------------------------------------------------------------
# surface distances
#
# Written by hand rather than calling MONAI: MONAI needs torch, and returns NaN or inf when a mask
# is empty, where we want defined values on a torch-free path. The definition follows MONAI's
# (edges by erosion XOR, exact Euclidean distances, torch.quantile's linear percentile), so the
# tests cross-check hausdorff95 and assd against MONAI exactly.


def _surface(mask: np.ndarray) -> np.ndarray:
    # border_value=0: the image border erodes, as MONAI's zero-padded crop does before eroding.
    return mask ^ ndimage.binary_erosion(mask)


def surface_distances(
    predicted: np.ndarray, reference: np.ndarray, spacing_mm: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Distances from each predicted surface pixel to the nearest reference surface pixel, and
    from each reference surface pixel to the nearest predicted one; None if either mask is empty.
    """
    predicted, reference = _masks(predicted, reference)
    sampling = _spacing(spacing_mm)
    if not predicted.any() or not reference.any():
        return None
    predicted_surface, reference_surface = _surface(predicted), _surface(reference)
    to_reference = ndimage.distance_transform_edt(~reference_surface, sampling=sampling)
    to_predicted = ndimage.distance_transform_edt(~predicted_surface, sampling=sampling)
    return to_reference[predicted_surface], to_predicted[reference_surface]


def _hd95_of(to_reference: np.ndarray, to_predicted: np.ndarray) -> float:
    return float(max(np.percentile(to_reference, 95), np.percentile(to_predicted, 95)))


def _assd_of(to_reference: np.ndarray, to_predicted: np.ndarray) -> float:
    return float(np.concatenate([to_reference, to_predicted]).mean())


def _surface_measure(predicted, reference, spacing_mm, reduce) -> float | None:
    predicted, reference = _masks(predicted, reference)
    if not predicted.any() and not reference.any():
        return 0.0
    distances = surface_distances(predicted, reference, spacing_mm)
    return None if distances is None else reduce(*distances)


def hausdorff95(
    predicted: np.ndarray, reference: np.ndarray, spacing_mm: Sequence[float] | None = None
) -> float | None:
    """95th-percentile symmetric Hausdorff distance (MONAI's ``compute_hausdorff_distance``
    with ``percentile=95``); 0.0 when both masks are empty, None when exactly one is."""
    return _surface_measure(predicted, reference, spacing_mm, _hd95_of)


def assd(
    predicted: np.ndarray, reference: np.ndarray, spacing_mm: Sequence[float] | None = None
) -> float | None:
    """Average symmetric surface distance (MONAI's ``compute_average_surface_distance`` with
    ``symmetric=True``); 0.0 when both masks are empty, None when exactly one is."""
    return _surface_measure(predicted, reference, spacing_mm, _assd_of)


# ---------------------------------------------------------------------------------------------
# contours and the average perpendicular distance


def _outlines(mask: np.ndarray) -> list[np.ndarray]:
    # Padding closes outlines that touch the image border; the last point repeats the first.
    padded = np.pad(mask, 1).astype(float)
    return [outline - 1.0 for outline in measure.find_contours(padded, 0.5)]


def contour_points(mask: np.ndarray, spacing_mm: Sequence[float] | None = None) -> np.ndarray:
    """The (N, 2) row/col sub-pixel points of every closed outline of ``mask`` (holes included).

    Marching squares (``skimage.measure.find_contours``) at level 0.5 on the mask padded by one
    pixel, shifted back: the points lie on pixel edges, half a pixel outside the foreground, and
    each outline lists each point once. Scaled to mm when ``spacing_mm`` is given.

    >>> contour_points(np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]])).tolist()
    [[1.5, 1.0], [1.0, 0.5], [0.5, 1.0], [1.0, 1.5]]
    """
    outlines = [outline[:-1] for outline in _outlines(_mask(mask))]
    points = np.concatenate(outlines) if outlines else np.zeros((0, 2))
    return points * np.asarray(_spacing(spacing_mm))


def average_perpendicular_distance(
    predicted: np.ndarray, reference: np.ndarray, spacing_mm: Sequence[float] | None = None
) -> float | None:
    """APD: the mean distance from the predicted contour's points to the reference contour,
    measured to the nearest point on its segments (perpendicular where the foot falls inside one).
    0.0 when both masks are empty, None when exactly one is."""
    predicted, reference = _masks(predicted, reference)
    if not predicted.any() and not reference.any():
        return 0.0
    if not predicted.any() or not reference.any():
        return None
    scale = np.asarray(_spacing(spacing_mm))
    points = contour_points(predicted, spacing_mm)
    starts = np.concatenate([outline[:-1] for outline in _outlines(reference)]) * scale
    ends = np.concatenate([outline[1:] for outline in _outlines(reference)]) * scale
    along = ends - starts
    length2 = np.maximum((along**2).sum(1), 1e-12)  # a zero-length segment: its start point
    nearest = np.empty(len(points))
    for i in range(0, len(points), 512):  # bounds memory at 512 x segments x 2 floats
        offset = points[i : i + 512, None, :] - starts[None]  # (points, segments, 2)
        t = np.clip((offset * along).sum(-1) / length2, 0.0, 1.0)
        nearest[i : i + 512] = np.linalg.norm(offset - t[..., None] * along, axis=-1).min(1)
    return float(nearest.mean())


# ---------------------------------------------------------------------------------------------
# one slice, every measure


@dataclass(frozen=True)
class SliceScores:
    """Every measure of one predicted slice against its reference (see the module docstring).

    ``good_contour_*``: APD below the threshold; False when the reference has a contour and the
    prediction is empty (a missed contour is not good); None when the reference is empty (not a
    contour slice) or when distances are in pixels (the thresholds are in mm).
    ``detected``: the prediction is non-empty, None when the reference is empty.
    ``false_positive``: the reference is empty and the prediction is not.
    """

    dice: float
    iou: float
    precision: float
    recall: float
    pixel_accuracy: float
    background_accuracy: float
    hd95: float | None
    assd: float | None
    apd: float | None
    good_contour_5mm: bool | None
    good_contour_4mm: bool | None
    detected: bool | None
    false_positive: bool
    reference_pixels: int
    predicted_pixels: int
    units: str  # "mm" or "px"

    def to_dict(self) -> dict:
        """Plain JSON-safe types (float, int, bool, str, None)."""
        return asdict(self)


def score_slice(
    predicted: np.ndarray, reference: np.ndarray, spacing_mm: Sequence[float] | None = None
) -> SliceScores:
    """Score one predicted 2-D mask against its reference (good contours at
    :data:`GOOD_CONTOUR_MM`, 5 and 4 mm)."""
    predicted, reference = _masks(predicted, reference)
    has_predicted, has_reference = bool(predicted.any()), bool(reference.any())
    apd = average_perpendicular_distance(predicted, reference, spacing_mm)
    distances = surface_distances(predicted, reference, spacing_mm)  # once for HD95 and ASSD
    if distances is not None:
        hd95, mean_distance = _hd95_of(*distances), _assd_of(*distances)
    else:  # 0 when both are empty, undefined when one is
        hd95 = mean_distance = None if has_predicted or has_reference else 0.0

    def good(threshold: float) -> bool | None:
        if spacing_mm is None or not has_reference:
            return None
        return bool(has_predicted and apd < threshold)

    return SliceScores(
        dice=float(dice(predicted, reference)),
        iou=iou(predicted, reference),
        precision=precision(predicted, reference),
        recall=recall(predicted, reference),
        pixel_accuracy=pixel_accuracy(predicted, reference),
        background_accuracy=background_accuracy(reference),
        hd95=hd95,
        assd=mean_distance,
        apd=apd,
        good_contour_5mm=good(GOOD_CONTOUR_MM[0]),
        good_contour_4mm=good(GOOD_CONTOUR_MM[1]),
        detected=has_predicted if has_reference else None,
        false_positive=has_predicted and not has_reference,
        reference_pixels=int(reference.sum()),
        predicted_pixels=int(predicted.sum()),
        units="px" if spacing_mm is None else "mm",
    )
