"""The choices the commands offer, as enums Typer shows and checks."""

from __future__ import annotations

from enum import Enum


class Format(str, Enum):
    auto = "auto"
    sunnybrook = "sunnybrook"
    folders = "folders"
    nifti = "nifti"
    phantom = "phantom"


class PhantomFormat(str, Enum):
    dicom = "dicom"
    nifti = "nifti"


class PhantomContrast(str, Enum):
    ssfp = "ssfp"
    random = "random"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Prefer(str, Enum):
    smallest = "smallest"
    fastest = "fastest"
    dice = "dice"


class ExplainMethod(str, Enum):
    cam = "cam"
    gradcam = "gradcam"


class EvaluateSplit(str, Enum):
    held_out = "held-out"
    all = "all"


class Crop(str, Enum):
    """Mirrors :data:`lvseg.segment.segmenter.CROPS` (a test checks that they agree)."""

    located = "located"
    centre = "centre"


class ExportFormat(str, Enum):
    onnx = "onnx"
    ort = "ort"
    torchscript = "torchscript"
