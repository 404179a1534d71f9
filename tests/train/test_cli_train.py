"""The train, select, runs and model verbs from the command line, bad input included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from builders import invoke

from lvseg.runs.store import RunStore

SMALL = ["--epochs", "2", "--batch-size", "8", "--device", "cpu"]


def run_lvseg(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lvseg", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
    )


def small_config(folder: Path, width: int = 8) -> Path:
    path = folder / f"w{width}.toml"
    path.write_text(f"[model]\noptions = {{ width = {width} }}\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def two_runs(tiny_phantom, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    config = small_config(root, 8)
    for width in (8, 4):  # width 4 by --model-option, over the config's 8
        knob = ["--model-option", f"width={width}"] if width != 8 else []
        result = invoke(
            "train", "--data", tiny_phantom, "--config", config, *knob, *SMALL,
            "--out", root / f"w{width}",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    return root


def test_a_model_option_sets_one_knob_over_the_config(two_runs, tmp_path):
    saved = json.loads((two_runs / "w4" / "config.json").read_text())
    assert saved["model"]["options"] == {"width": 4}
    config = tmp_path / "deep.toml"
    config.write_text("[model]\noptions = { width = 8, depth = 3 }\n", encoding="utf-8")
    from lvseg.cli.train import _run_config, _with_model_options

    base = _run_config({}, config, resume=False, overwrite=False, out=None)
    merged = _with_model_options(base, ["width=4", "deep-supervision=1"], resume=False)
    assert merged.model.options == {"width": 4, "depth": 3, "deep_supervision": 1}


def test_a_split_file_is_the_runs_split(tiny_phantom, tmp_path):
    from lvseg.cli.train import _run_config, _with_split
    from lvseg.data.load import labelled_dataset
    from lvseg.data.splits import Split, split_for

    dataset = labelled_dataset(str(tiny_phantom), "auto")
    patients = dataset.patients  # four: one trains, one validates, two are its test set
    file = tmp_path / "split.json"
    Split(train=(patients[2],), val=(patients[0],), test=tuple(patients[1::2])).save(file)
    config = tmp_path / "folds.toml"
    config.write_text("[data]\nfolds = 4\nfold = 3\n", encoding="utf-8")  # the file wins
    options = _with_split({"seed": 3}, file, resume=False)
    data = _run_config(options, config, resume=False, overwrite=False, out=None).data
    assert (data.split_train, data.split_val, data.folds) == ([patients[2]], [patients[0]], 0)
    split = split_for(
        dataset, folds=data.folds, fold=data.fold, val_fraction=data.val_fraction, seed=3,
        fixed_train=data.split_train, fixed_val=data.split_val,
    )  # fmt: skip
    assert split == Split.load(file)


@pytest.mark.parametrize(
    ("split", "args", "message"),
    [
        ('{"train": ["a"], "val": ["a"]}', [], "split.json: patient 'a' is in both train and val"),
        ('{"train": [], "val": ["a"]}', [], "split.json: the split has no training patients"),
        ("[1, 2]", [], "split.json: a split file holds an object with train/val/test lists"),
        ("{", [], "split.json: cannot read split file (JSONDecodeError)"),
        ('{"train": ["a"]}', ["--val", "0.3", "--fold", "1"], "drop --val, --fold"),
        ('{"train": ["a"]}', ["--resume"], "drop: split"),
        ('{"train": ["nobody"]}', [], "patient 'nobody' of the fixed split is not in the data"),
    ],
)
def test_a_bad_split_file_is_one_line_exit_2(tiny_phantom, tmp_path, split, args, message):
    (tmp_path / "split.json").write_text(split, encoding="utf-8")
    result = run_lvseg(
        "train", "--data", tiny_phantom, "--split", tmp_path / "split.json", *args,
        "--out", tmp_path / "run",
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model-option", "colour=red"], "--model-option: unknown option 'colour' for model"),
        (["--model-option", "width=wide"], "option width of model 'lvnet' takes an integer"),
        (["--model-option", "width"], "model option 'width' is not key=value"),
        (["--model", "dli-fcn", "--model-option", "width=8"], "for model 'dli-fcn'; known"),
        (["--resume", "--model-option", "width=8"], "drop: model_option"),
    ],
)
def test_a_bad_model_option_is_one_line_exit_2(tmp_path, args, message):
    result = run_lvseg("train", *args, "--out", tmp_path / "run")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_model_info_prints_size_and_cost():
    result = invoke("model", "info", "lvnet")
    assert result.exit_code == 0
    assert "231,716" in result.output and "MACs" in result.output


def test_runs_list_and_show(two_runs):
    listing = invoke("runs", "list", two_runs)
    assert listing.exit_code == 0
    assert "w8" in listing.output and "w4" in listing.output and "finished" in listing.output
    shown = invoke("runs", "show", two_runs / "w8", env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    for text in ("finished", "val_dice", "checkpoints/last.pt", "lvnet", "train_patients"):
        assert text in shown.output


def test_select_records_why_and_writes_selected_json(two_runs):
    runs = [two_runs / "w8", two_runs / "w4"]
    dices = {}
    for run in runs:
        with RunStore.open(run, readonly=True) as store:
            dices[run.name] = (store.best_checkpoint()["metrics"]["val_dice"], store.meta)
    result = invoke("select", *runs, "--max-dice-drop", "1.0", "--prefer", "smallest")
    assert result.exit_code == 0, result.output
    # with any drop allowed, the smallest model wins
    selected = json.loads((two_runs / "w4" / "selected.json").read_text())
    assert selected["model"] == "lvnet"
    assert selected["parameters"] == min(d[1]["parameters"] for d in dices.values())
    assert "fewest parameters" in selected["reason"]
    with RunStore.open(two_runs / "w8", readonly=True) as store:
        assert store.events("selected")
    best = invoke("select", *runs, "--prefer", "dice")
    assert best.exit_code == 0
    winner = max(dices, key=lambda name: dices[name][0])
    assert json.loads((two_runs / winner / "selected.json").read_text())["reason"].startswith(
        "best validation Dice"
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("[optim]\nlrr = 0.1\n", "unknown key 'lrr' in [optim]"),
        ("[optim]\nlr = -1\n", "optim.lr must be > 0"),
        ("[optim]\nepochs = 'ten'\n", "optim.epochs must be an integer"),
        ("[data\n", "not valid TOML"),
        ("[augment]\np_gamma = 2\n", "augment.p_gamma must be a probability"),
    ],
)
def test_bad_config_is_one_line_exit_2(tmp_path, config, message):
    path = tmp_path / "bad.toml"
    path.write_text(config, encoding="utf-8")
    result = run_lvseg("train", "--config", path, "--out", tmp_path / "run")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_resume_errors_are_one_line(tmp_path, two_runs):
    missing = run_lvseg("train", "--resume", "--out", tmp_path / "nothing")
    assert missing.returncode == 2 and "nothing to resume" in missing.stderr
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(two_runs / "w8", broken)
    (broken / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    corrupt = run_lvseg("train", "--resume", "--out", broken)
    assert corrupt.returncode == 2
    assert "last.pt: not a readable lvseg checkpoint" in corrupt.stderr
    assert "Traceback" not in corrupt.stderr
    extra = run_lvseg("train", "--resume", "--out", broken, "--lr", "0.1")
    assert extra.returncode == 2 and "drop: optim" in extra.stderr


def test_data_without_labelled_slices_is_refused(tmp_path):
    import numpy as np
    from PIL import Image

    images = tmp_path / "data" / "Images" / "SC-N-01"
    labels = tmp_path / "data" / "Labels" / "SC-N-01"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for n in (1, 2):
        name = f"SC-N-01-IM-0001-{n:04d}.png"
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(images / name)
    result = run_lvseg("train", "--data", tmp_path / "data", "--out", tmp_path / "run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unavailable_device_is_one_line(tiny_phantom, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_lvseg("train", "--data", tiny_phantom, "--device", "cuda", "--out", tmp_path / "r")
    assert result.returncode == 2 and "no CUDA device" in result.stderr


def test_excluded_patients_never_train_or_validate(tiny_phantom, tmp_path):
    from lvseg.data.load import labelled_dataset
    from lvseg.runs.checkpoint import load_checkpoint

    kept_out = labelled_dataset(tiny_phantom).patients[0]
    result = invoke(
        "train", "--data", tiny_phantom, "--config", small_config(tmp_path), *SMALL,
        "--epochs", 1, "--exclude-patients", f"{kept_out}, ", "--out", tmp_path / "run",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert saved.split.test == (kept_out,)
    assert kept_out not in saved.split.train + saved.split.val
    assert saved.train_config.data.exclude_patients == [kept_out]

    typo = run_lvseg("train", "--data", tiny_phantom, "--exclude-patients", "NOBODY",
                     "--out", tmp_path / "typo")  # fmt: skip
    assert typo.returncode == 2 and "'NOBODY' to exclude is not in the data" in typo.stderr
