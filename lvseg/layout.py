"""Every file name of a run folder and an export folder, written once.

A run folder (``lvseg train --out RUN``)::

    RUN/config.json              the exact config (RunStore)
    RUN/run.db                   the SQLite store (RunStore)
    RUN/checkpoints/last.pt      every epoch (the engine)
    RUN/checkpoints/best.pt      best validation Dice (the engine)
    RUN/selected.json            the deployment model (lvseg select)
    RUN/evaluation/metrics.json  lvseg evaluate's default output for a run

An export folder (``lvseg export RUN --out EXPORT``)::

    EXPORT/model.onnx, model.int8.onnx, model.ort, model.int8.ort, model.torchscript.pt
    EXPORT/model-card.md, model-card.json

Standard library only: the dashboard and the lean inference install read these names too.
"""

from __future__ import annotations

from pathlib import Path

RUN_CONFIG = "config.json"
RUN_DATABASE = "run.db"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
SELECTED = "selected.json"
EVALUATION = "evaluation"
EVALUATION_METRICS = "metrics.json"

ONNX = "model.onnx"
ONNX_INT8 = "model.int8.onnx"
ORT = "model.ort"
ORT_INT8 = "model.int8.ort"
TORCHSCRIPT = "model.torchscript.pt"
CARD_MARKDOWN = "model-card.md"
CARD_JSON = "model-card.json"
OUTPUT_MARKER = ".lvseg-output"
"""In every folder a command writes (phantom, evaluation, explanation, export, prediction):
``--overwrite`` replaces only folders that hold it."""
EXPORTED_ORDER = (ONNX, ORT, ONNX_INT8, ORT_INT8)
"""The model file a MODEL argument naming an export folder means: full precision first."""


def checkpoint_path(run_dir: str | Path, name: str = LAST_CHECKPOINT) -> Path:
    """``RUN/checkpoints/NAME``."""
    return Path(run_dir) / CHECKPOINTS / name


def checkpoint_relative(name: str) -> str:
    """A checkpoint's path relative to its run folder, as the run store records it."""
    return f"{CHECKPOINTS}/{name}"


def looks_like_run(path: str | Path) -> bool:
    """Whether ``path`` is (or was made as) a training run folder."""
    path = Path(path)
    return any((path / name).exists() for name in (RUN_DATABASE, CHECKPOINTS, SELECTED))


def run_of_checkpoint(checkpoint: str | Path) -> Path:
    """The run folder a checkpoint file belongs to (its folder's parent for ``checkpoints/``)."""
    folder = Path(checkpoint).parent
    return folder.parent if folder.name == CHECKPOINTS else folder


def exported_model(folder: str | Path) -> Path | None:
    """The model file of an export folder (:data:`EXPORTED_ORDER`), None without one."""
    for name in EXPORTED_ORDER:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None
