"""Run configs: files, overrides, and one-line refusals."""

from __future__ import annotations

import json

import pytest

from lvseg.config import TrainConfig
from lvseg.errors import InvalidInputError


def test_toml_and_json_give_the_same_config(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text(
        'seed = 3\n[optim]\nepochs = 5\nlr = 0.001\n[model]\nname = "unet"\n'
        "options = { width = 8 }\n[augment]\np_gamma = 0.0\n",
        encoding="utf-8",
    )
    config = TrainConfig.load(toml)
    assert (config.seed, config.optim.epochs, config.optim.lr) == (3, 5, 0.001)
    assert config.model.name == "unet" and config.model.options == {"width": 8}
    assert config.augment == {"p_gamma": 0.0}
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(config.to_dict()), encoding="utf-8")
    assert TrainConfig.load(saved) == config


def test_a_saved_config_with_the_retired_runtime_workers_key_still_loads(tmp_path):
    # run folders written before runtime.workers was removed hold it in config.json
    old = TrainConfig().to_dict()
    old["runtime"]["workers"] = 2
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(old), encoding="utf-8")
    config = TrainConfig.load(saved)
    assert config == TrainConfig()
    assert "workers" not in config.to_dict()["runtime"]


def test_overrides_merge_into_sections_and_replace_model_options():
    base = TrainConfig.from_dict({"model": {"options": {"width": 8, "depth": 3}}})
    merged = base.merged({"optim": {"epochs": 2}, "model": {"options": {"width": 4}}})
    assert merged.optim.epochs == 2 and merged.optim.lr == base.optim.lr
    assert merged.model.options == {"width": 4, "depth": 3}
    assert base.optim.epochs == 50  # the original is untouched


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"optimiser": {}}, "unknown key 'optimiser'"),
        ({"optim": {"batch_size": 0}}, "optim.batch_size must be >= 1"),
        ({"optim": {"schedule": "step"}}, "optim.schedule must be one of cosine"),
        ({"data": {"folds": 1}}, "data.folds must be 0 (single split) or >= 2"),
        ({"data": {"folds": 5, "fold": 5}}, "data.fold must be in 0..4"),
        ({"data": {"val_fraction": 1.0}}, "data.val_fraction must be in [0, 1)"),
        ({"runtime": {"device": "tpu"}}, "runtime.device must be one of auto"),
        ({"runtime": {"deterministic": "yes"}}, "runtime.deterministic must be true or false"),
        ({"loss": {"dice": 0, "cross_entropy": 0}}, "something must train"),
        ({"augment": {"p_rotate": 0.5}}, "unknown key augment.p_rotate"),
        ({"optim": {"lr": float("nan")}}, "optim.lr must be > 0"),
        ({"data": {"far_crops": 1.5}}, "data.far_crops must be in [0, 1]"),
        ({"data": {"pixel_spacing_mm": 0}}, "data.pixel_spacing_mm must be > 0"),
        ({"data": {"split_val": ["a"]}}, "data.split_train must be given with data.split_val"),
        ({"data": {"split_train": ["a"], "folds": 5}}, "data.folds must be 0 with a fixed split"),
        ({"data": {"split_train": "a"}}, "data.split_train must be a list"),
    ],
)
def test_bad_values_name_the_key(data, message):
    with pytest.raises(InvalidInputError) as error:
        TrainConfig.from_dict(data, source="run.toml")
    assert str(error.value).startswith("run.toml: ")
    assert message in str(error.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(InvalidInputError, match="no such config file"):
        TrainConfig.load(tmp_path / "absent.toml")
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        TrainConfig.load(bad)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="a config must be a table"):
        TrainConfig.load(listed)
