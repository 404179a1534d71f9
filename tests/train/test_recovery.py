"""Resuming a run whose store or files were hurt: a damaged run.db, no checkpoint yet, partial
files of a killed write, a full disk. Each ends with the same weights as a run never hurt
(CPU, deterministic mode), or with one line that names the way out."""

from __future__ import annotations

import errno
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from builders import invoke

from lvseg.config import TrainConfig
from lvseg.runs import checkpoint as checkpoint_module
from lvseg.runs.checkpoint import load_checkpoint
from lvseg.runs.store import RunStore
from lvseg.train import engine

EPOCHS = 2


class Stop(Exception):
    """Stands for a run killed right after a checkpoint."""


@pytest.fixture(autouse=True)
def _restore_determinism():
    """Deterministic mode is process-wide; leave it as the other tests expect it."""
    enabled = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(enabled)


def tiny_config(data: Path) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "seed": 5,
            "data": {"path": str(data), "val_fraction": 0.25},
            "model": {"options": {"width": 8}},
            "optim": {"epochs": EPOCHS, "batch_size": 8},
            "runtime": {"device": "cpu", "deterministic": True},
            "monitor": {"enabled": False},
        }
    )


@pytest.fixture(scope="module")
def whole(tiny_phantom, tmp_path_factory) -> Path:
    """The run never hurt, for the others to match."""
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    engine.train(tiny_config(tiny_phantom), run_dir)
    torch.use_deterministic_algorithms(False)
    return run_dir


def stopped_after_epoch_1(data: Path, run_dir: Path) -> Path:
    def stop(epoch, metrics):
        if epoch == 1:
            raise Stop()

    with pytest.raises(Stop):
        engine.train(tiny_config(data), run_dir, progress=engine.Progress(on_epoch=stop))
    return run_dir


def assert_same_weights(a: Path, b: Path) -> None:
    first = load_checkpoint(a / "checkpoints" / "last.pt")
    second = load_checkpoint(b / "checkpoints" / "last.pt")
    assert (first.epoch, first.step) == (second.epoch, second.step)
    for name, tensor in first.state_dict.items():
        assert torch.equal(tensor, second.state_dict[name]), name


def text(result) -> str:
    """The output on one line (rich may fold long lines)."""
    return " ".join(result.output.split())


