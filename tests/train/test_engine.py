"""The training engine on a tiny phantom: run store, checkpoints, skipping, stopping, config."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lvseg.config import TrainConfig
from lvseg.errors import InvalidInputError, TrainingError
from lvseg.runs.checkpoint import load_checkpoint, load_model, resolve_model_path
from lvseg.runs.store import RunStore
from lvseg.train import engine, loop, losses, setup


def tiny_config(data: Path, **optim) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "seed": 0,
            "data": {"path": str(data)},
            "model": {"options": {"width": 8}},
            "optim": {"epochs": 2, "batch_size": 8, **optim},
            "runtime": {"device": "cpu"},
        }
    )


def test_a_run_writes_its_store_checkpoints_and_config(tiny_phantom, tmp_path):
    config = tiny_config(tiny_phantom)
    result = engine.train(config, tmp_path / "run")
    assert result.status == "finished" and result.epochs == 2
    run = tmp_path / "run"
    with RunStore.open(run, readonly=True) as store:
        assert store.status == "finished"
        assert store.config == config.to_dict()
        epochs = store.epochs()
        steps = store.steps()
        kinds = {c["kind"] for c in store.checkpoints()}
        meta = store.meta
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert [s["step"] for s in steps] == list(range(1, result.steps + 1))
    assert all(0.0 <= e["val_dice"] <= 1.0 for e in epochs)
    assert kinds <= {"last", "best"} and "last" in kinds
    # patient-level split: no patient on both sides
    assert not set(meta["train_patients"]) & set(meta["val_patients"])
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last.epoch == 2 and last.step == result.steps
    loaded = load_model(run)
    assert loaded.name == "lvnet" and loaded.plan == last.plan


def test_nonfinite_steps_are_skipped_and_recorded(tiny_phantom, tmp_path, monkeypatch):
    real = losses.segmentation_loss
    calls = {"n": 0}

    def sometimes_nan(*args, **kwargs):
        parts = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] in (2, 3):  # training steps 2 and 3 (validation runs after the epoch)
            parts.total = parts.total * float("nan")
        return parts

    monkeypatch.setattr(loop, "segmentation_loss", sometimes_nan)
    result = engine.train(tiny_config(tiny_phantom, epochs=1), tmp_path / "run")
    with RunStore.open(tmp_path / "run", readonly=True) as store:
        skipped = [s["step"] for s in store.steps() if s["skipped"]]
        events = store.events("nonfinite_step")
    assert skipped == [2, 3] and [e["step"] for e in events] == [2, 3]
    assert math.isnan(events[0]["data"]["loss"])
    assert result.status == "finished"
    weights = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt").state_dict
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_too_many_nonfinite_steps_stop_the_run_with_one_line(tiny_phantom, tmp_path, monkeypatch):
    real = losses.segmentation_loss

    def always_nan(*args, **kwargs):
        parts = real(*args, **kwargs)
        parts.total = parts.total * float("nan")
        return parts

    monkeypatch.setattr(loop, "segmentation_loss", always_nan)
    config = tiny_config(tiny_phantom, max_nonfinite_steps=3)
    with pytest.raises(TrainingError, match="3 non-finite steps in a row"):
        engine.train(config, tmp_path / "run")
    with RunStore.open(tmp_path / "run", readonly=True) as store:
        assert store.status == "failed"
        assert store.checkpoints() == []


def test_the_cli_reports_a_diverged_run_in_one_line(tiny_phantom, tmp_path, monkeypatch):
    from builders import invoke

    real = losses.segmentation_loss

    def always_nan(*args, **kwargs):
        parts = real(*args, **kwargs)
        parts.total = parts.total * float("nan")
        return parts

    monkeypatch.setattr(loop, "segmentation_loss", always_nan)
    config = tmp_path / "diverges.toml"
    config.write_text("[optim]\nmax_nonfinite_steps = 2\n", encoding="utf-8")
    result = invoke(
        "train", "--data", tiny_phantom, "--config", config, "--epochs", 1, "--device", "cpu",
        "--no-monitor", "--out", tmp_path / "run",
    )  # fmt: skip
    assert not issubclass(TrainingError, InvalidInputError)  # a failed run, not bad input
    assert result.exit_code == 2
    assert "2 non-finite steps in a row" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_early_stopping_stops_and_says_why(tiny_phantom, tmp_path):
    config = tiny_config(tiny_phantom, epochs=6, early_stopping=1, lr=1e-9, min_delta=0.5)
    result = engine.train(config, tmp_path / "run")
    assert result.status == "stopped" and result.epochs == 2
    with RunStore.open(tmp_path / "run", readonly=True) as store:
        (event,) = store.events("early_stop")
    assert "no better validation Dice for 1 epochs" in event["message"]


def test_existing_run_is_refused_without_resume(tiny_phantom, tmp_path):
    config = tiny_config(tiny_phantom, epochs=1)
    engine.train(config, tmp_path / "run")
    with pytest.raises(InvalidInputError, match="already holds a run"):
        engine.train(config, tmp_path / "run")


def test_steps_per_epoch_matches_the_batches_drawn():
    import numpy as np

    from lvseg.train.distributed import Context

    class Cache:
        jitter_px = 2

        def random_offsets(self, count, rng):
            return rng.integers(-2, 3, size=(count, 2))

    for n, batch in [(17, 8), (16, 8), (9, 8), (33, 16)]:
        data = type("D", (), {"train_indices": np.arange(n), "train": Cache()})()
        config = TrainConfig.from_dict(
            {"seed": 0, "optim": {"batch_size": batch}, "data": {"far_crops": 0.0}}
        )
        for world in (1, 2):
            context = Context(rank=0, world_size=world)
            batches = loop.epoch_batches(data, config, 1, context)
            assert all(len(b[0]) > 1 for b in batches)
            assert loop.steps_per_epoch(data, batch, context) == len(batches)


def test_loss_parts_and_dice():
    logits = torch.zeros(2, 2, 4, 4)
    logits[:, 1, :2] = 10.0  # predicts LV in the top half
    target = torch.zeros(2, 4, 4)
    target[0, :2] = 1
    parts = losses.segmentation_loss(logits, torch.tensor([5.0, -5.0]), target)
    assert 0 < float(parts.cross_entropy) < 6
    prediction = logits.argmax(1).bool()
    assert losses.dice_per_image(prediction, target.bool()).tolist() == [1.0, 0.0]


def test_deep_supervision_and_boundary_weights_train_and_are_logged(tiny_phantom, tmp_path):
    config = tiny_config(tiny_phantom, epochs=1).merged(
        {"model": {"options": {"width": 8, "deep_supervision": 2}}, "loss": {"boundary": 2.0}}
    )
    result = engine.train(config, tmp_path / "run")
    assert result.status == "finished"
    with RunStore.open(tmp_path / "run", readonly=True) as store:
        steps = store.steps()
    assert all(s["loss_auxiliary"] > 0 for s in steps)
    model = load_model(tmp_path / "run").model
    assert len(model.auxiliary_heads) == 2
    assert model.eval()(torch.zeros(1, 1, 64, 64)).auxiliary == ()


def test_a_negative_boundary_weight_is_refused():
    with pytest.raises(InvalidInputError, match="loss.boundary"):
        TrainConfig.from_dict({"loss": {"boundary": -1.0}})


def test_a_run_initialised_from_another_starts_from_its_weights_exactly(
    tiny_phantom, tiny_run, tmp_path, monkeypatch
):
    started: dict[str, torch.Tensor] = {}
    real = setup.make_optimizer

    def capture(model, *args, **kwargs):  # the optimiser is made right after the weights load
        started.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        return real(model, *args, **kwargs)

    monkeypatch.setattr(setup, "make_optimizer", capture)
    config = tiny_config(tiny_phantom, epochs=1).merged({"model": {"init": str(tiny_run)}})
    engine.train(config, tmp_path / "tuned")
    # the run's selected checkpoint, else its best, else its last: as every MODEL argument
    source = load_checkpoint(resolve_model_path(tiny_run)).state_dict
    assert started.keys() == source.keys()
    assert all(torch.equal(started[k], source[k]) for k in source)
    # a run from scratch starts elsewhere, and the tuned run records where it started
    fresh: dict[str, torch.Tensor] = {}
    started.clear()
    engine.train(tiny_config(tiny_phantom, epochs=1), tmp_path / "fresh")
    fresh.update(started)
    assert not all(torch.equal(fresh[k], source[k]) for k in source)
    with RunStore.open(tmp_path / "tuned", readonly=True) as store:
        assert store.config["model"]["init"] == str(tiny_run)
        assert [e["kind"] for e in store.events()].count("init") == 1


def test_init_refuses_another_architecture_in_one_line(tiny_phantom, tiny_run, tmp_path):
    from builders import invoke

    wider = invoke(
        "train", "--data", tiny_phantom, "--init", tiny_run, "--epochs", 1,
        "--out", tmp_path / "wider", "--no-monitor",
    )  # fmt: skip
    assert wider.exit_code == 2
    assert "another lvnet architecture" in wider.output and "--init needs the same" in wider.output
    assert "Traceback" not in wider.output and len(wider.output.strip().splitlines()) == 1
    assert not (tmp_path / "wider").exists()
    other = invoke(
        "train", "--data", tiny_phantom, "--model", "unet", "--init", tiny_run, "--epochs", 1,
        "--out", tmp_path / "unet",
    )  # fmt: skip
    assert other.exit_code == 2 and "lvnet weights: --init needs unet weights" in other.output
    missing = invoke("train", "--data", tiny_phantom, "--init", tmp_path / "nothing.pt")
    assert missing.exit_code == 2 and "nothing.pt" in missing.output
