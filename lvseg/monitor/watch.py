"""Watch slices: a few fixed validation slices whose prediction and CAM are recorded every epoch.

The slices are chosen once, from the validation cache, so that their evolution can be replayed:
among the slices whose reference LV is in the crop, ``count`` slices evenly spaced in LV area
(from a small apical cavity to a large basal one). Each epoch, after validation, the model (in
eval mode) segments them and three pictures go to the run store as PNG bytes (the dashboard
reads them; it never imports torch):

- ``image`` (epoch 0, once): the input crop, grey;
- ``prediction``: the crop with the reference contour (green) and the predicted one (red);
- ``prediction`` also carries the slice's Dice and, where lvseg ships a quality score, the
  Dice that quality control predicts for it (:mod:`lvseg.segment.quality`, from the crop's LV
  probability alone), so the dashboard shows the score learning beside the truth;
- ``cam``: the LV-versus-background class activation map ``S_lv - S_bg`` over the crop
  (:func:`lvseg.explain.cam.lv_log_odds`, from the same forward pass), on a diverging colour
  scale centred on zero (red: LV evidence, blue: background evidence). For LVNet this is
  exactly the CAM of its global-average-pooling head (:class:`lvseg.explain.cam.CAM`),
  ``sum_k (w_lv,k - w_bg,k) F_k + b_lv - b_bg``; for every model of the registry it is the map
  that its presence head averages.

Pictures are upscaled 2x (nearest) so 128-pixel crops stay legible in the page.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch import nn

from lvseg.data.preprocess import CachedSlices
from lvseg.evaluate.metrics import dice as segmentation_dice
from lvseg.explain.cam import lv_log_odds
from lvseg.segment.quality import (
    QualityModel,
    crop_signals,
    default_quality_model,
    pixel_side_mm,
)

CAM_COLORMAP = "RdBu_r"
UPSCALE = 2
REFERENCE_RGB = (40, 220, 90)
PREDICTION_RGB = (240, 50, 50)

Writer = Callable[..., None]
"""``(epoch, slice_index, kind, png, **data)``, e.g. :meth:`RunStore.log_watch`."""


def choose_slices(cache: CachedSlices, count: int) -> list[int]:
    """Cache positions of ``count`` slices with an LV, evenly spaced in LV area (small first)."""
    if count <= 0:
        return []
    areas = []
    for index in range(len(cache)):
        _, masks = cache.crop(index)
        area = int(masks[0].sum())
        if area > 0:
            areas.append((area, index))
    areas.sort()
    if len(areas) <= count:
        return [index for _, index in areas]
    positions = [round((i + 0.5) * len(areas) / count - 0.5) for i in range(count)]
    return [areas[p][1] for p in positions]


@dataclass
class WatchSlices:
    """The chosen slices of one run and how to record them."""

    cache: CachedSlices
    indices: list[int]
    scorer: QualityModel | None = None

    @classmethod
    def from_cache(cls, cache: CachedSlices, count: int) -> WatchSlices:
        return cls(cache, choose_slices(cache, count), default_quality_model())

    def describe(self, slot: int) -> dict[str, Any]:
        entry = self.cache.entries[self.indices[slot]]
        keys = ("patient_id", "slice_index", "phase", "phase_index")
        return {key: entry.get(key) for key in keys}

    def record_inputs(self, write: Writer) -> None:
        """The input pictures, once (epoch 0)."""
        for slot, index in enumerate(self.indices):
            image, masks = self.cache.crop(index)
            png = encode_png(grey(image))
            write(0, slot, "image", png, **self.describe(slot), lv_pixels=int(masks[0].sum()))

    @torch.no_grad()
    def record(self, model: nn.Module, epoch: int, device: torch.device, write: Writer) -> None:
        """Segment the slices with ``model`` (left in eval mode) and record the pictures."""
        if not self.indices:
            return
        model.eval()
        batch = self.cache.batch(self.indices)
        output = model(batch.images.to(device))
        score = lv_log_odds(output.logits.float()).cpu().numpy()
        probability = 1.0 / (1.0 + np.exp(-score))  # softmax of two classes: sigmoid(S_lv - S_bg)
        presence = torch.sigmoid(output.presence_logit.float()).cpu().numpy()
        pixel_mm = pixel_side_mm(self.cache.plan.target_spacing_mm)
        for slot in range(len(self.indices)):
            image = batch.images[slot, 0].numpy()
            reference = batch.masks[slot, 0].numpy() > 0.5
            predicted = score[slot] > 0
            dice = segmentation_dice(predicted, reference)
            quality = {}
            if self.scorer is not None:
                signals = crop_signals(probability[slot], pixel_mm).values
                quality["predicted_dice"] = float(self.scorer.predict([signals])[0])
            base = grey(image)
            overlay = draw_contour(
                draw_contour(base, reference, REFERENCE_RGB), predicted, PREDICTION_RGB
            )
            write(
                epoch,
                slot,
                "prediction",
                encode_png(overlay),
                dice=dice,
                presence=float(presence[slot]),
                predicted_pixels=int(predicted.sum()),
                **quality,
            )
            cam, limit = colour_map(score[slot], base)
            write(
                epoch,
                slot,
                "cam",
                encode_png(cam),
                vmin=-limit,
                vmax=limit,
                colormap=CAM_COLORMAP,
                map="S_lv - S_bg",
            )


# ------------------------------------------------------------------------ pictures


def grey(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 picture of a z-scored crop, 1st-99th percentile to black-white."""
    low, high = np.percentile(image, [1, 99])
    scaled = np.clip((image - low) / max(high - low, 1e-6), 0, 1)
    return np.repeat((scaled * 255).astype(np.uint8)[..., None], 3, axis=2)


def draw_contour(picture: np.ndarray, mask: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    """``picture`` with the one-pixel inner boundary of ``mask`` painted ``rgb``."""
    out = picture.copy()
    edge = mask & ~ndimage.binary_erosion(mask)
    out[edge] = rgb
    return out


def colour_map(
    score: np.ndarray, base: np.ndarray, alpha: float = 0.55
) -> tuple[np.ndarray, float]:
    """``score`` on the diverging map, symmetric about zero, blended over ``base``; and the
    colour scale's half-range."""
    from matplotlib import colormaps

    limit = float(np.abs(score).max()) or 1.0
    rgba = colormaps[CAM_COLORMAP]((score / limit + 1) / 2)
    blended = (1 - alpha) * base.astype(np.float32) + alpha * 255 * rgba[..., :3]
    return blended.clip(0, 255).astype(np.uint8), limit


def encode_png(picture: np.ndarray) -> bytes:
    big = picture.repeat(UPSCALE, axis=0).repeat(UPSCALE, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
