"""Two CPU processes under torchrun (gloo) train the phantom as one run."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch

from lvseg.runs.store import RunStore

RANK_DUMPS_ITS_WEIGHTS = """
import os, sys
import torch
from lvseg.cli import app
from lvseg.train import engine

dumps = sys.argv.pop(1)
real_finish = engine.finish

def finish(trainer, *args):
    # every rank saves the weights it finished with (rank 0 alone writes the run itself)
    weights = {k: v.cpu() for k, v in trainer.model.state_dict().items()}
    torch.save(weights, os.path.join(dumps, f"rank{trainer.context.rank}.pt"))
    return real_finish(trainer, *args)

engine.finish = finish
app(prog_name="lvseg")
"""
"""``lvseg ARGS`` under torchrun, each rank saving its final weights in the folder given first."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_two_gloo_ranks_end_identical_and_only_rank_0_writes(tiny_phantom, tmp_path):
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    script = tmp_path / "lvseg_dumping_weights.py"
    script.write_text(RANK_DUMPS_ITS_WEIGHTS, encoding="utf-8")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}",
        str(script), str(dumps), "train", "--data", str(tiny_phantom), "--out", "runs/ddp",
        "--epochs", "2", "--batch-size", "4", "--device", "cpu", "--seed", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]

    rank0 = torch.load(dumps / "rank0.pt", weights_only=True)
    rank1 = torch.load(dumps / "rank1.pt", weights_only=True)
    for name, tensor in rank0.items():
        assert torch.equal(tensor, rank1[name]), name

    # One run directory, one set of files, written by rank 0.
    assert sorted(p.name for p in (work / "runs").iterdir()) == ["ddp"]
    run = work / "runs" / "ddp"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) in (
        ["best.pt", "last.pt"],
        ["last.pt"],
    )
    with RunStore.open(run, readonly=True) as store:
        assert store.meta["world_size"] == 2
        steps = store.steps()
        assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))
        # each rank took half of every epoch's slices (batches of 4 per rank)
        per_rank = -(-store.meta["train_slices"] // 2)
        per_rank -= 1 if per_rank % 4 == 1 else 0
        assert len(steps) == 2 * -(-per_rank // 4)
        assert store.status == "finished"
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["state_dict"]
    for name, tensor in rank0.items():
        assert torch.equal(tensor, last[name]), name
    shutil.rmtree(dumps)
