"""The training objective: soft Dice + cross-entropy on the LV map, plus the presence term.

For logits ``S`` (B, 2, H, W) (class 0 background, class 1 LV blood pool), target ``y`` (B, H, W)
in {0, 1} and ``p = softmax(S)[:, 1]``:

- soft Dice, per image then averaged: ``1 - mean_b (2 sum p y + s) / (sum p + sum y + s)``;
  the smoothing ``s`` makes an image without LV well defined (it asks for ``p = 0``) and keeps
  small apical cavities from being swamped by large basal ones, as a batch-pooled Dice would.
- cross-entropy over the two classes, averaged over pixels: sharp, well-calibrated boundaries.
- presence: binary cross-entropy of the image-level "LV present" logit (the GAP of the LV-vs-
  background CAM, see :mod:`lvseg.model.lvnet`) against ``any(y)``.

Everything is computed in float32 whatever the autocast precision of the forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lvseg.model.classes import LV_CLASS


@dataclass
class LossParts:
    total: torch.Tensor
    dice: torch.Tensor
    cross_entropy: torch.Tensor
    presence: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {
            "loss": float(self.total.detach()),
            "loss_dice": float(self.dice.detach()),
            "loss_ce": float(self.cross_entropy.detach()),
            "loss_presence": float(self.presence.detach()),
        }


def segmentation_loss(
    logits: torch.Tensor,
    presence_logit: torch.Tensor,
    target: torch.Tensor,
    *,
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
    presence_weight: float = 0.1,
    smooth: float = 1.0,
) -> LossParts:
    """The weighted loss and its parts. ``target`` is (B, H, W) with values 0 or 1.

    >>> logits = torch.zeros(1, 2, 4, 4); target = torch.zeros(1, 4, 4)
    >>> round(float(segmentation_loss(logits, torch.zeros(1), target).cross_entropy), 4)
    0.6931
    """
    logits = logits.float()
    target = target.float()
    probability = logits.softmax(dim=1)[:, LV_CLASS]
    intersection = (probability * target).sum(dim=(1, 2))
    denominator = probability.sum(dim=(1, 2)) + target.sum(dim=(1, 2))
    dice = 1.0 - ((2.0 * intersection + smooth) / (denominator + smooth)).mean()
    cross_entropy = F.cross_entropy(logits, target.long())
    present = (target.flatten(1).amax(dim=1) > 0).float()
    presence = F.binary_cross_entropy_with_logits(presence_logit.float(), present)
    total = dice_weight * dice + ce_weight * cross_entropy + presence_weight * presence
    return LossParts(total, dice, cross_entropy, presence)


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
