"""Resolving a MODEL argument: run directory (selected, best, last), checkpoint file, errors."""

from __future__ import annotations

import json

import pytest
import torch

from lvseg.errors import InvalidInputError
from lvseg.model.checkpoint import load_model, resolve_model_path
from lvseg.model.registry import build_model, config_of
from lvseg.train import checkpoint


def write(path, width, fill=None):
    model = build_model("lvnet", width=width)
    state = model.state_dict()
    if fill is not None:
        state = {k: v.clone().fill_(fill) if v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "model": {"name": "lvnet", "config": config_of(model)},
        "state_dict": state,
        "plan": {"crop_size": 64},
        "metrics": {"val_dice": 0.5},
    }
    if fill is not None and fill != fill:  # NaN: bypass the refusal to test the loader
        torch.save({"format": "lvseg-checkpoint", "version": 1, **payload}, path)
    else:
        checkpoint.save(path, payload)


def test_run_directory_prefers_selected_then_best_then_last(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    write(run / "checkpoints" / "last.pt", 4)
    assert resolve_model_path(run) == run / "checkpoints" / "last.pt"
    write(run / "checkpoints" / "best.pt", 4)
    assert resolve_model_path(run) == run / "checkpoints" / "best.pt"
    write(run / "checkpoints" / "epoch7.pt", 8)
    (run / "selected.json").write_text(json.dumps({"checkpoint": "checkpoints/epoch7.pt"}))
    loaded = load_model(run)
    assert loaded.source == run / "checkpoints" / "epoch7.pt"
    assert loaded.model.config.width == 8 and not loaded.model.training
    assert loaded.plan == {"crop_size": 64}


def test_refusals_are_one_line(tmp_path):
    with pytest.raises(InvalidInputError, match="no such model"):
        resolve_model_path(tmp_path / "absent.pt")
    with pytest.raises(InvalidInputError, match="no selected.json and no checkpoint"):
        resolve_model_path(tmp_path)
    with pytest.raises(InvalidInputError, match="ONNX models are not supported yet"):
        resolve_model_path(tmp_path / "model.onnx")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 10)
    with pytest.raises(InvalidInputError, match="not a readable lvseg checkpoint"):
        load_model(garbage)
    nan = tmp_path / "nan.pt"
    write(nan, 4, fill=float("nan"))
    with pytest.raises(InvalidInputError, match="non-finite weights"):
        load_model(nan)


def test_a_nonfinite_model_is_never_saved(tmp_path):
    model = build_model("lvnet", width=4)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["head.weight"][0] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        checkpoint.save(tmp_path / "x.pt", {"state_dict": state})
    assert not (tmp_path / "x.pt").exists()
