"""The networks, by name: LVNet (ours) and the baselines it is measured against.

``model`` imports torch, the standard library and the package's lowest layers (``architecture``
writes JSON through ``jsonsafe``; ``architecture_figure`` draws with matplotlib when called).
Every model returns a :class:`SegmentationOutput` (score maps and an image-level presence logit),
so the training engine treats them alike.

>>> import torch
>>> from lvseg.model import build_model, model_names
>>> model_names()
['lvnet', 'unet', 'dli-fcn']
>>> build_model("lvnet")(torch.zeros(1, 1, 64, 64)).logits.shape
torch.Size([1, 2, 64, 64])
"""

from importlib import import_module
from typing import Any

# Loaded on first use, so that ``lvseg.model.classes`` (the output channels) imports without
# torch: the lean inference install reads it.
_EXPORTS = {
    "Architecture": "architecture",
    "describe": "architecture",
    "PresenceFromCAM": "outputs",
    "SegmentationOutput": "outputs",
    "DEFAULT_INPUT_SIZE": "registry",
    "MODELS": "registry",
    "SizeReport": "registry",
    "build_from_config": "registry",
    "build_model": "registry",
    "config_of": "registry",
    "model_names": "registry",
    "name_of": "registry",
    "parse_options": "registry",
    "size_report": "registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
