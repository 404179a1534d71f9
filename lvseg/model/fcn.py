"""The small FCN of the NVIDIA DIGITS / DLI Sunnybrook lab: the baseline of its era.

Source: the fully convolutional network of NVIDIA's DIGITS / Deep Learning Institute lab on
the Sunnybrook LV data, itself adapted from Vu Tran's Caffe tutorial "A Fully Convolutional
Network for Left Ventricle Segmentation" (Booz Allen Hamilton, for the second Kaggle Data Science
Bowl, 2015-16). Top to bottom, as the lab has it:

1. conv 5x5, 100 channels, stride 2, padding 2 -> ReLU -> max pool 2x2
2. conv 5x5, 200 channels, stride 2, padding 2 -> ReLU -> max pool 2x2 (total stride 16)
3. conv 3x3, 300 channels, padding 1 -> ReLU -> conv 3x3, 300 channels, padding 1 -> ReLU
4. dropout 0.5 -> conv 1x1 to the class scores (no activation)
5. a 31x31 transposed convolution with stride 16 back to input resolution, cropped to H x W.

Vu Tran's Caffe original differs in details: it padded the input by 50 and used unpadded
convolutions, dropout 0.1, and a ``Crop`` layer; like it, we start the upsampling as bilinear
interpolation (Caffe's ``bilinear`` filler), but every other weight from PyTorch's default
initialisation (the original: Gaussian with std 0.01, biases 0.1). Sides that are not multiples
of 16 are zero-padded at the bottom and right before the network and cropped after it. The
presence logit comes from :class:`PresenceFromCAM`, as for every model in the registry.

The defaults have 1,857,850 parameters and 0.22 G multiply-accumulates for one 128x128 image.

>>> import torch
>>> model = DLIFCN(DLIFCNConfig())
>>> out = model(torch.zeros(2, 1, 96, 160))
>>> tuple(out.logits.shape), tuple(out.presence_logit.shape)
((2, 2, 96, 160), (2,))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .outputs import PresenceFromCAM, SegmentationOutput, check_config

STRIDE = 16
"""Total downsampling of the two stride-2 convolutions and two 2x2 poolings."""
UPSAMPLE_KERNEL = 31
CROP_OFFSET = 10
"""Coarse cell m covers input pixels around 16m + 5 and the transposed kernel peaks at output
16m + 15, so cropping 10 pixels from the top and left centres each kernel on its cell."""


@dataclass
class DLIFCNConfig:
    """The knobs of the lab's FCN; its layer sizes are fixed, as in the lab."""

    in_channels: int = 1
    classes: int = 2
    """Background plus structures; class 1 is the LV blood pool."""
    dropout: float = 0.5
    """Dropout before the score layer (the lab: 0.5; the Caffe original: 0.1)."""
    bilinear_init: bool = True
    """Start the 31x31 upsampling as bilinear interpolation of each class map."""

    def __post_init__(self) -> None:
        check_config(self, in_channels=1, classes=2)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise ValueError(f"DLIFCNConfig.dropout must be a number, got {self.dropout!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"DLIFCNConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.bilinear_init, bool):
            raise ValueError(
                f"DLIFCNConfig.bilinear_init must be a bool, got {self.bilinear_init!r}"
            )


def bilinear_kernel(size: int, factor: int) -> torch.Tensor:
    """(size, size) tent; with ``size = 2 * factor - 1`` and stride ``factor`` it interpolates
    linearly between neighbouring cells (the weights of each output pixel sum to 1).

    >>> bilinear_kernel(7, 4)[3]
    tensor([0.2500, 0.5000, 0.7500, 1.0000, 0.7500, 0.5000, 0.2500])
    """
    tent = 1 - (torch.arange(size) - (size - 1) / 2).abs() / factor
    return torch.outer(tent, tent)


class DLIFCN(nn.Module):
    """The FCN of the module docstring."""

    def __init__(self, config: DLIFCNConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DLIFCNConfig()
        self.features = nn.Sequential(
            nn.Conv2d(config.in_channels, 100, 5, stride=2, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(100, 200, 5, stride=2, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(200, 300, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(300, 300, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
        )
        self.score = nn.Conv2d(300, config.classes, 1)
        self.upscore = nn.ConvTranspose2d(
            config.classes, config.classes, UPSAMPLE_KERNEL, stride=STRIDE
        )
        if config.bilinear_init:
            with torch.no_grad():
                self.upscore.weight.zero_()
                self.upscore.bias.zero_()
                for c in range(config.classes):
                    self.upscore.weight[c, c] = bilinear_kernel(UPSAMPLE_KERNEL, STRIDE)
        self.presence = PresenceFromCAM()

    def forward(self, x: torch.Tensor) -> SegmentationOutput:
        height, width = x.shape[-2:]
        x = F.pad(x, (0, -width % STRIDE, 0, -height % STRIDE))
        y = self.upscore(self.score(self.features(x)))
        logits = y[..., CROP_OFFSET : CROP_OFFSET + height, CROP_OFFSET : CROP_OFFSET + width]
        return SegmentationOutput(logits, self.presence(logits))
