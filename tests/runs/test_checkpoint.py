"""The typed checkpoint (round trip, refusals) and resolving a MODEL argument: run directory
(selected, best, last), checkpoint file, errors."""

from __future__ import annotations

import json

import pytest
import torch

from lvseg.config import TrainConfig
from lvseg.data.preprocess import PreprocessPlan
from lvseg.data.splits import Split
from lvseg.errors import InvalidInputError
from lvseg.model.registry import build_model, config_of
from lvseg.runs.checkpoint import Checkpoint, load_checkpoint, load_model, resolve_model_path

PLAN = PreprocessPlan(target_spacing_mm=(1.25, 1.25), crop_size=64, jitter_px=4)


def make(width: int, fill: float | None = None, **fields) -> Checkpoint:
    model = build_model("lvnet", width=width)
    state = model.state_dict()
    if fill is not None:
        state = {k: v.clone().fill_(fill) if v.is_floating_point() else v for k, v in state.items()}
    return Checkpoint("lvnet", config_of(model), state, PLAN, metrics={"val_dice": 0.5}, **fields)


def write(path, width, fill=None):
    saved = make(width, fill)
    if fill is not None and fill != fill:  # NaN: bypass the refusal to test the loader
        torch.save(saved.to_payload(), path)
    else:
        saved.save(path)


def test_a_checkpoint_reads_back_typed_as_it_was_written(tmp_path):
    config = TrainConfig().merged({"data": {"path": "somewhere", "folds": 5, "fold": 2}})
    split = Split(train=("A", "B"), val=("C",), test=("D",))
    written = make(4, train_config=config, split=split, epoch=3, step=12)
    written.save(tmp_path / "c.pt")
    read = load_checkpoint(tmp_path / "c.pt")
    assert read.plan == PLAN and read.split == split and read.train_config == config
    assert (read.model_name, read.epoch, read.step, read.metrics) == (
        "lvnet",
        3,
        12,
        written.metrics,
    )
    assert read.train_data == "somewhere" and read.training is None
    assert read.state_dict.keys() == written.state_dict.keys()


def test_a_broken_payload_is_one_line_naming_the_file(tmp_path):
    payload = make(4).to_payload()
    del payload["plan"]
    torch.save(payload, tmp_path / "noplan.pt")
    with pytest.raises(InvalidInputError, match="noplan.pt: incomplete lvseg checkpoint"):
        load_checkpoint(tmp_path / "noplan.pt")
    torch.save({"format": "lvseg-checkpoint", "version": 99}, tmp_path / "new.pt")
    with pytest.raises(InvalidInputError, match="version 99 is too new"):
        load_checkpoint(tmp_path / "new.pt")


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
    assert loaded.plan == PLAN


def test_refusals_are_one_line(tmp_path):
    with pytest.raises(InvalidInputError, match="no such model"):
        resolve_model_path(tmp_path / "absent.pt")
    with pytest.raises(InvalidInputError, match="no selected.json and no checkpoint"):
        resolve_model_path(tmp_path)
    with pytest.raises(InvalidInputError, match="an exported model: this command takes a"):
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
        Checkpoint("lvnet", config_of(model), state, PLAN).save(tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
