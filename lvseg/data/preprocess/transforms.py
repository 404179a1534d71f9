"""Apply a plan to one record: resample, normalise, crop; and map a prediction back.

:func:`preprocess_record` runs the three steps in this order; :func:`resample_and_normalise`
and :func:`crop_record` are its two halves (inference locates the heart in between), and
:func:`to_source_grid` undoes the resampling and the crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import numpy as np
import scipy.ndimage as ndi

from lvseg.data.preprocess.planning import PreprocessPlan
from lvseg.data.preprocess.regions import crop_box_at, crop_padded, heart_centre, image_centre
from lvseg.data.records import MASK_STRUCTURES, Geometry, SliceRecord

Centre = Literal["heart", "image"]


def resample_record(
    record: SliceRecord, target_spacing_mm: tuple[float, float] | None, *, image_order: int = 3
) -> SliceRecord:
    """The record at ``target_spacing_mm`` (unchanged where either spacing is unknown).

    The new shape is the old one times spacing / target, rounded; ``Geometry.zoom`` holds the
    exact factor applied (new shape / old shape), ``pixel_spacing_mm`` the spacing it gives.
    """
    spacing = record.pixel_spacing_mm
    if spacing is None or target_spacing_mm is None:
        return record
    rows, cols = record.image.shape
    shape = (
        max(1, round(rows * spacing[0] / target_spacing_mm[0])),
        max(1, round(cols * spacing[1] / target_spacing_mm[1])),
    )
    if shape == (rows, cols):
        return record
    zoom = (shape[0] / rows, shape[1] / cols)
    image = record.image.astype(np.float32, copy=False)
    if min(zoom) < 1:
        # Anti-aliasing before shrinking, with scikit-image's rule sigma = (1/zoom - 1) / 2.
        sigma = [max(0.0, (1 / z - 1) / 2) for z in zoom]
        image = ndi.gaussian_filter(image, sigma, mode="nearest")
    # Images use cubic splines (order 3, as nnU-Net).
    image = _zoom_to(image, shape, image_order)
    # Masks are resampled linearly as floats and thresholded strictly above 0.5: the boundary
    # lies on the half-level contour of the original mask (nearest neighbour would shift it by
    # up to half a pixel and leave staircase edges). Linear weights sum to one, so disjoint
    # structures (LV, myocardium, RV) can never both exceed 0.5 and stay disjoint.
    masks = {
        name: _zoom_to(m.astype(np.float32), shape, 1) > 0.5 for name, m in record.masks.items()
    }
    new_spacing = (spacing[0] / zoom[0], spacing[1] / zoom[1])
    return record.replace(
        image=image.astype(np.float32, copy=False),
        masks=masks,
        pixel_spacing_mm=new_spacing,
        geometry=replace(record.geometry, zoom=zoom),
    )


def _zoom_to(array: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    """Resample so that pixel *edges* align (``grid_mode``): the zoom is exactly new/old."""
    factors = (shape[0] / array.shape[0], shape[1] / array.shape[1])
    out = ndi.zoom(array, factors, order=order, mode="nearest", grid_mode=True)
    assert out.shape == shape, (out.shape, shape)
    return out


def normalise_intensity(
    image: np.ndarray, clip_percentiles: tuple[float, float] = (0.5, 99.5)
) -> np.ndarray:
    """Clip to the image's own percentiles, then z-score (float32; a flat image gives zeros).

    MR intensities have no physical unit, and a few very bright pixels (flowing blood, fat)
    would otherwise dominate. The whole resampled image is normalised, not the crop, so the
    values do not depend on where the crop falls: cached regions and jittered crops agree.
    """
    image = image.astype(np.float32, copy=False)
    low, high = np.percentile(image, clip_percentiles)
    clipped = np.clip(image, low, high)
    mean, std = float(clipped.mean()), float(clipped.std())
    return ((clipped - mean) / (std if std > 1e-6 else 1.0)).astype(np.float32)


def preprocess_record(
    record: SliceRecord,
    plan: PreprocessPlan,
    *,
    centre: Centre = "heart",
    offset: tuple[int, int] = (0, 0),
    size: int | None = None,
) -> SliceRecord:
    """Resample, normalise and crop one record; geometry gets ``zoom`` and ``crop_box``.

    ``centre="heart"`` centres on the labelled structures (falling back to the image centre for
    a record without masks); ``centre="image"`` is the inference mode, where no mask exists.
    ``offset`` moves the crop (training jitter); ``size`` overrides ``plan.crop_size``.
    """
    prepared = resample_and_normalise(record, plan)
    middle = heart_centre(prepared) if centre == "heart" else None
    box = crop_box_at(middle or image_centre(prepared.image.shape), size or plan.crop_size, offset)
    return crop_record(prepared, box)


def with_spacing(record: SliceRecord, spacing_mm: tuple[float, float] | None) -> SliceRecord:
    """The record with ``spacing_mm`` where it has no spacing of its own (else unchanged)."""
    if record.pixel_spacing_mm is not None or spacing_mm is None:
        return record
    spacing = (float(spacing_mm[0]), float(spacing_mm[1]))
    geometry = replace(record.geometry, source_pixel_spacing_mm=spacing)
    return record.replace(pixel_spacing_mm=spacing, geometry=geometry)


def resample_and_normalise(record: SliceRecord, plan: PreprocessPlan) -> SliceRecord:
    """The first two steps of :func:`preprocess_record`: the whole image, before the crop.

    Records without a spacing (even after the plan's assumed one) keep their pixel grid.
    """
    record = with_spacing(record, plan.assumed_spacing_mm)
    resampled = resample_record(record, plan.target_spacing_mm, image_order=plan.image_order)
    return resampled.replace(image=normalise_intensity(resampled.image, plan.clip_percentiles))


def crop_record(prepared: SliceRecord, box: tuple[int, int, int, int]) -> SliceRecord:
    """The last step of :func:`preprocess_record`: crop a resampled, normalised record to
    ``box``, padding the image with its darkest value (what an MR scanner records outside the
    body) and the masks with background. ``Geometry.crop_box`` is ``box`` (row0, row1, col0,
    col1) in resampled pixels, and may reach outside the image."""
    image = prepared.image
    return prepared.replace(
        image=crop_padded(image, box, float(image.min())),
        masks={name: crop_padded(mask, box, False) for name, mask in prepared.masks.items()},
        geometry=replace(prepared.geometry, crop_box=box),
    )


def stack_masks(
    record: SliceRecord, structures: Sequence[str] = MASK_STRUCTURES
) -> tuple[np.ndarray, np.ndarray]:
    """Masks as one uint8 (C, H, W) array in ``structures`` order, and which are labelled (C,).

    An unlabelled structure gives an all-zero channel with ``labelled=False``: the loss must
    ignore it rather than learn "absent".
    """
    shape = record.image.shape
    masks = np.zeros((len(structures), *shape), np.uint8)
    labelled = np.zeros(len(structures), bool)
    for channel, name in enumerate(structures):
        if name in record.masks:
            masks[channel] = record.masks[name]
            labelled[channel] = True
    return masks, labelled


def to_source_grid(prediction: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Map a crop-shaped prediction (..., S, S), e.g. probabilities, back onto the source image.

    Pastes it into the resampled image at ``geometry.crop_box`` (zero elsewhere) and resamples
    linearly to ``geometry.original_shape``; threshold the result (> 0.5) for masks.
    """
    if geometry.crop_box is None:
        raise ValueError("geometry has no crop_box: the array was not cropped by preprocess")
    rows, cols = geometry.original_shape
    shape = (round(rows * geometry.zoom[0]), round(cols * geometry.zoom[1]))
    r0, r1, c0, c1 = geometry.crop_box
    canvas = np.zeros((*prediction.shape[:-2], *shape), np.float32)
    # The inverse crop: the canvas seen from the crop's frame.
    inverse = (-r0, shape[0] - r0, -c0, shape[1] - c0)
    canvas[...] = crop_padded(prediction.astype(np.float32), inverse, 0.0)
    if shape == (rows, cols):
        return canvas
    lead = canvas.reshape(-1, *shape)
    return np.stack([_zoom_to(a, (rows, cols), 1) for a in lead]).reshape(
        *prediction.shape[:-2], rows, cols
    )
