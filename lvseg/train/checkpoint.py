"""Training checkpoints: everything a run needs to continue exactly where it stopped.

One file per checkpoint, ``torch.save`` of plain data (tensors, numbers, strings, lists), so it
loads with ``weights_only=True``: opening a checkpoint never runs code. Files are written to a
temporary name and renamed, so ``last.pt`` is always a whole checkpoint, even after SIGKILL.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lvseg.data import atomic
from lvseg.model.checkpoint import FORMAT, VERSION, all_finite, load_checkpoint

__all__ = ["load_checkpoint", "restore_rng_state", "rng_state", "save"]


def rng_state() -> dict[str, Any]:
    """The random states a resumed run must restore (as weights-only-loadable data)."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": _python_state_to_data(random.getstate()),
        "numpy": _numpy_state_to_data(np.random.get_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_python_state_from_data(state["python"]))
    np.random.set_state(_numpy_state_from_data(state["numpy"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_data(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_state_from_data(data: list) -> tuple:
    return (data[0], tuple(data[1]), data[2])


def _numpy_state_to_data(state: tuple) -> list:
    name, keys, position, has_gauss, cached = state
    return [name, torch.from_numpy(np.asarray(keys, np.int64)), position, has_gauss, cached]


def _numpy_state_from_data(data: list) -> tuple:
    name, keys, position, has_gauss, cached = data
    return (name, keys.numpy().astype(np.uint32), position, has_gauss, cached)


def save(path: str | Path, payload: dict[str, Any]) -> int:
    """Write a checkpoint atomically; returns its size in bytes. A non-finite model is refused."""
    if not all_finite(payload["state_dict"]):
        raise ValueError("refusing to save a checkpoint with non-finite weights")
    payload = {"format": FORMAT, "version": VERSION, **payload}
    atomic.write_with(path, lambda temporary: torch.save(payload, temporary))
    return Path(path).stat().st_size
