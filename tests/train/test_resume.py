"""A run killed with SIGKILL in the middle of an epoch and resumed ends with the same weights
as an uninterrupted run (CPU, deterministic mode)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from lvseg.runs.checkpoint import load_checkpoint
from lvseg.runs.store import RunStore

ARGS = ["--epochs", "3", "--batch-size", "8", "--deterministic", "--device", "cpu", "--seed", "3"]

KILLED_AFTER_STEP = """
import dataclasses, os, signal, sys
from lvseg.cli import app
from lvseg.train import engine

kill_at = int(sys.argv.pop(1))
real_train = engine.train

def train(*args, progress, **kwargs):
    # the progress callback sees each step once it is logged: SIGKILL after step kill_at
    def on_step(step, epoch, metrics):
        progress.on_step(step, epoch, metrics)
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    hooks = dataclasses.replace(progress, on_step=on_step)
    return real_train(*args, progress=hooks, **kwargs)

engine.train = train
app(prog_name="lvseg")
"""
"""``lvseg ARGS`` that kills itself with SIGKILL right after an optimiser step."""


def lvseg(*args: str, kill_after_step: int | None = None) -> subprocess.CompletedProcess:
    start = (
        ["-m", "lvseg"]
        if kill_after_step is None
        else ["-c", KILLED_AFTER_STEP, str(kill_after_step)]
    )
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *start, *args], capture_output=True, text=True, env=environment
    )


def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tiny_phantom, tmp_path):
    data = ["--data", str(tiny_phantom), "--config", str(write_config(tmp_path))]
    whole = lvseg("train", *data, *ARGS, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    steps = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt").step
    per_epoch = steps // 3
    kill_at = per_epoch + per_epoch // 2 + 1  # in the middle of the second epoch

    killed = lvseg("train", *data, *ARGS, "--out", str(tmp_path / "cut"), kill_after_step=kill_at)
    assert killed.returncode == -signal.SIGKILL
    with RunStore.open(tmp_path / "cut", readonly=True) as store:
        assert store.last_step() == kill_at  # steps past the last checkpoint were logged...
    resumed = lvseg("train", "--resume", "--out", str(tmp_path / "cut"))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stderr

    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert a.step == b.step == steps
    assert a.state_dict.keys() == b.state_dict.keys()
    for name, tensor in a.state_dict.items():
        assert torch.equal(tensor, b.state_dict[name]), name
    with RunStore.open(tmp_path / "cut", readonly=True) as store:
        # ...and replaced on resume: one row per step, as in the uninterrupted run
        assert [s["step"] for s in store.steps()] == list(range(1, steps + 1))
        assert len(store.events("resumed")) == 1
        assert store.status == "finished"
    with RunStore.open(tmp_path / "whole", readonly=True) as whole_store:
        assert [e["val_dice"] for e in whole_store.epochs()] == [
            e["val_dice"] for e in RunStore.open(tmp_path / "cut", readonly=True).epochs()
        ]


def write_config(folder: Path) -> Path:
    path = folder / "small.toml"
    path.write_text('[model]\nname = "lvnet"\noptions = { width = 8 }\n', encoding="utf-8")
    return path
