"""Reading models back: a checkpoint file, or a run directory's selected (else best) model.

Every command that takes a MODEL (select, evaluate, explain, export, predict) resolves it here:

- a run directory: the checkpoint named by its ``selected.json``, else ``checkpoints/best.pt``,
  else ``checkpoints/last.pt``;
- a checkpoint file (``.pt``) written by the trainer.

Checkpoints hold plain data only and are loaded with ``weights_only=True``: opening one never
runs code. Writing them is the trainer's business (:mod:`lvseg.train.checkpoint`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lvseg.errors import InvalidInputError

FORMAT = "lvseg-checkpoint"
VERSION = 1
SELECTED = "selected.json"


def all_finite(state_dict: dict[str, torch.Tensor]) -> bool:
    """No NaN or infinity in any floating-point tensor of a state dict."""
    return all(
        bool(torch.isfinite(t).all()) for t in state_dict.values() if torch.is_floating_point(t)
    )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a trainer checkpoint; any problem is one InvalidInputError line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(path, "no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidInputError(path, f"not a readable lvseg checkpoint ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InvalidInputError(path, "not an lvseg checkpoint")
    if payload.get("version", 0) > VERSION:
        raise InvalidInputError(path, f"checkpoint version {payload['version']} is too new")
    if not all_finite(payload["state_dict"]):
        raise InvalidInputError(path, "checkpoint holds non-finite weights")
    return payload


def resolve_model_path(spec: str | Path) -> Path:
    """The checkpoint a MODEL argument names (see the module docstring)."""
    path = Path(spec)
    if path.suffix == ".onnx":
        raise InvalidInputError(path, "ONNX models are not supported yet (use a run or .pt)")
    if path.is_dir():
        selected = path / SELECTED
        if selected.is_file():
            try:
                chosen = json.loads(selected.read_text(encoding="utf-8"))["checkpoint"]
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise InvalidInputError(selected, f"unreadable selection ({error})") from None
            chosen = Path(chosen)
            return chosen if chosen.is_absolute() else path / chosen
        for name in ("best.pt", "last.pt"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
        raise InvalidInputError(path, "no selected.json and no checkpoint in this run directory")
    if not path.exists():
        raise InvalidInputError(path, "no such model (a run directory or a .pt checkpoint)")
    return path


@dataclass
class LoadedModel:
    model: nn.Module
    name: str
    plan: dict[str, Any]
    """The preprocessing plan the model was trained with (:class:`~lvseg.data.preprocess.
    PreprocessPlan` as a dict): inputs must be prepared the same way."""
    metrics: dict[str, Any]
    source: Path
    checkpoint: dict[str, Any]


def load_model(spec: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """The model a MODEL argument names, in eval mode on ``device``."""
    from lvseg.model.registry import build_from_config

    path = resolve_model_path(spec)
    payload = load_checkpoint(path)
    model = build_from_config(payload["model"]["name"], payload["model"]["config"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        reason = str(error).splitlines()[0]
        raise InvalidInputError(path, f"weights do not fit the model ({reason})") from None
    model.to(device).eval()
    return LoadedModel(
        model=model,
        name=payload["model"]["name"],
        plan=payload["plan"],
        metrics=payload.get("metrics", {}),
        source=path,
        checkpoint=payload,
    )
