"""Every network by name: build it, rebuild it from a checkpoint's config, and size it.

>>> model_names()
['lvnet', 'unet', 'dli-fcn']
>>> model = build_model("lvnet", width=8)
>>> config_of(model)["width"], config_of(model)["depth"]
(8, 4)
>>> same = build_from_config(name_of(model), config_of(model))
>>> same.load_state_dict(model.state_dict())
<All keys matched successfully>
>>> dict(size_report("lvnet").rows())["parameters"]
'231,716'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .fcn import DLIFCN, DLIFCNConfig
from .lvnet import LVNet, LVNetConfig
from .unet import UNet, UNetConfig

DEFAULT_INPUT_SIZE = 128
"""Side of the square crop that the size report (and the default data plan) assumes."""


@dataclass(frozen=True)
class ModelSpec:
    config: type
    """The config dataclass; its fields are the only accepted overrides."""
    model: type[nn.Module]
    """Built as ``model(config)``."""
    description: str


MODELS: Mapping[str, ModelSpec] = {
    "lvnet": ModelSpec(
        LVNetConfig, LVNet, "ours: separable-conv encoder-decoder whose score maps are CAMs"
    ),
    "unet": ModelSpec(
        UNetConfig, UNet, "reference: Ronneberger U-Net (2015) with BatchNorm, base width 32"
    ),
    "dli-fcn": ModelSpec(
        DLIFCNConfig, DLIFCN, "era baseline: the small FCN of the NVIDIA DIGITS/DLI Sunnybrook lab"
    ),
}


def model_names() -> list[str]:
    """Registered names, ours first."""
    return list(MODELS)


def _spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return MODELS[name]


def build_model(name: str, **overrides: Any) -> nn.Module:
    """Build the registered model ``name``, its config's defaults replaced by ``overrides``.

    Raises ``ValueError`` for an unknown name (listing the known ones), an unknown override
    (listing the known keys) or a bad value (naming the key).

    >>> build_model("unet", widht=16)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown option 'widht' for model 'unet'; known options: in_channels, classes, ...
    """
    spec = _spec(name)
    known = [field.name for field in dataclasses.fields(spec.config)]
    for key in overrides:
        if key not in known:
            raise ValueError(
                f"unknown option {key!r} for model {name!r}; known options: {', '.join(known)}"
            )
    return spec.model(spec.config(**overrides))


def parse_options(name: str, pairs: Iterable[str]) -> dict[str, Any]:
    """``key=value`` texts (a command line's, a form's) as the overrides of model ``name``, each
    value read as its config field's type; ``ValueError`` names an unknown key (listing the
    known ones), a text that is not ``key=value`` or a value of the wrong type. A dash in a key
    reads as an underscore.

    >>> parse_options("lvnet", ["width=8", "deep-supervision=1"])
    {'width': 8, 'deep_supervision': 1}
    >>> parse_options("dli-fcn", ["dropout=0.1", "bilinear_init=no"])
    {'dropout': 0.1, 'bilinear_init': False}
    >>> parse_options("lvnet", ["width=wide"])
    Traceback (most recent call last):
    ...
    ValueError: option width of model 'lvnet' takes an integer, got 'wide'
    """
    defaults = {f.name: f.default for f in dataclasses.fields(_spec(name).config)}
    options: dict[str, Any] = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not equals or not key:
            raise ValueError(f"model option {pair!r} is not key=value (e.g. width=8)")
        if key not in defaults:
            raise ValueError(
                f"unknown option {key!r} for model {name!r}; known options: {', '.join(defaults)}"
            )
        options[key] = _typed(text.strip(), defaults[key], f"option {key} of model {name!r}")
    return options


_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _typed(text: str, default: Any, what: str) -> Any:
    """``text`` as a value of ``default``'s type (bool, int, float; anything else as text)."""
    if isinstance(default, bool):
        if text.lower() not in _BOOLEANS:
            raise ValueError(f"{what} takes true or false, got {text!r}")
        return _BOOLEANS[text.lower()]
    for kind, noun in ((int, "an integer"), (float, "a number")):
        if isinstance(default, kind):
            try:
                return kind(text)
            except ValueError:
                raise ValueError(f"{what} takes {noun}, got {text!r}") from None
    return text


