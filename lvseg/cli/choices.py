"""The choices the commands offer, as enums Typer shows and checks.

Built from the package's own tuples where their module is light (:mod:`lvseg.config`). The others
are written out here, because their owners import torch (model registry, explanations, selection,
export) or take a second or more to import (segmenter, evaluation, phantom), and the command line
must start fast, and without torch in the lean install (``lvseg[infer]``);
``tests/test_cli_options.py`` checks each against its owner.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from lvseg.config import DEVICES, PRECISIONS


def choice(name: str, values: Sequence[str]) -> type[Enum]:
    """A ``str`` enum of ``values``; a member's name is its value with ``-`` as ``_``."""
    return Enum(name, [(value.replace("-", "_"), value) for value in values], type=str)


Device = choice("Device", DEVICES)
Precision = choice("Precision", PRECISIONS)

# The readers' names (lvseg.data.load.FORMATS), real formats first (that tuple is in the order
# auto-detection tries them).
Format = choice("Format", ("auto", "sunnybrook", "folders", "nifti", "phantom"))
PhantomFormat = choice("PhantomFormat", ("dicom", "nifti"))  # lvseg.data.phantom.FORMATS
PhantomContrast = choice("PhantomContrast", ("ssfp", "random"))  # lvseg.data.phantom.CONTRASTS
MODEL_NAMES = ("lvnet", "unet", "dli-fcn")  # lvseg.model.registry.model_names()
Prefer = choice("Prefer", ("smallest", "fastest", "dice"))  # lvseg.train.select.PREFERENCES
ExplainMethod = choice("ExplainMethod", ("cam", "gradcam"))  # lvseg.explain.cam.METHODS
EvaluateSplit = choice("EvaluateSplit", ("held-out", "all"))  # lvseg.evaluate.run.SPLITS
Crop = choice("Crop", ("located", "centre"))  # lvseg.segment.segmenter.CROPS
ExportFormat = choice("ExportFormat", ("onnx", "ort", "torchscript"))  # lvseg.deploy.export.FORMATS
