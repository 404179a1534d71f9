"""A network's architecture as data: its layers in forward order with their output shapes,
parameters and multiply-accumulates at a square input size, the receptive field at the output,
and where the CAM head sits. The picture of it is :mod:`lvseg.model.architecture_figure`.

>>> from lvseg.model.registry import build_model
>>> arch = describe(build_model("lvnet"), 128)
>>> arch.parameters, arch.macs, arch.receptive_field, arch.cam_head
(231716, 109453312, 155, 'head')
>>> [layer.output_shape for layer in arch.layers[:2]]
[(16, 128, 128), (16, 128, 128)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lvseg.jsonsafe import json_safe

from .outputs import PresenceFromCAM
from .receptive import ReceptiveFieldMode
from .registry import DEFAULT_INPUT_SIZE, _scaled, name_of

CAM_HEAD = "CAM head"
PRESENCE_HEAD = "GAP presence head"


@dataclass(frozen=True)
class Layer:
    """One module that holds parameters of its own or has no children, as it ran."""

    name: str
    """Dotted module path, e.g. ``encoder.0.1.depthwise``."""
    type: str
    output_shape: tuple[int, ...] | None
    """Per image (batch left out): (C, H, W) for maps, () for one number per image; None when
    the layer did not run in an eval-mode forward pass (training-only heads)."""
    parameters: int
    macs: int
    """Multiply-accumulates of its own operations (children excluded), summed over its calls."""
    receptive_field: int | None
    """Side in input pixels of the region that can reach one output pixel; None after a global
    pooling (the whole input) or when the layer did not run."""
    role: str = ""
    """``CAM head``, ``GAP presence head`` or empty."""

    @property
    def group(self) -> str:
        """The block the layer belongs to: ``encoder.0`` for ``encoder.0.1.depthwise``."""
        parts = self.name.split(".")
        return ".".join(parts[:2]) if len(parts) > 1 and parts[1].isdigit() else parts[0]


@dataclass(frozen=True)
class Block:
    """Consecutive layers of one group (a stage), as the picture draws them."""

    name: str
    layers: int
    output_shape: tuple[int, ...] | None
    parameters: int
    macs: int
    receptive_field: int | None
    role: str


@dataclass(frozen=True)
class Architecture:
    """What :func:`describe` measures; ``to_json`` / ``from_json`` round-trip it."""

    model: str
    config: dict[str, Any]
    input_size: int
    in_channels: int
    layers: tuple[Layer, ...]
    parameters: int
    """Every parameter of the model (equals the sum over the layers)."""
    macs: int
    """As :func:`lvseg.model.registry.size_report` counts them (equals the sum over the layers)."""
    receptive_field: int
    """At the segmentation output (the score maps): the max over all paths through the network
    (skip connections included), in input pixels; it may exceed the input size."""
    output_shape: tuple[int, ...]
    """Of the score maps, per image."""
    cam_head: str | None = None
    """Name of the CAM head layer (a model with ``cam_weights()`` and a 1x1 ``head``), or None."""

    def blocks(self) -> list[Block]:
        """The layers merged by :attr:`Layer.group`, consecutive ones only, in forward order."""
        runs: list[list[Layer]] = []
        for layer in self.layers:
            if runs and runs[-1][0].group == layer.group:
                runs[-1].append(layer)
            else:
                runs.append([layer])
        return [_block(run) for run in runs]

    def to_json(self) -> dict[str, Any]:
        return json_safe(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Architecture:
        values = dict(data)
        values["layers"] = tuple(
            Layer(**{**layer, "output_shape": _shape(layer["output_shape"])})
            for layer in data["layers"]
        )
        values["output_shape"] = _shape(data["output_shape"])
        return cls(**values)


def _shape(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(value)


def _block(layers: list[Layer]) -> Block:
    ran = [layer for layer in layers if layer.output_shape is not None]
    last = ran[-1] if ran else layers[-1]
    return Block(
        name=layers[0].group,
        layers=len(layers),
        output_shape=last.output_shape,
        parameters=sum(layer.parameters for layer in layers),
        macs=sum(layer.macs for layer in layers),
        receptive_field=last.receptive_field,
        role=next((layer.role for layer in layers if layer.role), ""),
    )


def has_cam_head(model: nn.Module) -> bool:
    """The test :class:`lvseg.explain.cam.CAM` applies: ``cam_weights()`` and a Conv2d ``head``."""
    return callable(getattr(model, "cam_weights", None)) and isinstance(
        getattr(model, "head", None), nn.Conv2d
    )


@dataclass
class _Record:
    """What the hooks collect for one layer."""

    output: torch.Tensor | None = None
    receptive_field: int | None = None
    macs: int = 0
    calls: int = 0
    order: int = -1


@dataclass
class _Tracer:
    """Forward hooks on every layer that give the flop counter's growth to the innermost running
    layer (a layer with children of its own leaves them their share) and keep its output."""

    counter: FlopCounterMode
    field_mode: ReceptiveFieldMode
    records: dict[str, _Record]
    ran: int = 0
    stack: list[list[int]] = field(default_factory=list)
    """Per running layer: the flops when it started, the flops its running descendants used."""

    def before(self, name: str) -> None:
        self.stack.append([self.counter.get_total_flops(), 0])

    def after(self, name: str, output: Any) -> None:
        start, inner = self.stack.pop()
        used = self.counter.get_total_flops() - start
        if self.stack:
            self.stack[-1][1] += used
        record = self.records[name]
        record.macs += (used - inner) // 2
        record.calls += 1
        if record.order < 0:
            record.order, self.ran = self.ran, self.ran + 1
            record.output = _first_tensor(output)
            record.receptive_field = self.field_mode.side(record.output)

    def hooked(self, modules: Mapping[str, nn.Module]) -> list[Any]:
        """Hook every layer; returns the handles to remove."""
        handles = []
        for name, module in modules.items():
            handles.append(module.register_forward_pre_hook(lambda *_, n=name: self.before(n)))
            handles.append(module.register_forward_hook(lambda *a, n=name: self.after(n, a[-1])))
        return handles


def _first_tensor(value: Any) -> torch.Tensor | None:
    """A module's output tensor: itself, or the first of a tuple (the score maps of a
    :class:`~lvseg.model.outputs.SegmentationOutput`)."""
    if isinstance(value, (tuple, list)):
        return next((t for t in map(_first_tensor, value) if t is not None), None)
    return value if isinstance(value, torch.Tensor) else None


def _layer_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules with no children or with parameters of their own, in definition order."""
    return {
        name or type(model).__name__: module
        for name, module in model.named_modules()
        if not any(True for _ in module.children())
        or any(True for _ in module.parameters(recurse=False))
    }


