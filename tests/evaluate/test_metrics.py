"""Per-slice metrics: exact values on hand-made masks, the empty-mask conventions (never NaN), and
an exact cross-check of the hand-written surface distances against MONAI on random masks."""

from __future__ import annotations

import doctest
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from builders import disc
from scipy import ndimage, spatial
from skimage import measure

from lvseg.evaluate import metrics
from lvseg.evaluate.metrics import (
    assd,
    average_perpendicular_distance,
    contour_points,
    dice,
    hausdorff95,
    iou,
    score_slice,
    surface_distances,
)


def test_dice_on_fixed_masks():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert dice(a, b) == 1.0  # both empty: agreement, never NaN
    a[0, :2] = True
    assert dice(a, b) == 0.0
    b[0, 1:3] = True
    assert dice(a, b) == 0.5  # 2 * 1 / (2 + 2)
    assert doctest.testmod(metrics).failed == 0


def test_metrics_module_does_not_import_torch():
    code = "import sys, lvseg.evaluate.metrics; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# hand-made masks with known answers

OUTER = disc((64, 64), (32, 32), 20)  # reference
INNER = disc((64, 64), (32, 32), 14)  # prediction, inside the reference
RADIUS_GAP = 6.0
DISCRETISATION_PX = 1.0  # rasterised circles are not circles: distances are within 1 px of the gap


def test_overlap_of_concentric_discs_from_pixel_counts():
    n_outer, n_inner = int(OUTER.sum()), int(INNER.sum())
    scores = score_slice(INNER, OUTER)
    assert scores.dice == 2 * n_inner / (n_outer + n_inner)
    assert scores.iou == n_inner / n_outer
    assert scores.precision == 1.0  # every predicted pixel is inside the reference
    assert scores.recall == n_inner / n_outer
    assert scores.pixel_accuracy == 1 - (n_outer - n_inner) / 64**2
    assert scores.background_accuracy == 1 - n_outer / 64**2
    assert (scores.reference_pixels, scores.predicted_pixels) == (n_outer, n_inner)
    assert scores.detected is True and scores.false_positive is False


def test_distances_of_concentric_discs_are_the_radius_gap():
    scores = score_slice(INNER, OUTER)
    assert scores.units == "px"
    for value in (scores.hd95, scores.assd, scores.apd):
        assert value == pytest.approx(RADIUS_GAP, abs=DISCRETISATION_PX)
    # all three scale exactly with an isotropic spacing
    doubled = score_slice(INNER, OUTER, spacing_mm=(2.0, 2.0))
    assert doubled.units == "mm"
    assert doubled.apd == pytest.approx(2 * scores.apd, rel=1e-12)
    assert doubled.hd95 == pytest.approx(2 * scores.hd95, rel=1e-12)
    assert doubled.assd == pytest.approx(2 * scores.assd, rel=1e-12)


def test_good_contours_use_both_thresholds_in_mm():
    apd_px = average_perpendicular_distance(INNER, OUTER)  # about 5.8 px
    fine = score_slice(INNER, OUTER, spacing_mm=(0.5, 0.5))  # about 2.9 mm: good at 5 and 4 mm
    assert (fine.good_contour_5mm, fine.good_contour_4mm) == (True, True)
    mid = score_slice(INNER, OUTER, spacing_mm=(0.8, 0.8))  # about 4.7 mm: good at 5 mm only
    assert 4.0 < 0.8 * apd_px < 5.0
    assert (mid.good_contour_5mm, mid.good_contour_4mm) == (True, False)
    coarse = score_slice(INNER, OUTER, spacing_mm=(1.0, 1.0))
    assert (coarse.good_contour_5mm, coarse.good_contour_4mm) == (False, False)
    # in pixels the mm thresholds do not apply
    in_px = score_slice(INNER, OUTER)
    assert (in_px.good_contour_5mm, in_px.good_contour_4mm) == (None, None)


