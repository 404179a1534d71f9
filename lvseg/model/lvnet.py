"""LVNet: a lightweight encoder-decoder whose class score maps are class activation maps.

Design, top to bottom (read it in one sitting):

1. **Encoder.** A 3x3 stem, then ``depth`` stages that halve the resolution and double the width
   (``width``, 2*width, ...). Each stage is a stride-2 depthwise-separable block followed by
   ``blocks`` residual depthwise-separable blocks (depthwise 3x3 -> BN -> ReLU -> pointwise 1x1 ->
   BN, plus the identity). Depthwise-separable convolutions cost ``C*9 + C*C'`` weights instead of
   ``C*C'*9``, which is how the network stays under 250k parameters although four stages give
   the bottleneck a 95x95-pixel receptive field (with the decoder, every output pixel within
   about 12 pixels of the centre of a 128x128 crop sees the whole crop).
2. **Decoder.** Each stage upsamples bilinearly, concatenates the encoder features of the same
   scale (U-Net skip), and fuses them with a separable block, back to full resolution, ending in
   ``width`` feature maps ``F_k(x, y)``, k = 1..K.
3. **Segmentation head = CAM.** A single 1x1 convolution maps the last feature maps to class
   scores, so for class c

       S_c(x, y) = sum_k w_{c,k} F_k(x, y) + b_c,

   which is exactly the class activation map of Zhou et al. (2016), ``M_c = sum_k w_k^c f_k``,
   computed at full resolution: no approximation, no gradients, one matrix product.
4. **Global-average-pooling head.** Averaging the LV-versus-background score map over the image
   gives an image-level "LV present" logit

       z = a * GAP(S_lv - S_bg) + t
         = a * sum_k (w_{lv,k} - w_{bg,k}) GAP(F_k) + a (b_lv - b_bg) + t,

   a CAM classifier on the same weights, with one learnable scale ``a`` and offset ``t`` (the
   average over an image is dominated by background, so the raw average needs re-centring). It
   is trained with its own loss term on apical and basal slices with and without LV, and its
   class map is the segmentation map itself: the network explains its image-level decision with
   the very pixels it segments. The same head (:class:`PresenceFromCAM`) serves every model in
   the registry.
5. **Deep supervision** (``deep_supervision`` > 0, off by default). The first decoder stages
   above full resolution get their own 1x1 class heads, trained (in training mode only) against
   the same masks, as in nnU-Net: the coarse stages then learn where the LV is, not only what
   helps the last stage draw its boundary. In eval mode the model returns exactly what it
   returns without them; the heads cost ``(2*width + 1) * classes`` parameters per level.

The defaults (width 16, depth 4, one residual block per stage) have 231,716 parameters and cost
0.11 G multiply-accumulates for one 128x128 image; three quarters of the parameters sit in the
bottom stage and its first decoder stage, where the maps are 8x8 and 16x16.

No pretrained weights anywhere: every parameter starts from PyTorch's default initialisation.

>>> import torch
>>> model = LVNet(LVNetConfig())
>>> out = model(torch.zeros(2, 1, 128, 128))
>>> tuple(out.logits.shape), tuple(out.presence_logit.shape)
((2, 2, 128, 128), (2,))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .outputs import PresenceFromCAM, SegmentationOutput, check_config


@dataclass
class LVNetConfig:
    """Every size knob of LVNet; the defaults have 231,716 parameters (budget: 250k)."""

    in_channels: int = 1
    classes: int = 2
    """Background plus structures; class 1 is the LV blood pool."""
    width: int = 16
    """Feature maps at full resolution (the K maps the CAM head weighs); doubles per stage."""
    depth: int = 4
    """Downsampling stages: 4 halves a 128x128 crop down to 8x8."""
    blocks: int = 1
    """Residual blocks per encoder stage (after the downsampling block)."""
    dense_levels: int = 0
    """Resolution levels, from full resolution down, whose blocks (stem, encoder, decoder) use
    full 3x3 convolutions instead of depthwise-separable ones: cheap in parameters where the
    maps are narrow, and where the boundaries are drawn."""
    max_width: int = 0
    """Cap on the channels of any stage (0: no cap); the bottom stages hold most parameters."""
    deep_supervision: int = 0
    """Decoder stages above full resolution (at 1/2, 1/4, ... of it) with their own class head
    for deep supervision in training (0: none; at most ``depth - 1``)."""

    def __post_init__(self) -> None:
        check_config(
            self,
            in_channels=1,
            classes=2,
            width=1,
            depth=1,
            blocks=0,
            dense_levels=0,
            max_width=0,
            deep_supervision=0,
        )
        if self.deep_supervision > self.depth - 1:
            raise ValueError(
                f"LVNetConfig.deep_supervision must be at most depth - 1 = {self.depth - 1}, "
                f"got {self.deep_supervision}"
            )

    def widths(self) -> list[int]:
        """Channels at each resolution level, full resolution first."""
        widths = [self.width * 2**i for i in range(self.depth + 1)]
        return [min(w, self.max_width) if self.max_width else w for w in widths]


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class SeparableBlock(nn.Module):
    """Depthwise 3x3 -> BN -> ReLU -> pointwise 1x1 -> BN (-> + identity) -> ReLU.

    Activations are modules, not functions, so the live monitor can hook each one."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.act1 = nn.ReLU(inplace=True)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = nn.ReLU(inplace=True)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.pointwise(self.act1(self.bn1(self.depthwise(x)))))
        return self.act2(y + x if self.residual else y)


