"""An exported model run with ONNX Runtime: the inference backend of ``lvseg predict``.

An lvseg ONNX (or ORT) file is self-contained: besides the graph it carries, in the ONNX
``metadata_props``, everything inference needs, so a lean install (``pip install lvseg[infer]``,
no PyTorch) can segment with nothing else:

- ``lvseg_format`` = ``lvseg-onnx`` and ``lvseg_format_version`` (refused when newer than this
  lvseg reads), ``lvseg_version``;
- ``model_name`` (``lvnet``...), ``precision`` (``fp32`` or ``int8``), ``lv_class`` (the channel
  of the LV blood pool in the output);
- ``plan``: the preprocessing plan as JSON (:class:`lvseg.data.preprocess.PreprocessPlan`:
  spacing, crop size, intensity normalisation).

The graph takes ``image`` (B, 1, H, W) float32, preprocessed as the plan says, with a dynamic
batch and spatial size, and returns ``logits`` (B, classes, H, W). This module imports no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lvseg.data.errors import InvalidInputError

FORMAT = "lvseg-onnx"
FORMAT_VERSION = 1
LV_CLASS = 1
"""The output channel of the LV blood pool in every lvseg model (the default where a file's
metadata does not say)."""
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
SUFFIXES = (".onnx", ".ort")
FOLDER_ORDER = ("model.onnx", "model.ort", "model.int8.onnx", "model.int8.ort")
"""The file picked from an ``lvseg export`` folder: full precision first."""
INSTALL_HINT = "pip install 'lvseg[infer]'"


def resolve_exported(spec: str | Path) -> Path:
    """The model file a MODEL argument of ``predict`` names: an ``.onnx``/``.ort`` file, or a
    folder written by ``lvseg export``. A PyTorch run or checkpoint is refused with the command
    that exports it."""
    path = Path(spec)
    if path.is_dir():
        for name in FOLDER_ORDER:
            if (path / name).is_file():
                return path / name
        if (path / "checkpoints").is_dir() or (path / "selected.json").is_file():
            raise InvalidInputError(
                path,
                f"a training run, not an exported model: run 'lvseg export {path} --out DIR' "
                "first (predict runs the exported model on ONNX Runtime)",
            )
        raise InvalidInputError(path, "no exported model here (model.onnx or model.ort)")
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


def check_metadata(metadata: dict[str, str], path: Path | None) -> dict[str, Any]:
    """The plan and facts of an lvseg model's metadata; wrong kind or version is refused."""
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
        plan = json.loads(metadata["plan"])
        crop_size = int(plan["crop_size"])
        lv_class = int(metadata.get("lv_class", LV_CLASS))
    except (KeyError, ValueError, TypeError):
        raise InvalidInputError(
            path, "lvseg model metadata has no valid preprocessing plan"
        ) from None
    if crop_size < 1:
        raise InvalidInputError(path, f"lvseg model metadata has a bad crop size {crop_size}")
    return {
        "plan": plan,
        "lv_class": lv_class,
        "model_name": metadata.get("model_name", "unknown"),
        "precision": metadata.get("precision", "fp32"),
        "lvseg_version": metadata.get("lvseg_version"),
        "format_version": version,
    }


@dataclass
class ExportedModel:
    """An open lvseg ONNX/ORT model: its plan and a session to run it."""

    path: Path | None
    session: Any
    plan: dict[str, Any]
    model_name: str
    precision: str
    lv_class: int
    metadata: dict[str, str]

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Class scores (B, classes, H, W) of preprocessed images (B, 1, H, W)."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]

    def lv_probability(self, images: np.ndarray) -> np.ndarray:
        """Softmax probability (B, H, W) of the LV class."""
        return lv_softmax(self.logits(images), self.lv_class)


def lv_softmax(logits: np.ndarray, lv_class: int = LV_CLASS) -> np.ndarray:
    """The softmax probability (B, H, W) of channel ``lv_class`` of logits (B, classes, H, W)."""
    logits = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return (weights[:, lv_class] / weights.sum(axis=1)).astype(np.float32)


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
    facts = check_metadata(metadata, path)
    names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    if INPUT_NAME not in names[0] or OUTPUT_NAME not in names[1]:
        raise InvalidInputError(
            path, f"expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, found {names}"
        )
    return ExportedModel(
        path=path,
        session=session,
        plan=facts["plan"],
        model_name=facts["model_name"],
        precision=facts["precision"],
        lv_class=facts["lv_class"],
        metadata=metadata,
    )