@pytest.mark.parametrize("axis, spacing_mm", [(0, None), (0, (2.0, 0.5)), (1, (2.0, 0.5))])
def test_shifted_mask_has_max_surface_distance_equal_to_the_shift(axis, spacing_mm):
    k = 3
    reference = disc((48, 48), (24, 24), 10)
    shifted = np.roll(reference, k, axis=axis)
    to_reference, to_predicted = surface_distances(shifted, reference, spacing_mm)
    step = 1.0 if spacing_mm is None else spacing_mm[axis]
    assert max(to_reference.max(), to_predicted.max()) == k * step


def test_identical_masks_score_perfectly():
    mask = _noise_blob(np.random.default_rng(0), (40, 40))
    to_reference, to_predicted = surface_distances(mask, mask, (1.3, 0.9))
    assert not to_reference.any() and not to_predicted.any()
    scores = score_slice(mask, mask, spacing_mm=(1.3, 0.9))
    assert scores.dice == scores.iou == scores.precision == scores.recall == 1.0
    assert scores.hd95 == scores.assd == scores.apd == 0.0
    assert scores.good_contour_5mm is True and scores.good_contour_4mm is True


def test_contour_points_trace_every_outline():
    ring = disc((32, 32), (16, 16), 10) & ~disc((32, 32), (16, 16), 5)
    points = contour_points(ring)
    radii = np.hypot(points[:, 0] - 16, points[:, 1] - 16)
    assert points.shape[1] == 2
    assert (radii > 8).any() and (radii < 7).any()  # the outer outline and the hole's
    assert np.array_equal(contour_points(ring, (2.0, 0.5)), points * [2.0, 0.5])
    assert contour_points(np.zeros((5, 5))).shape == (0, 2)
    # a mask touching the image border still has a closed outline around it
    assert contour_points(np.ones((3, 3))).min() == -0.5


@pytest.mark.parametrize("spacing_mm", [None, (1.5, 0.7)])
def test_apd_is_distance_to_the_reference_polyline(spacing_mm):
    """Check the point-to-segment geometry against dense sampling of the reference outline."""
    rng = np.random.default_rng(3)
    predicted, reference = _ellipse(rng, (40, 40)), _ellipse(rng, (40, 40))
    scale = np.asarray(spacing_mm or (1.0, 1.0))
    t = np.linspace(0, 1, 401)[:, None, None]  # 401 samples along every segment
    outlines = [o - 1 for o in measure.find_contours(np.pad(reference, 1).astype(float), 0.5)]
    dense = np.concatenate([(o[:-1] + t * (o[1:] - o[:-1])).reshape(-1, 2) for o in outlines])
    nearest, _ = spatial.cKDTree(dense * scale).query(contour_points(predicted, spacing_mm))
    assert average_perpendicular_distance(predicted, reference, spacing_mm) == pytest.approx(
        nearest.mean(), abs=2e-3
    )


# ---------------------------------------------------------------------------------------------
# empty masks and bad input


def _finite(scores) -> bool:
    values = scores.to_dict().values()
    return all(math.isfinite(v) for v in values if isinstance(v, float))


@pytest.mark.parametrize("spacing_mm", [None, (1.2, 1.2)])
def test_empty_masks_follow_the_documented_conventions(spacing_mm):
    empty, mask = np.zeros((32, 32), bool), disc((32, 32), (16, 16), 6)

    missed = score_slice(empty, mask, spacing_mm)
    assert (missed.dice, missed.iou, missed.precision, missed.recall) == (0.0, 0.0, 0.0, 0.0)
    assert missed.hd95 is missed.assd is missed.apd is None
    assert missed.detected is False and missed.false_positive is False
    good = False if spacing_mm else None  # a missed contour is not a good one
    assert missed.good_contour_5mm is good and missed.good_contour_4mm is good

    spurious = score_slice(mask, empty, spacing_mm)
    assert (spurious.dice, spurious.iou, spurious.precision, spurious.recall) == (0, 0, 0, 1)
    assert spurious.hd95 is spurious.assd is spurious.apd is None
    assert spurious.detected is None and spurious.false_positive is True
    assert spurious.good_contour_5mm is None and spurious.good_contour_4mm is None

    nothing = score_slice(empty, empty, spacing_mm)
    assert nothing.dice == nothing.iou == nothing.precision == nothing.recall == 1.0
    assert nothing.pixel_accuracy == nothing.background_accuracy == 1.0
    assert nothing.hd95 == nothing.assd == nothing.apd == 0.0
    assert nothing.detected is None and nothing.false_positive is False
    assert nothing.good_contour_5mm is None and nothing.good_contour_4mm is None

    for scores in (missed, spurious, nothing):
        assert _finite(scores)
        json.dumps(scores.to_dict(), allow_nan=False)
    assert surface_distances(empty, mask) is None and surface_distances(empty, empty) is None