def damage_pages(database: Path) -> None:
    connection = sqlite3.connect(database)
    roots = [row[0] for row in connection.execute("SELECT rootpage FROM sqlite_master")]
    page = connection.execute("PRAGMA page_size").fetchone()[0]
    connection.close()
    with open(database, "r+b") as file:
        for root in roots[1:6]:  # meta is page 2: the tables after it, in the middle
            file.seek((root - 1) * page)
            file.write(bytes(range(256)) * (page // 256))


# ------------------------------------------------------------------------------ damaged run.db


def test_resume_with_a_damaged_run_db_keeps_it_aside_and_continues_exactly(
    tiny_phantom, tmp_path, whole
):
    run_dir = stopped_after_epoch_1(tiny_phantom, tmp_path / "run")
    step = load_checkpoint(run_dir / "checkpoints" / "last.pt").step
    damage_pages(run_dir / "run.db")
    damaged_bytes = (run_dir / "run.db").read_bytes()
    (run_dir / "config.json").unlink()  # rebuilt from the checkpoint too

    resumed = invoke("train", "--resume", "--out", run_dir)
    assert resumed.exit_code == 0, resumed.output
    (aside,) = run_dir.glob("run.db.damaged-*")
    assert aside.read_bytes() == damaged_bytes  # kept as it was, never deleted
    assert (
        f"warning: {run_dir / 'run.db'} is damaged (database disk image is malformed); it is "
        f"kept as {aside.name}. Started a new run database from checkpoints/last.pt (epoch 1, "
        f"step {step}): what was logged before is not in it; training continues exactly from "
        "the checkpoint"
    ) in text(resumed)
    assert_same_weights(whole, run_dir)
    with RunStore.open(run_dir, readonly=True) as store:
        assert store.status == "finished"
        assert store.config == tiny_config(tiny_phantom).to_dict()
        assert store.meta["recovered_from"] == aside.name and store.meta["model"] == "lvnet"
        assert [row["epoch"] for row in store.epochs()] == [1, 2]
        assert [row["step"] for row in store.steps()] == list(range(step + 1, 2 * step + 1))
        assert {row["kind"] for row in store.checkpoints()} <= {"last", "best"}
        (event,) = store.events("recovered")
        assert event["data"]["damaged"] == aside.name
        assert len(store.events("resumed")) == 1


def test_select_and_runs_show_on_a_damaged_run_db_say_so_in_one_line(tiny_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(tiny_run, run_dir)
    damage_pages(run_dir / "run.db")
    for args in (("select", run_dir), ("runs", "show", run_dir)):
        result = invoke(*args)
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
        assert text(result) == (
            f"error: {run_dir / 'run.db'}: corrupt run database: database disk image is "
            "malformed (lvseg train --resume --out RUN keeps it aside and rebuilds it from the "
            "run's last checkpoint)"
        )


# ------------------------------------------------------------------------------ no checkpoint


def killed_before_its_first_checkpoint(data: Path, run_dir: Path) -> Path:
    """What a run killed during its first epoch leaves: config, run.db with some steps, no
    checkpoint, the status "running", a writer that is gone."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with RunStore.create(run_dir, tiny_config(data).to_dict(), meta={"pid": gone.pid}) as store:
        for step in (1, 2):
            store.log_step(step, 1, loss=0.9)
    return run_dir


def test_a_run_without_a_checkpoint_names_the_ways_out_and_resume_restarts_it(
    tiny_phantom, tmp_path, whole
):
    run_dir = killed_before_its_first_checkpoint(tiny_phantom, tmp_path / "run")
    again = invoke("train", "--data", tiny_phantom, "--out", run_dir)
    assert again.exit_code == 2
    assert text(again) == (
        f"error: {run_dir}: already holds a run: use --resume to continue it, --overwrite to "
        "start it again from scratch, or another --out"
    )
    resumed = invoke("train", "--resume", "--out", run_dir)
    assert resumed.exit_code == 0, resumed.output
    assert (
        f"{run_dir} has no checkpoint yet: restarting it from scratch with its saved config "
        f"({run_dir / 'config.json'})"
    ) in text(resumed)
    assert_same_weights(whole, run_dir)
    with RunStore.open(run_dir, readonly=True) as store:
        steps = load_checkpoint(run_dir / "checkpoints" / "last.pt").step
        assert [row["step"] for row in store.steps()] == list(range(1, steps + 1))
        assert store.status == "finished" and store.meta["model"] == "lvnet"
        assert store.events("resumed")[0]["message"] == "restarted from scratch: no checkpoint yet"


def test_without_a_checkpoint_or_a_usable_config_resume_names_overwrite(tiny_phantom, tmp_path):
    run_dir = killed_before_its_first_checkpoint(tiny_phantom, tmp_path / "run")
    (run_dir / "config.json").write_text("{", encoding="utf-8")
    result = invoke("train", "--resume", "--out", run_dir)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert text(result).startswith(
        f"error: {run_dir}: nothing to resume: the run has no checkpoint yet and its saved "
        f"config cannot be used ({run_dir / 'config.json'}: not valid JSON"
    )
    assert text(result).endswith(f"start it again with lvseg train --out {run_dir} --overwrite")


def test_overwrite_replaces_a_run_and_refuses_anything_else(tiny_phantom, tmp_path, whole):
    run_dir = killed_before_its_first_checkpoint(tiny_phantom, tmp_path / "run")
    (run_dir / "checkpoints" / ".last.pt.abcdefgh.tmp").write_bytes(b"partial")
    both = invoke("train", "--resume", "--overwrite", "--out", run_dir)
    assert both.exit_code == 2
    assert "--resume continues a run and --overwrite replaces it: give one of them" in text(both)

    (run_dir / "notes.txt").write_text("mine", encoding="utf-8")
    refused = invoke("train", "--data", tiny_phantom, "--out", run_dir, "--overwrite")
    assert refused.exit_code == 2 and (run_dir / "notes.txt").is_file()
    assert text(refused) == (
        f"error: {run_dir}: holds notes.txt, which lvseg did not write: --overwrite replaces "
        "only a training run lvseg wrote; move them out or choose another --out"
    )
    (run_dir / "notes.txt").unlink()
    config = tmp_path / "config.json"
    shutil.copy(run_dir / "config.json", config)
    replaced = invoke("train", "--config", config, "--out", run_dir, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert f"replaced the run that was in {run_dir}" in text(replaced)
    assert_same_weights(whole, run_dir)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    with RunStore.open(run_dir, readonly=True) as store:
        assert store.events("resumed") == [] and store.steps()[0]["loss"] != 0.9


# ------------------------------------------------------------------------------ partial files


def test_resume_removes_the_partial_files_of_a_killed_write(tiny_phantom, tmp_path, whole):
    run_dir = stopped_after_epoch_1(tiny_phantom, tmp_path / "run")
    partial = run_dir / "checkpoints" / ".last.pt.k3j_9x2a.tmp"
    partial.write_bytes(b"half a checkpoint")
    mine = run_dir / "checkpoints" / "notes.tmp"
    mine.write_bytes(b"not lvseg's")
    resumed = invoke("train", "--resume", "--out", run_dir)
    assert resumed.exit_code == 0, resumed.output
    assert (
        "removed 1 partial file(s) of an interrupted write: checkpoints/.last.pt.k3j_9x2a.tmp"
    ) in text(resumed)
    assert not partial.exists() and mine.exists()
    assert_same_weights(whole, run_dir)


# ------------------------------------------------------------------------------ full disk


def test_a_full_disk_at_a_checkpoint_is_one_line_and_the_run_resumes(
    tiny_phantom, tmp_path, whole, monkeypatch
):
    run_dir = tmp_path / "run"
    real = checkpoint_module._write_payload
    writes = {"last": 0}

    def fills_the_disk_at_the_second_last(payload, temporary):
        if temporary.name.startswith(".last.pt."):
            writes["last"] += 1
            if writes["last"] == 2:
                temporary.write_bytes(b"the first bytes")
                raise OSError(errno.ENOSPC, "No space left on device")
        real(payload, temporary)

    monkeypatch.setattr(checkpoint_module, "_write_payload", fills_the_disk_at_the_second_last)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(tiny_phantom).to_dict()), encoding="utf-8")
    full = invoke("train", "--config", config, "--out", run_dir)
    assert full.exit_code == 2
    last = run_dir / "checkpoints" / "last.pt"
    assert full.output.strip().splitlines()[-1] == (
        f"error: {last}: no space left on the device; free some and run it again"
    )
    assert load_checkpoint(last).epoch == 1  # the previous one, whole
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))
    with RunStore.open(run_dir, readonly=True) as store:
        assert store.status == "failed" and "No space left" in store.status_message

    monkeypatch.setattr(checkpoint_module, "_write_payload", real)
    resumed = invoke("train", "--resume", "--out", run_dir)
    assert resumed.exit_code == 0, resumed.output
    assert_same_weights(whole, run_dir)


def test_a_full_run_database_is_one_line_and_the_run_resumes(
    tiny_phantom, tmp_path, whole, monkeypatch
):
    run_dir = tmp_path / "run"
    real = RunStore.log_epoch

    def fills_the_database_at_epoch_2(self, epoch, **metrics):
        if epoch == 2:  # a real SQLITE_FULL: the file may not grow by a page more
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            self._db.execute(f"PRAGMA max_page_count = {pages}")
            self.event("padding", "x" * 100_000)
        real(self, epoch, **metrics)

    monkeypatch.setattr(RunStore, "log_epoch", fills_the_database_at_epoch_2)
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        engine.train(tiny_config(tiny_phantom), run_dir)  # as it is, not wrapped
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt").epoch == 1
    with RunStore.open(run_dir, readonly=True) as store:
        store.check_integrity()
        assert [row["epoch"] for row in store.epochs()] == [1]
        assert store.events("padding") == []  # rolled back

    monkeypatch.setattr(RunStore, "log_epoch", real)
    resumed = invoke("train", "--resume", "--out", run_dir)
    assert resumed.exit_code == 0, resumed.output
    assert_same_weights(whole, run_dir)


def test_the_cli_reports_a_full_run_database_in_one_line(tiny_phantom, tmp_path, monkeypatch):
    def full(self, epoch, **metrics):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(RunStore, "log_epoch", full)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(tiny_phantom).to_dict()), encoding="utf-8")
    result = invoke("train", "--config", config, "--epochs", 1, "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "error: no space left on the device for the run database"
    )