class DenseBlock(nn.Module):
    """3x3 conv -> BN -> ReLU -> 3x3 conv -> BN (-> + identity) -> ReLU: a full residual block."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = nn.ReLU(inplace=True)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(y + x if self.residual else y)


class LVNet(nn.Module):
    """The network of the module docstring: encoder, decoder, CAM head, presence head."""

    def __init__(self, config: LVNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or LVNetConfig()
        widths = config.widths()

        def block(level: int, cin: int, cout: int, stride: int = 1) -> nn.Module:
            kind = DenseBlock if level < config.dense_levels else SeparableBlock
            return kind(cin, cout, stride)

        self.stem = nn.Sequential(
            conv_bn_relu(config.in_channels, widths[0]), block(0, widths[0], widths[0])
        )
        self.encoder = nn.ModuleList(
            nn.Sequential(
                block(i + 1, widths[i], widths[i + 1], stride=2),
                *(block(i + 1, widths[i + 1], widths[i + 1]) for _ in range(config.blocks)),
            )
            for i in range(config.depth)
        )
        self.decoder = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(widths[i + 1] + widths[i], widths[i], 1, bias=False),
                nn.BatchNorm2d(widths[i]),
                nn.ReLU(inplace=True),
                block(i, widths[i], widths[i]),
            )
            for i in reversed(range(config.depth))
        )
        self.head = nn.Conv2d(widths[0], config.classes, 1)
        """The CAM head: S_c = sum_k w_ck F_k + b_c."""
        self.presence = PresenceFromCAM()
        """z = a * GAP(S_lv - S_bg) + t."""
        self.auxiliary_heads = nn.ModuleList(
            nn.Conv2d(widths[level], config.classes, 1)
            for level in range(1, config.deep_supervision + 1)
        )
        """Deep supervision: a class head on the decoder output at 1/2, 1/4, ... resolution."""

    def decoded(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The decoder's outputs, coarsest first; the last is F_k (B, width, H, W)."""
        skips = [self.stem(x)]
        for stage in self.encoder:
            skips.append(stage(skips[-1]))
        y = skips.pop()
        outputs = []
        for stage in self.decoder:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = stage(torch.cat([y, skip], dim=1))
            outputs.append(y)
        return outputs

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature maps F_k (B, width, H, W) that the CAM head weighs."""
        return self.decoded(x)[-1]

    def forward(self, x: torch.Tensor) -> SegmentationOutput:
        decoded = self.decoded(x)
        logits = self.head(decoded[-1])
        auxiliary: tuple[torch.Tensor, ...] = ()
        if self.training and len(self.auxiliary_heads):
            coarser = decoded[-2::-1][: len(self.auxiliary_heads)]  # 1/2 resolution first
            auxiliary = tuple(
                head(f) for head, f in zip(self.auxiliary_heads, coarser, strict=True)
            )
        return SegmentationOutput(logits, self.presence(logits), auxiliary)

    def cam_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(w, b) of the CAM head: w is (classes, K), b is (classes,)."""
        return self.head.weight[:, :, 0, 0], self.head.bias
