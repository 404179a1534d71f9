"""What the segmenter runs: any network behind one small protocol, NumPy in and NumPy out.

Two implementations: :class:`TorchNetwork` (a trained PyTorch module, for evaluate, explain and
the export checks) and :class:`lvseg.segment.onnx.ExportedModel` (ONNX Runtime, for predict and
for evaluating what is shipped). This module imports torch only inside :class:`TorchNetwork`,
so the lean inference install (no torch) can use the rest.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from lvseg.errors import InvalidInputError
from lvseg.model.classes import LV_CLASS


class Network(Protocol):
    """A segmentation network: class scores of preprocessed images."""

    lv_class: int

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Class scores (B, classes, H, W) float32 of images (B, 1, H, W) float32."""
        ...


def lv_softmax(logits: np.ndarray, lv_class: int = LV_CLASS) -> np.ndarray:
    """The softmax probability (B, H, W) of channel ``lv_class`` of logits (B, classes, H, W)."""
    logits = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return (weights[:, lv_class] / weights.sum(axis=1)).astype(np.float32)


def input_channels(model: Any) -> int:
    """The input channels a registered model takes (1 where its config does not say)."""
    return int(getattr(getattr(model, "config", None), "in_channels", 1))


class TorchNetwork:
    """A PyTorch module of the registry as a :class:`Network`, in eval mode on ``device``."""

    lv_class = LV_CLASS

    def __init__(self, model: Any, device: Any = "cpu", *, source: Any = None) -> None:
        channels = input_channels(model)
        if channels != 1:
            raise InvalidInputError(
                source, f"the model takes {channels} input channels; MRI slices have 1"
            )
        self.model = model.eval()
        self.device = device

    def logits(self, images: np.ndarray) -> np.ndarray:
        import torch

        batch = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device)
        with torch.no_grad():
            return self.model(batch).logits.float().cpu().numpy()
