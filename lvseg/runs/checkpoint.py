"""Checkpoints: the typed payload written by the trainer and read by every command that takes a
MODEL, in one place.

A checkpoint file is ``torch.save`` of plain data (tensors, numbers, strings, lists), loaded with
``weights_only=True``: opening one never runs code. It is written to a temporary name and
renamed, so ``last.pt`` is always whole, even after SIGKILL. On disk the payload is a dict
(``format``, ``version``, ``model``, ``state_dict``, ``plan``, ``train_config``, ``split``,
``epoch``, ``step``, ``metrics``, the training state for ``--resume``, ``lvseg_version``); in
memory it is a :class:`Checkpoint`, whose plan, training config and split are parsed once, here.

A MODEL argument (select, evaluate, explain, export) is resolved by :func:`resolve_model_path`:

- a run directory: the checkpoint named by its ``selected.json``, else ``checkpoints/best.pt``,
  else ``checkpoints/last.pt``;
- a checkpoint file (``.pt``) written by the trainer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lvseg import atomic, layout
from lvseg.config import TrainConfig
from lvseg.data.preprocess import PreprocessPlan
from lvseg.data.splits import Split
from lvseg.errors import InvalidInputError

FORMAT = "lvseg-checkpoint"
VERSION = 1


def all_finite(state_dict: dict[str, torch.Tensor]) -> bool:
    """No NaN or infinity in any floating-point tensor of a state dict."""
    return all(
        bool(torch.isfinite(t).all()) for t in state_dict.values() if torch.is_floating_point(t)
    )


@dataclass
class TrainingState:
    """What only a resumed run reads: optimiser, scheduler, gradient scaler, RNG and loop state."""

    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any]
    rng: dict[str, Any]
    trainer: dict[str, Any]


@dataclass
class Checkpoint:
    """One saved model: the network, how its inputs are prepared, and how it was trained."""

    model_name: str
    model_config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    plan: PreprocessPlan
    train_config: TrainConfig | None = None
    split: Split | None = None
    """The patients it trained and validated on (and kept out); None in the oldest files."""
    epoch: int | None = None
    step: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    lvseg_version: str | None = None
    training: TrainingState | None = None

    @property
    def train_data(self) -> str | None:
        """The path of the data the model trained on, where the config says."""
        return None if self.train_config is None else self.train_config.data.path

    def to_payload(self) -> dict[str, Any]:
        """The plain data written to disk."""
        payload: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "model": {"name": self.model_name, "config": self.model_config},
            "state_dict": self.state_dict,
            "plan": self.plan.to_dict(),
            "train_config": None if self.train_config is None else self.train_config.to_dict(),
            "split": None if self.split is None else self.split.to_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "metrics": dict(self.metrics),
            "lvseg_version": self.lvseg_version,
        }
        if self.training is not None:
            payload.update(self.training.__dict__)
        return payload

    @classmethod
    def from_payload(cls, payload: Any, path: str | Path | None = None) -> Checkpoint:
        """Parse what :meth:`to_payload` wrote; anything else is one error naming ``path``."""
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise InvalidInputError(path, "not an lvseg checkpoint")
        if payload.get("version", 0) > VERSION:
            raise InvalidInputError(path, f"checkpoint version {payload['version']} is too new")
        try:
            model, state_dict = payload["model"], payload["state_dict"]
            plan = PreprocessPlan.from_dict(payload["plan"])
            name, config = str(model["name"]), dict(model["config"])
        except (KeyError, TypeError, ValueError) as error:
            reason = f"{type(error).__name__}: {error}"
            raise InvalidInputError(path, f"incomplete lvseg checkpoint ({reason})") from None
        if not all_finite(state_dict):
            raise InvalidInputError(path, "checkpoint holds non-finite weights")
        source = None if path is None else str(path)
        train_config = payload.get("train_config")
        split = payload.get("split")
        training = None
        if all(key in payload for key in TrainingState.__dataclass_fields__):
            training = TrainingState(
                **{key: payload[key] for key in TrainingState.__dataclass_fields__}
            )
        return cls(
            model_name=name,
            model_config=config,
            state_dict=state_dict,
            plan=plan,
            train_config=None if not train_config else TrainConfig.from_dict(train_config, source),
            split=None if not isinstance(split, dict) else Split.from_dict(split, source),
            epoch=payload.get("epoch"),
            step=payload.get("step"),
            metrics=dict(payload.get("metrics") or {}),
            lvseg_version=payload.get("lvseg_version"),
            training=training,
        )

    def save(self, path: str | Path) -> int:
        """Write atomically; returns the size in bytes. Non-finite weights are refused.

        A failed write (a full disk) leaves the previous file at ``path`` as it was and no
        partial file beside it, and raises the ``OSError`` naming ``path`` (ENOSPC and EDQUOT
        are one line in the CLI).
        """
        if not all_finite(self.state_dict):
            raise ValueError("refusing to save a checkpoint with non-finite weights")
        payload = self.to_payload()
        try:
            atomic.write_with(path, lambda temporary: _write_payload(payload, temporary))
        except OSError as error:
            if error.filename is None and error.errno is not None:
                raise OSError(error.errno, error.strerror, str(path)) from error
            raise
        return Path(path).stat().st_size


def _write_payload(payload: dict[str, Any], temporary: Path) -> None:
    """``torch.save`` into a Python file: a failed write raises the OS's error (ENOSPC), where
    torch's own file writer would raise a RuntimeError that says nothing of the cause."""
    with open(temporary, "wb") as handle:
        torch.save(payload, handle)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a trainer checkpoint; any problem is one InvalidInputError line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(path, "no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidInputError(path, f"not a readable lvseg checkpoint ({reason})") from None
    return Checkpoint.from_payload(payload, path)


def resolve_model_path(spec: str | Path) -> Path:
    """The checkpoint a MODEL argument names (see the module docstring)."""
    path = Path(spec)
    if path.is_dir():
        selected = path / layout.SELECTED
        if selected.is_file():
            try:
                chosen = json.loads(selected.read_text(encoding="utf-8"))["checkpoint"]
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise InvalidInputError(selected, f"unreadable selection ({error})") from None
            chosen = Path(chosen)
            return chosen if chosen.is_absolute() else path / chosen
        for name in (layout.BEST_CHECKPOINT, layout.LAST_CHECKPOINT):
            if layout.checkpoint_path(path, name).is_file():
                return layout.checkpoint_path(path, name)
        if layout.exported_model(path) is not None:
            raise InvalidInputError(
                path, "an exported model: this command takes a training run or a .pt checkpoint"
            )
        raise InvalidInputError(
            path, f"no {layout.SELECTED} and no checkpoint in this run directory"
        )
    if path.suffix.lower() in (".onnx", ".ort"):
        raise InvalidInputError(
            path, "an exported model: this command takes a training run or a .pt checkpoint"
        )
    if not path.exists():
        raise InvalidInputError(path, "no such model (a run directory or a .pt checkpoint)")
    return path


@dataclass
class LoadedModel:
    """A checkpoint's network, built and in eval mode, with the checkpoint it came from; its
    ``plan`` says how inputs must be prepared (as the model was trained)."""

    model: nn.Module
    checkpoint: Checkpoint
    source: Path
    name: str = field(init=False)
    plan: PreprocessPlan = field(init=False)
    parameters: int = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.checkpoint.model_name
        self.plan = self.checkpoint.plan
        self.parameters = sum(p.numel() for p in self.model.parameters())


def load_model(spec: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """The model a MODEL argument names, in eval mode on ``device``."""
    from lvseg.model.registry import build_from_config

    path = resolve_model_path(spec)
    checkpoint = load_checkpoint(path)
    model = build_from_config(checkpoint.model_name, checkpoint.model_config)
    try:
        model.load_state_dict(checkpoint.state_dict)
    except RuntimeError as error:
        reason = str(error).splitlines()[0]
        raise InvalidInputError(path, f"weights do not fit the model ({reason})") from None
    model.to(device).eval()
    return LoadedModel(model=model, checkpoint=checkpoint, source=path)


def load_initial_weights(model: nn.Module, spec: str | Path, name: str) -> Path:
    """Load into ``model`` (a fresh ``name``) the weights of the run or checkpoint ``spec``
    names (``lvseg train --init``); the checkpoint read. A checkpoint of another model, or of the
    same model with other options (another width, another number of stages), is refused in one
    line that names the first difference."""
    path = resolve_model_path(spec)
    checkpoint = load_checkpoint(path)
    if checkpoint.model_name != name:
        raise InvalidInputError(
            path, f"{checkpoint.model_name} weights: --init needs {name} weights, as this run's"
        )
    ours, theirs = model.state_dict(), checkpoint.state_dict
    for key in ours:
        if key not in theirs:
            raise InvalidInputError(
                path, f"another {name} architecture: no {key} there (--init needs the same options)"
            )
        if tuple(ours[key].shape) != tuple(theirs[key].shape):
            raise InvalidInputError(
                path,
                f"another {name} architecture: {key} is {tuple(theirs[key].shape)} there and "
                f"{tuple(ours[key].shape)} here (--init needs the same options)",
            )
    extra = [key for key in theirs if key not in ours]
    if extra:
        raise InvalidInputError(
            path, f"another {name} architecture: it has {extra[0]}, this run's has not"
        )
    model.load_state_dict(theirs)
    return path