def test_bad_input_raises_and_any_array_is_cast_to_bool():
    mask = disc((16, 16), (8, 8), 4)
    with pytest.raises(ValueError, match="differ in shape"):
        iou(mask, mask[:-1])
    with pytest.raises(ValueError, match="2-D"):
        score_slice(mask[None], mask[None])
    with pytest.raises(ValueError, match="spacing"):
        hausdorff95(mask, mask, spacing_mm=(1.0, 0.0))
    as_ints = score_slice(mask.astype(np.uint8) * 255, mask.astype(float))
    assert as_ints == score_slice(mask, mask)


# ---------------------------------------------------------------------------------------------
# cross-check against MONAI, the well-kept reference implementation


def _noise_blob(rng, shape) -> np.ndarray:
    """Thresholded smoothed noise: several blobs with holes, often touching the border."""
    smooth = ndimage.gaussian_filter(rng.normal(size=shape), sigma=rng.uniform(2.0, 5.0))
    return smooth > np.quantile(smooth, rng.uniform(0.5, 0.9))


def _ellipse(rng, shape) -> np.ndarray:
    """A rotated ellipse, anywhere in the image (so sometimes cut by the border)."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    centre = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
    a, b, angle = rng.uniform(3, 14), rng.uniform(3, 14), rng.uniform(0, np.pi)
    u = (rows - centre[0]) * np.cos(angle) + (cols - centre[1]) * np.sin(angle)
    v = -(rows - centre[0]) * np.sin(angle) + (cols - centre[1]) * np.cos(angle)
    mask = (u / a) ** 2 + (v / b) ** 2 <= 1
    return mask if mask.any() else _ellipse(rng, shape)


@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")  # MONAI-internal
@pytest.mark.parametrize("seed", range(12))
def test_surface_distances_match_monai(seed):
    monai_metrics = pytest.importorskip(
        "monai.metrics", reason="monai is not installed: the MONAI cross-check is skipped"
    )
    import torch

    rng = np.random.default_rng(seed)
    shape = (48, 40)
    make = _noise_blob if seed % 2 else _ellipse
    predicted, reference = make(rng, shape), (_ellipse if seed % 3 else _noise_blob)(rng, shape)

    def tensor(mask):  # (batch, channel, H, W), one foreground channel
        return torch.from_numpy(mask[None, None].astype(np.float32))

    y_pred, y = tensor(predicted), tensor(reference)
    for spacing_mm in (None, (1.5, 0.7)):
        spacing = None if spacing_mm is None else list(spacing_mm)
        hd = monai_metrics.compute_hausdorff_distance(
            y_pred, y, include_background=True, percentile=95, spacing=spacing
        )
        mean_distance = monai_metrics.compute_average_surface_distance(
            y_pred, y, include_background=True, symmetric=True, spacing=spacing
        )
        ours_hd = hausdorff95(predicted, reference, spacing_mm)
        assert ours_hd == pytest.approx(float(hd), rel=1e-6, abs=1e-6)
        ours_assd = assd(predicted, reference, spacing_mm)
        assert ours_assd == pytest.approx(float(mean_distance), rel=1e-6, abs=1e-6)
    monai_dice = monai_metrics.compute_dice(y_pred, y, include_background=True)
    assert dice(predicted, reference) == pytest.approx(float(monai_dice), rel=1e-6)
    monai_iou = monai_metrics.compute_iou(y_pred, y, include_background=True)
    assert iou(predicted, reference) == pytest.approx(float(monai_iou), rel=1e-6)
