"""The contract every registered model keeps, so the training engine can treat them alike.

Every model's ``forward`` returns a :class:`SegmentationOutput`: per-pixel class scores and one
image-level "LV present" logit. The presence logit is always read off the score maps by the same
small head, :class:`PresenceFromCAM`, so a baseline and LVNet differ only in how they produce the
score maps. Configs reject bad values with :func:`check_config`, whose message names the field.

>>> import torch
>>> logits = torch.zeros(2, 2, 8, 8)
>>> logits[0, 1] = 3.0  # the first image says "LV" everywhere
>>> PresenceFromCAM()(logits)
tensor([3., 0.], grad_fn=<AddBackward0>)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from lvseg.model.classes import BACKGROUND_CLASS, LV_CLASS


class SegmentationOutput(NamedTuple):
    """What every model in the registry returns."""

    logits: torch.Tensor
    """Class score maps (B, classes, H, W) at input resolution, channels in
    :data:`lvseg.model.classes.CLASS_NAMES` order."""
    presence_logit: torch.Tensor
    """Image-level "LV present" logit (B,), from global average pooling of the score maps."""
    auxiliary: tuple[torch.Tensor, ...] = ()
    """Deep supervision: class scores of coarser decoder stages (B, classes, h, w), finest
    first, in training mode only (empty in eval mode, so inference and export never see them)."""


class PresenceFromCAM(nn.Module):
    """Image-level LV-presence logit ``z = a * mean_{H,W}(S_lv - S_bg) + t`` from score maps S.

    ``a`` (init 1) and ``t`` (init 0) are the only parameters. The average over an image is
    dominated by background, so the raw average needs its own scale and offset; the pixels that
    raise ``z`` are exactly the pixels segmented as LV.
    """

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.offset = nn.Parameter(torch.tensor(0.0))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        evidence = (logits[:, LV_CLASS] - logits[:, BACKGROUND_CLASS]).mean(dim=(-2, -1))
        return self.scale * evidence + self.offset


def check_config(config: Any, **minimums: int) -> None:
    """Raise ``ValueError`` naming the first field of ``config`` that is not an int >= its minimum.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Config:
    ...     width: int = 0
    >>> check_config(Config(), width=1)
    Traceback (most recent call last):
    ...
    ValueError: Config.width must be an integer >= 1, got 0
    """
    for name, minimum in minimums.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(
                f"{type(config).__name__}.{name} must be an integer >= {minimum}, got {value!r}"
            )