def _own_parameters(module: nn.Module, seen: set[int]) -> int:
    """Parameters of the module itself, each shared parameter counted once overall."""
    count = 0
    for parameter in module.parameters(recurse=False):
        if id(parameter) not in seen:
            seen.add(id(parameter))
            count += parameter.numel()
    return count


def _role(model: nn.Module, name: str, module: nn.Module) -> str:
    if name == "head" and has_cam_head(model):
        return CAM_HEAD
    return PRESENCE_HEAD if isinstance(module, PresenceFromCAM) else ""


def describe(
    model: nn.Module, input_size: int = DEFAULT_INPUT_SIZE, in_channels: int | None = None
) -> Architecture:
    """Run one eval-mode forward pass of a (1, in_channels, input_size, input_size) zero image
    and read the architecture off it (``in_channels`` defaults to the model config's).

    MACs are counted as :func:`~lvseg.model.registry.size_report` counts them (FlopCounterMode
    FLOPs / 2: convolutions and matrix products only), each given to the layer that ran it; what
    runs outside every layer (a matrix product in a block's own ``forward``) is one row,
    ``(between layers)``, so the layers always add up to the model's totals.
    """
    if in_channels is None:
        in_channels = getattr(getattr(model, "config", None), "in_channels", 1)
    modules = _layer_modules(model)
    tracer = _Tracer(
        FlopCounterMode(display=False), ReceptiveFieldMode(), {n: _Record() for n in modules}
    )
    reference = next(model.parameters(), torch.zeros(()))
    image = torch.zeros(
        1, in_channels, input_size, input_size, dtype=reference.dtype, device=reference.device
    )
    handles, was_training = tracer.hooked(modules), model.training
    model.eval()
    try:
        with torch.no_grad(), tracer.counter, tracer.field_mode:
            tracer.field_mode.mark_input(image)
            output = model(image)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    layers = _layers(model, modules, tracer)
    logits = getattr(output, "logits", None)
    logits = logits if isinstance(logits, torch.Tensor) else _first_tensor(output)
    config = getattr(model, "config", None)
    return Architecture(
        model=name_of(model),
        config=dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {},
        input_size=input_size,
        in_channels=in_channels,
        layers=layers,
        parameters=sum(p.numel() for p in model.parameters()),
        macs=tracer.counter.get_total_flops() // 2,
        receptive_field=tracer.field_mode.side(logits) or 0,
        output_shape=tuple(logits.shape[1:]) if logits is not None else (),
        cam_head="head" if has_cam_head(model) else None,
    )


def _layers(
    model: nn.Module, modules: Mapping[str, nn.Module], tracer: _Tracer
) -> tuple[Layer, ...]:
    """The rows, those that ran in forward order, then those that did not, in definition order."""
    records, seen = tracer.records, set()
    order = sorted(modules, key=lambda n: (records[n].order < 0, records[n].order))
    layers = []
    for name in order:
        record, module = records[name], modules[name]
        if not record.calls and not any(True for _ in module.parameters(recurse=False)):
            continue  # an empty container (no deep-supervision heads), or a layer never used
        output = record.output
        layers.append(
            Layer(
                name=name,
                type=type(module).__name__,
                output_shape=tuple(output.shape[1:])
                if record.calls and output is not None
                else None,
                parameters=_own_parameters(module, seen),
                macs=record.macs,
                receptive_field=record.receptive_field,
                role=_role(model, name, module),
            )
        )
    between = tracer.counter.get_total_flops() // 2 - sum(layer.macs for layer in layers)
    if between:
        layers.append(Layer("(between layers)", "functional", None, 0, between, None))
    return tuple(layers)


def comparison_rows(first: Architecture, second: Architecture) -> list[tuple[str, str, str]]:
    """(what, first, second) for a side-by-side table of two networks."""

    def field_text(arch: Architecture) -> list[str]:
        side = f"{arch.receptive_field} px" + (
            " (whole input)" if arch.receptive_field >= arch.input_size else ""
        )
        return [
            arch.model,
            f"{arch.parameters:,}",
            _scaled(arch.macs, ""),
            side,
            str(sum(1 for layer in arch.layers if layer.output_shape is not None)),
            str(len(arch.blocks())),
            arch.cam_head or "-",
        ]

    labels = [
        "model",
        "parameters",
        f"MACs @{first.input_size}x{first.input_size}",
        "receptive field",
        "layers",
        "blocks",
        "CAM head",
    ]
    return list(zip(labels, field_text(first), field_text(second), strict=True))
