"""The networks, by name: LVNet (ours) and the baselines it is measured against.

``model`` imports nothing but torch and the standard library. Every model returns a
:class:`SegmentationOutput` (score maps and an image-level presence logit), so the training engine
treats them alike.

>>> import torch
>>> from lvseg.model import build_model, model_names
>>> model_names()
['lvnet', 'unet', 'dli-fcn']
>>> build_model("lvnet")(torch.zeros(1, 1, 64, 64)).logits.shape
torch.Size([1, 2, 64, 64])
"""

from .outputs import PresenceFromCAM, SegmentationOutput
from .registry import (
    DEFAULT_INPUT_SIZE,
    MODELS,
    SizeReport,
    build_from_config,
    build_model,
    config_of,
    model_names,
    name_of,
    size_report,
)

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "MODELS",
    "PresenceFromCAM",
    "SegmentationOutput",
    "SizeReport",
    "build_from_config",
    "build_model",
    "config_of",
    "model_names",
    "name_of",
    "size_report",
]
