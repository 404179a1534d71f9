"""The training objective: soft Dice + cross-entropy on the LV map, plus the presence term.

For logits ``S`` (B, 2, H, W) (class 0 background, class 1 LV blood pool), target ``y`` (B, H, W)
in {0, 1} and ``p = softmax(S)[:, 1]``:

- soft Dice, per image then averaged: ``1 - mean_b (2 sum p y + s) / (sum p + sum y + s)``;
  the smoothing ``s`` makes an image without LV well defined (it asks for ``p = 0``) and keeps
  small apical cavities from being swamped by large basal ones, as a batch-pooled Dice would.
- cross-entropy over the two classes, averaged over pixels: sharp, well-calibrated boundaries.
  With ``boundary_weight`` b > 0 the pixels within :data:`BOUNDARY_PX` of the mask's edge weigh
  ``1 + b`` (a weighted mean): a small apical cavity is nearly all edge, so it gains weight
  against the background that a pixel average is made of (the weight map of Ronneberger et al.
  2015, drawn by max-pooling so it costs nothing on a GPU and needs no distance transform).
- presence: binary cross-entropy of the image-level "LV present" logit (the GAP of the LV-vs-
  background CAM, see :mod:`lvseg.model.lvnet`) against ``any(y)``.

Deep supervision: the class scores of coarser decoder stages (``auxiliary``, finest first) are
upsampled to the mask's size and get the same Dice and cross-entropy terms, with weights 1/2,
1/4, ... of the full-resolution output's; the segmentation terms are then divided by the sum of
the weights, so the loss keeps its scale (nnU-Net's scheme). ``dice`` and ``cross_entropy`` in
:class:`LossParts` stay those of the full-resolution output.

Everything is computed in float32 whatever the autocast precision of the forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lvseg.model.classes import LV_CLASS

BOUNDARY_PX = 2
"""Half-width in pixels of the band around a mask's edge that ``boundary_weight`` favours."""


@dataclass
class LossParts:
    total: torch.Tensor
    dice: torch.Tensor
    cross_entropy: torch.Tensor
    presence: torch.Tensor
    auxiliary: torch.Tensor | None = None
    """Dice + cross-entropy of the deep-supervision outputs, weighted (None without them)."""

    def as_floats(self) -> dict[str, float]:
        floats = {
            "loss": float(self.total.detach()),
            "loss_dice": float(self.dice.detach()),
            "loss_ce": float(self.cross_entropy.detach()),
            "loss_presence": float(self.presence.detach()),
        }
        if self.auxiliary is not None:
            floats["loss_auxiliary"] = float(self.auxiliary.detach())
        return floats


def segmentation_loss(
    logits: torch.Tensor,
    presence_logit: torch.Tensor,
    target: torch.Tensor,
    *,
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
    presence_weight: float = 0.1,
    smooth: float = 1.0,
    boundary_weight: float = 0.0,
    auxiliary: Sequence[torch.Tensor] = (),
) -> LossParts:
    """The weighted loss and its parts. ``target`` is (B, H, W) with values 0 or 1.

    >>> logits = torch.zeros(1, 2, 4, 4); target = torch.zeros(1, 4, 4)
    >>> round(float(segmentation_loss(logits, torch.zeros(1), target).cross_entropy), 4)
    0.6931
    """
    target = target.float()
    weights = boundary_weights(target, boundary_weight) if boundary_weight > 0 else None
    dice, cross_entropy = _region_terms(logits, target, weights, smooth)
    segmentation = dice_weight * dice + ce_weight * cross_entropy
    auxiliary_loss = None
    if auxiliary:
        auxiliary_loss = torch.zeros((), device=logits.device)
        scale = 1.0
        for level, scores in enumerate(auxiliary, start=1):
            upsampled = F.interpolate(
                scores.float(), size=target.shape[-2:], mode="bilinear", align_corners=False
            )
            aux_dice, aux_ce = _region_terms(upsampled, target, weights, smooth)
            auxiliary_loss = auxiliary_loss + 0.5**level * (
                dice_weight * aux_dice + ce_weight * aux_ce
            )
            scale += 0.5**level
        segmentation = (segmentation + auxiliary_loss) / scale
    present = (target.flatten(1).amax(dim=1) > 0).float()
    presence = F.binary_cross_entropy_with_logits(presence_logit.float(), present)
    total = segmentation + presence_weight * presence
    return LossParts(total, dice, cross_entropy, presence, auxiliary_loss)


def _region_terms(
    logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None, smooth: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image soft Dice loss and (weighted) pixel cross-entropy of one output."""
    logits = logits.float()
    probability = logits.softmax(dim=1)[:, LV_CLASS]
    intersection = (probability * target).sum(dim=(1, 2))
    denominator = probability.sum(dim=(1, 2)) + target.sum(dim=(1, 2))
    dice = 1.0 - ((2.0 * intersection + smooth) / (denominator + smooth)).mean()
    if weights is None:
        return dice, F.cross_entropy(logits, target.long())
    per_pixel = F.cross_entropy(logits, target.long(), reduction="none")
    return dice, (weights * per_pixel).sum() / weights.sum()


def boundary_weights(target: torch.Tensor, weight: float) -> torch.Tensor:
    """Pixel weights (B, H, W): ``1 + weight`` within :data:`BOUNDARY_PX` of a mask edge, else 1.

    >>> target = torch.zeros(1, 7, 7); target[0, 3, 3] = 1
    >>> boundary_weights(target, 4.0)[0].sum().item()  # 5x5 band around one pixel: 25 * 5 + 24
    149.0
    """
    size = 2 * BOUNDARY_PX + 1
    mask = target[:, None].float()
    dilated = F.max_pool2d(mask, size, stride=1, padding=BOUNDARY_PX)
    eroded = -F.max_pool2d(-mask, size, stride=1, padding=BOUNDARY_PX)
    return 1.0 + weight * (dilated - eroded)[:, 0]


def dice_per_image(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Hard Dice of boolean maps (B, H, W), per image; 1 where both are empty.

    >>> a = torch.zeros(2, 3, 3, dtype=torch.bool); a[0, 0, 0] = True
    >>> dice_per_image(a, torch.zeros_like(a)).tolist()
    [0.0, 1.0]
    """
    prediction, target = prediction.bool(), target.bool()
    intersection = (prediction & target).sum(dim=(1, 2)).double()
    total = prediction.sum(dim=(1, 2)).double() + target.sum(dim=(1, 2)).double()
    return torch.where(total > 0, 2.0 * intersection / total.clamp(min=1), torch.ones_like(total))
