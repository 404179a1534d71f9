"""An exported model run with ONNX Runtime: the network of ``lvseg predict`` (and of
``lvseg evaluate`` given an export), behind the segmenter's :class:`~lvseg.segment.network.Network`
protocol.

An lvseg ONNX (or ORT) file is self-contained: besides the graph it carries, in the ONNX
``metadata_props``, everything inference needs, so a lean install (``pip install lvseg[infer]``,
no PyTorch) can segment with nothing else:

- ``lvseg_format`` = ``lvseg-onnx`` and ``lvseg_format_version`` (refused when newer than this
  lvseg reads), ``lvseg_version``;
- ``model_name`` (``lvnet``...), ``precision`` (``fp32`` or ``int8``), ``lv_class`` (the channel
  of the LV blood pool in the output), ``parameters``;
- ``plan``: the preprocessing plan as JSON (:class:`lvseg.data.preprocess.PreprocessPlan`:
  spacing, crop size, intensity normalisation);
- ``split``: the patients the model trained and validated on, as JSON (so ``lvseg evaluate`` of
  an export leaves them out), and ``train_data``, the path of its training data.

The graph takes ``image`` (B, 1, H, W) float32, preprocessed as the plan says, with a dynamic
batch and spatial size, and returns ``logits`` (B, classes, H, W). This module imports no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lvseg import layout
from lvseg.data.preprocess import PreprocessPlan
from lvseg.data.splits import Split
from lvseg.errors import InvalidInputError
from lvseg.model.classes import LV_CLASS
from lvseg.segment.quality import QualityModel

FORMAT = "lvseg-onnx"
FORMAT_VERSION = 1
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
SUFFIXES = (".onnx", ".ort")
INSTALL_HINT = "pip install 'lvseg[infer]'"


def resolve_exported(spec: str | Path) -> Path:
    """The model file a MODEL argument of ``predict`` names: an ``.onnx``/``.ort`` file, or a
    folder written by ``lvseg export``. A PyTorch run or checkpoint is refused with the command
    that exports it."""
    path = Path(spec)
    if path.is_dir():
        found = layout.exported_model(path)
        if found is not None:
            return found
        if layout.looks_like_run(path):
            raise InvalidInputError(
                path,
                f"a training run, not an exported model: run 'lvseg export {path} --out DIR' "
                "first (predict runs the exported model on ONNX Runtime)",
            )
        raise InvalidInputError(path, f"no exported model here ({layout.ONNX} or {layout.ORT})")
    if not path.is_file():
        raise InvalidInputError(path, "no such model file")
    if path.suffix == ".pt":
        raise InvalidInputError(
            path,
            f"a PyTorch checkpoint: run 'lvseg export {path} --out DIR' first "
            "(predict runs the exported model on ONNX Runtime)",
        )
    if path.suffix.lower() not in SUFFIXES:
        raise InvalidInputError(path, "not an exported model (expected .onnx or .ort)")
    return path


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise InvalidInputError(
            None, f"ONNX Runtime is not installed; install it with {INSTALL_HINT}"
        ) from None
    return onnxruntime


@dataclass
class ExportedModel:
    """An open lvseg ONNX/ORT model: a session to run it and what its metadata says."""

    path: Path | None
    session: Any
    plan: PreprocessPlan
    model_name: str
    precision: str
    lv_class: int
    metadata: dict[str, str]
    split: Split | None = None
    """The patients it trained and validated on, where the export recorded them."""
    train_data: str | None = None
    parameters: int | None = None
    tta: bool = False
    """Whether the export asks for test-time augmentation (``lvseg export --tta``)."""
    quality: QualityModel | None = None
    """The quality-control score the export embeds (:mod:`lvseg.segment.quality`)."""

    @property
    def name(self) -> str:
        return self.model_name

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Class scores (B, classes, H, W) of preprocessed images (B, 1, H, W)."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]


def read_metadata(
    metadata: dict[str, str], path: Path | None
) -> tuple[PreprocessPlan, dict[str, Any]]:
    """The plan and the facts of an lvseg model's metadata; wrong kind or version is refused."""
    kind = metadata.get("lvseg_format")
    if kind != FORMAT:
        raise InvalidInputError(
            path, "an ONNX model without lvseg metadata (export models with 'lvseg export')"
        )
    try:
        version = int(metadata.get("lvseg_format_version", ""))
    except ValueError:
        raise InvalidInputError(path, "lvseg model has no valid format version") from None
    if version > FORMAT_VERSION:
        raise InvalidInputError(
            path,
            f"model format version {version} is newer than this lvseg reads ({FORMAT_VERSION}); "
            "upgrade lvseg",
        )
    try:
        plan = PreprocessPlan.from_dict(json.loads(metadata["plan"]))
        lv_class = int(metadata.get("lv_class", LV_CLASS))
    except (KeyError, ValueError, TypeError, AttributeError):
        raise InvalidInputError(
            path, "lvseg model metadata has no valid preprocessing plan"
        ) from None
    if not isinstance(plan.crop_size, int) or plan.crop_size < 1:
        raise InvalidInputError(path, f"lvseg model metadata has a bad crop size {plan.crop_size}")
    try:
        split = Split.from_dict(json.loads(metadata["split"])) if "split" in metadata else None
        parameters = int(metadata["parameters"]) if "parameters" in metadata else None
    except (ValueError, TypeError, AttributeError, InvalidInputError):
        raise InvalidInputError(path, "lvseg model metadata has an unreadable split") from None
    try:
        quality = (
            QualityModel.from_dict(json.loads(metadata["quality"]))
            if "quality" in metadata
            else None
        )
    except (ValueError, TypeError, AttributeError) as error:
        raise InvalidInputError(
            path, f"lvseg model metadata has an unusable quality model ({error})"
        ) from None
    return plan, {
        "lv_class": lv_class,
        "model_name": metadata.get("model_name", "unknown"),
        "precision": metadata.get("precision", "fp32"),
        "split": split,
        "train_data": metadata.get("train_data"),
        "parameters": parameters,
        "tta": metadata.get("tta") == "1",
        "quality": quality,
    }


def open_model(
    spec: str | Path | bytes, *, threads: int | None = None, path: Path | None = None
) -> ExportedModel:
    """Open an exported model (a path as ``predict`` takes it, or the bytes of one) on the CPU.

    ``threads`` bounds ONNX Runtime's intra-op threads (None: its default, all cores).
    """
    ort = _import_onnxruntime()
    if not isinstance(spec, bytes):
        path = resolve_exported(spec)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # no warnings about unused initialisers on stderr
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    source = spec if isinstance(spec, bytes) else str(path)
    try:
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - ORT raises its own types for foreign files
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise InvalidInputError(path, f"not a readable ONNX model ({reason})") from None
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    plan, facts = read_metadata(metadata, path)
    names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    if INPUT_NAME not in names[0] or OUTPUT_NAME not in names[1]:
        raise InvalidInputError(
            path, f"expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, found {names}"
        )
    return ExportedModel(path=path, session=session, plan=plan, metadata=metadata, **facts)