def build_from_config(name: str, config: Mapping[str, Any]) -> nn.Module:
    """Rebuild a model from its registry name and ``config_of(model)``, e.g. from a checkpoint."""
    return build_model(name, **config)


def config_of(model: nn.Module) -> dict[str, Any]:
    """The model's config as a plain dict (JSON/TOML-ready) for ``build_from_config``."""
    config = getattr(model, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        raise TypeError(f"{type(model).__name__} has no dataclass `config` to save")
    return dataclasses.asdict(config)


def name_of(model: nn.Module) -> str:
    """The registry name of the model's class, or the class name if it is not registered."""
    for name, spec in MODELS.items():
        if type(model) is spec.model:
            return name
    return type(model).__name__


@dataclass(frozen=True)
class SizeReport:
    """How big and how costly a model is; ``rows()`` formats it for a table."""

    name: str
    parameters: int
    trainable_parameters: int
    fp32_bytes: int
    """4 bytes per parameter and per floating-point buffer (BatchNorm running statistics)."""
    macs: int
    """Multiply-accumulates of one forward pass for one image of ``input_size`` squared."""
    input_size: int
    in_channels: int

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs for a table, e.g. ``("parameters", "231,716")``."""
        side = self.input_size
        return [
            ("model", self.name),
            ("parameters", f"{self.parameters:,}"),
            ("trainable parameters", f"{self.trainable_parameters:,}"),
            ("fp32 size", _scaled(self.fp32_bytes, "B")),
            (f"MACs @{side}x{side}", _scaled(self.macs, "")),
        ]


def _scaled(value: float, unit: str) -> str:
    """``0.93 MB``, ``13.72 G``: the largest prefix that keeps at least 0.1 of it."""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= 0.1 * scale:
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}".rstrip()


def size_report(
    model_or_name: nn.Module | str,
    input_size: int = DEFAULT_INPUT_SIZE,
    in_channels: int | None = None,
) -> SizeReport:
    """Parameters, fp32 size and MACs of a model (a registered name builds its defaults).

    MACs are ``torch.utils.flop_counter.FlopCounterMode`` FLOPs / 2 for one eval-mode forward
    pass of a (1, in_channels, input_size, input_size) input; ``in_channels`` defaults to the
    model config's. The counter registers matrix products and convolutions, including depthwise,
    dilated and transposed ones, and nothing else: normalisation, activations, pooling,
    interpolation and the presence head's averages are not counted (they are a few per cent of
    the arithmetic and bound by memory, not compute).

    >>> class OneConv(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv = nn.Conv2d(1, 8, 3, padding=1)
    ...     def forward(self, x):
    ...         return self.conv(x)
    >>> report = size_report(OneConv(), input_size=32)
    >>> report.parameters, report.macs == 8 * 9 * 32 * 32
    (80, True)
    """
    model = build_model(model_or_name) if isinstance(model_or_name, str) else model_or_name
    if in_channels is None:
        in_channels = getattr(getattr(model, "config", None), "in_channels", 1)
    parameters = list(model.parameters())
    floating_buffers = [b for b in model.buffers() if b.is_floating_point()]
    reference = parameters[0] if parameters else torch.zeros(())
    image = torch.zeros(
        1, in_channels, input_size, input_size, dtype=reference.dtype, device=reference.device
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(image)
    finally:
        model.train(was_training)
    return SizeReport(
        name=name_of(model),
        parameters=sum(p.numel() for p in parameters),
        trainable_parameters=sum(p.numel() for p in parameters if p.requires_grad),
        fp32_bytes=4 * sum(t.numel() for t in parameters + floating_buffers),
        macs=counter.get_total_flops() // 2,
        input_size=input_size,
        in_channels=in_channels,
    )
