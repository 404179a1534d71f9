"""The theoretical receptive field, followed through a real forward pass.

Every tensor the forward pass makes carries a :class:`Reach`: the side ``size`` of the input
region one of its pixels can see, and the ``jump`` between neighbouring pixels, in input pixels.
The classic rule, per operation of kernel k, dilation d and stride s:

    size += (k - 1) * d * jump,   jump *= s

with a transposed convolution or an upsampling reaching ``taps`` input pixels per output pixel
(``ceil(((k - 1) * d + 1) / s)`` for a transposed convolution; 2 for bilinear, 1 for nearest,
4 for bicubic interpolation) and dividing the jump by its factor. Where paths meet (a skip
connection's concatenation, a residual addition) the result takes the **largest** size over its
inputs: the max over all paths. A global pooling, a mean over the spatial axes or a matrix
product sees the whole input. Padding and cropping do not change it; kernels are taken as
square (the larger side).

>>> import torch
>>> stack = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3), torch.nn.Conv2d(1, 1, 3, stride=2),
...                             torch.nn.Conv2d(1, 1, 3))
>>> image = torch.zeros(1, 1, 32, 32)
>>> with ReceptiveFieldMode() as mode:
...     mode.mark_input(image)
...     out = stack(image)
>>> mode.side(out)
9
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakTensorKeyDictionary

aten = torch.ops.aten

INTERPOLATION_TAPS = {
    aten.upsample_nearest2d: 1,
    aten.upsample_bilinear2d: 2,
    aten._upsample_bilinear2d_aa: 2,
    aten.upsample_bicubic2d: 4,
    aten._upsample_bicubic2d_aa: 4,
}
POOLS = {aten.max_pool2d_with_indices, aten.max_pool2d, aten.avg_pool2d}
ADAPTIVE_POOLS = {aten._adaptive_avg_pool2d, aten.adaptive_max_pool2d}
REDUCTIONS = {aten.mean, aten.sum, aten.amax, aten.amin, aten.max, aten.min, aten.var, aten.std}
MATRIX_PRODUCTS = {aten.mm, aten.addmm, aten.bmm, aten.baddbmm, aten.matmul}


@dataclass(frozen=True)
class Reach:
    size: Fraction
    """Side of the input region one pixel sees, in input pixels."""
    jump: Fraction
    """Input pixels between two neighbouring pixels of this tensor."""
    whole: bool = False
    """The whole input (after a global pooling): ``size`` no longer applies."""

    def grown(self, taps: int, stride: Fraction) -> Reach:
        """After an operation that reads ``taps`` neighbouring pixels and moves by ``stride``."""
        if self.whole:
            return self
        return Reach(self.size + (taps - 1) * self.jump, self.jump * stride)


WHOLE = Reach(Fraction(0), Fraction(1), whole=True)


def _meet(reaches: list[Reach]) -> Reach:
    """Where paths meet: the largest reach (the max over paths), at the finest jump."""
    if any(reach.whole for reach in reaches):
        return WHOLE
    return Reach(max(r.size for r in reaches), min(r.jump for r in reaches))


def _first(values: Any) -> int:
    """The first of an int or a list of ints (square kernels and strides)."""
    return int(values[0]) if isinstance(values, (list, tuple)) else int(values)


def _convolution(reach: Reach, args: tuple) -> Reach:
    weight, stride, dilation, transposed = args[1], _first(args[3]), _first(args[5]), args[6]
    span = (max(weight.shape[2:], default=1) - 1) * _first(dilation) + 1
    if transposed:
        return reach.grown(math.ceil(span / stride), Fraction(1, stride))
    return reach.grown(span, Fraction(stride))


def _pool(func: Any, reach: Reach, args: tuple) -> Reach:
    kernel = _first(args[1])
    stride = _first(args[2]) if len(args) > 2 and args[2] else kernel
    dilation = _first(args[4]) if func is not aten.avg_pool2d and len(args) > 4 else 1
    return reach.grown((kernel - 1) * dilation + 1, Fraction(stride))


def _resampled(reach: Reach, source: torch.Tensor, result: torch.Tensor, taps: int) -> Reach:
    """Interpolation or adaptive pooling from ``source``'s grid to ``result``'s."""
    return reach.grown(taps, Fraction(source.shape[-1], max(result.shape[-1], 1)))


def _reduces_space(args: tuple, kwargs: dict) -> bool:
    """Whether a reduction runs over a spatial axis (the last two of a map)."""
    tensor = args[0]
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    if dims is None or tensor.dim() < 3:
        return True
    dims = [dims] if isinstance(dims, int) else list(dims)
    return any(d % tensor.dim() >= tensor.dim() - 2 for d in dims) or not dims


def _after(func: Any, reach: Reach, call: tuple, result: Any) -> Reach:
    """The reach of ``func``'s result from the reach of its inputs."""
    args, kwargs = call
    packet = func.overloadpacket
    if packet is aten.convolution:
        return _convolution(reach, args)
    if packet in POOLS:
        return _pool(packet, reach, args)
    first = tree_leaves(result)[0]
    if packet in INTERPOLATION_TAPS:
        return _resampled(reach, args[0], first, INTERPOLATION_TAPS[packet])
    if packet in ADAPTIVE_POOLS:
        if all(side == 1 for side in first.shape[-2:]):
            return WHOLE
        return _resampled(reach, args[0], first, math.ceil(args[0].shape[-1] / first.shape[-1]))
    if packet in MATRIX_PRODUCTS or (packet in REDUCTIONS and _reduces_space(args, kwargs)):
        return WHOLE
    return reach  # elementwise, normalisation, concatenation, padding, cropping, views


class ReceptiveFieldMode(TorchDispatchMode):
    """Follows every tensor made from the input marked with :meth:`mark_input`."""

    def __init__(self) -> None:
        super().__init__()
        self.reach: WeakTensorKeyDictionary = WeakTensorKeyDictionary()

    def mark_input(self, tensor: torch.Tensor) -> None:
        self.reach[tensor] = Reach(Fraction(1), Fraction(1))

    def side(self, tensor: torch.Tensor | None) -> int | None:
        """Receptive field of ``tensor``'s pixels in input pixels; None for the whole input or
        a tensor the input does not reach."""
        reach = self.reach.get(tensor) if tensor is not None else None
        return None if reach is None or reach.whole else math.ceil(reach.size)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        reaches = [
            self.reach[t]
            for t in tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor) and t in self.reach
        ]
        if reaches:
            after = _after(func, _meet(reaches), (args, kwargs), result)
            for tensor in tree_leaves(result):
                if isinstance(tensor, torch.Tensor):
                    self.reach[tensor] = after
        return result
