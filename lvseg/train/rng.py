"""The random states a resumed run restores, as data a weights-only checkpoint can hold
(:class:`lvseg.runs.checkpoint.TrainingState`): torch's, Python's, NumPy's and CUDA's."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["restore_rng_state", "rng_state"]


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
