"""Damaged, locked and half-written runs: one line naming run.db, never a SQLite traceback; a
listing shows every other run; partial files are recognised; --overwrite deletes only runs."""

from __future__ import annotations

import errno
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from builders import invoke

from lvseg.dashboard.readers import Runs
from lvseg.errors import InvalidInputError
from lvseg.runs import folder
from lvseg.runs.checkpoint import Checkpoint
from lvseg.runs.store import (
    READ_BUSY_TIMEOUT_S,
    CorruptRunError,
    RunLockedError,
    RunStore,
    list_runs,
)

MALFORMED = "database disk image is malformed"
HINT = (
    "(lvseg train --resume --out RUN keeps it aside and rebuilds it from the run's last checkpoint)"
)


def make_run(run_dir: Path, steps: int = 300) -> Path:
    with RunStore.create(run_dir, {"model": {"name": "lvnet"}}, meta={"model": "lvnet"}) as store:
        for step in range(1, steps + 1):
            store.log_step(step, 1 + step // 100, loss=0.5, lr=0.001)
        for epoch in (1, 2, 3):
            store.log_epoch(epoch, val_dice=0.5 + epoch / 10)
        store.add_checkpoint("last", "checkpoints/last.pt", 3, steps, {"val_dice": 0.8}, 10, 10)
        store.add_checkpoint("best", "checkpoints/best.pt", 3, steps, {"val_dice": 0.8}, 10, 10)
        store.set_status("finished")
    return run_dir


def damage_pages(run_dir: Path, tables=("meta", "steps", "epochs", "checkpoints")) -> None:
    """Overwrite the first page of some tables, in the middle of the file, with junk bytes."""
    database = run_dir / "run.db"
    connection = sqlite3.connect(database)
    roots = dict(connection.execute("SELECT name, rootpage FROM sqlite_master"))
    page = connection.execute("PRAGMA page_size").fetchone()[0]
    connection.close()
    assert not Path(f"{database}-wal").exists()  # everything is in run.db itself
    with open(database, "r+b") as file:
        for table in tables:
            assert 1 < roots[table] < database.stat().st_size // page
            file.seek((roots[table] - 1) * page)
            file.write(bytes(range(256)) * (page // 256))


def one_error_line(result, text: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], result.output


@pytest.fixture
def locked(tmp_path: Path):
    """A run whose database another connection holds with an exclusive lock."""
    run_dir = make_run(tmp_path / "runs" / "held")
    holder = sqlite3.connect(run_dir / "run.db", isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO events (time, kind, message, data) VALUES (0, 'x', 'y', '{}')")
    yield run_dir
    holder.execute("COMMIT")
    holder.close()


# ------------------------------------------------------------------------------ damaged pages


def test_damaged_pages_are_one_line_in_runs_show_and_select(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    damage_pages(run_dir)
    database = run_dir / "run.db"
    with pytest.raises(CorruptRunError) as error:
        with RunStore.open(run_dir, readonly=True) as store:
            store.summary()
    assert str(error.value) == f"{database}: corrupt run database: {MALFORMED} {HINT}"
    one_error_line(
        invoke("runs", "show", run_dir), f"{database}: corrupt run database: {MALFORMED}"
    )
    one_error_line(invoke("select", run_dir), f"{database}: corrupt run database: {MALFORMED}")


def test_damage_anywhere_is_found_by_the_integrity_check(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    damage_pages(run_dir, tables=("steps",))
    with RunStore.open(run_dir) as store:
        assert store.status == "finished"  # the pages read so far are fine...
        with pytest.raises(CorruptRunError, match="corrupt run database"):
            store.check_integrity()  # ...but not every page is
    with RunStore.open(make_run(tmp_path / "whole"), readonly=True) as store:
        store.check_integrity()


def test_a_listing_shows_a_damaged_run_as_corrupt_and_the_others_as_usual(tmp_path: Path) -> None:
    make_run(tmp_path / "a-good")
    damage_pages(make_run(tmp_path / "b-damaged"))
    make_run(tmp_path / "c-good")
    runs = {run.name: run for run in list_runs(tmp_path)}
    assert [runs[name].status for name in sorted(runs)] == ["finished", "corrupt", "finished"]
    assert runs["b-damaged"].error.startswith(f"{tmp_path / 'b-damaged' / 'run.db'}: corrupt")


# ------------------------------------------------------------------------------ a bad JSON row


def test_one_row_of_bad_json_affects_only_its_run(tmp_path: Path) -> None:
    make_run(tmp_path / "a-good")
    bad = make_run(tmp_path / "b-bad-row")
    connection = sqlite3.connect(bad / "run.db")
    connection.execute("UPDATE epochs SET metrics = '{\"val_dice\": 0.5' WHERE epoch = 2")
    connection.commit()
    connection.close()
    with RunStore.open(bad, readonly=True) as store:
        assert store.steps()[0]["loss"] == 0.5  # the other tables still read
        with pytest.raises(CorruptRunError) as error:
            store.epochs()
    database = bad / "run.db"
    reason = (
        "a row of epochs is not valid JSON (Expecting ',' delimiter: line 1 column 17 (char 16))"
    )
    assert str(error.value) == f"{database}: corrupt run database: {reason} {HINT}"

    listing = invoke("runs", "list", tmp_path, env={"COLUMNS": "250"})
    assert listing.exit_code == 0, listing.output
    assert "a-good" in listing.output and "finished" in listing.output
    assert f"b-bad-row (corrupt): {database}: corrupt run database: {reason}" in listing.output
    one_error_line(invoke("runs", "show", bad), f"{database}: corrupt run database: {reason}")


def test_a_status_row_no_writer_wrote_is_corrupt(tmp_path: Path) -> None:
    """Damaged pages can leave a row that still reads with a value no writer wrote (the fuzz
    suite met a NULL status; here, a word no writer uses): it is the run's corruption, not a
    traceback in the listing."""
    import sqlite3

    bad = make_run(tmp_path / "bad")
    make_run(tmp_path / "good")
    with sqlite3.connect(bad / "run.db") as connection:
        connection.execute("UPDATE status SET status = 'garbled'")
    connection.close()
    message = f"{bad / 'run.db'}: corrupt run database: the last status row holds 'garbled'"
    listing = invoke("runs", "list", tmp_path, env={"COLUMNS": "250"})
    assert listing.exit_code == 0, listing.output
    assert f"bad (corrupt): {message}" in listing.output and "finished" in listing.output
    one_error_line(invoke("runs", "show", bad), message)


# ------------------------------------------------------------------------------ locked


def test_a_locked_database_is_locked_not_corrupt(locked: Path) -> None:
    root = locked.parent
    make_run(root / "free")
    runs = {run.name: run for run in list_runs(root)}
    assert runs["free"].status == "finished"
    assert runs["held"].status == "locked"
    message = (
        f"{locked / 'run.db'}: run database is locked by another process; try again once it "
        "lets go of it"
    )
    assert runs["held"].error == message
    served = {run["name"]: run for run in Runs(root).summaries()}  # the dashboard's /api/runs
    assert served["held"]["status"] == "locked" and served["held"]["error"] == message
    assert served["free"]["status"] == "finished"
    with pytest.raises(RunLockedError):
        RunStore.open(locked, readonly=True)
    listing = invoke("runs", "list", root, env={"COLUMNS": "250"})
    assert listing.exit_code == 0 and f"held (locked): {message}" in listing.output
    one_error_line(invoke("runs", "show", locked), message)


def test_read_only_stores_wait_only_briefly_for_a_lock(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    assert READ_BUSY_TIMEOUT_S <= 0.5
    with RunStore.open(run_dir, readonly=True) as reader:
        assert reader.busy_timeout_s == READ_BUSY_TIMEOUT_S
    with RunStore.open(run_dir) as writer:
        assert writer.busy_timeout_s == 5.0


# ------------------------------------------------------------------------------ partial files


def test_a_failed_checkpoint_write_leaves_the_previous_file_and_no_partial_one(
    tmp_path: Path, monkeypatch
) -> None:
    from builders import plain_plan

    from lvseg.runs import checkpoint as checkpoint_module

    path = tmp_path / "checkpoints" / "last.pt"
    saved = Checkpoint("lvnet", {}, {"w": torch.ones(3)}, plain_plan(None, 32), epoch=1)
    saved.save(path)
    before = path.read_bytes()

    def full_disk(payload, temporary):
        temporary.write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "_write_payload", full_disk)
    with pytest.raises(OSError) as error:
        Checkpoint("lvnet", {}, {"w": torch.zeros(3)}, plain_plan(None, 32), epoch=2).save(path)
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def test_only_lvseg_temporary_files_are_stale(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", steps=1)
    checkpoints = run_dir / "checkpoints"
    partial = [checkpoints / ".last.pt.k3j_9x2a.tmp", checkpoints / ".best.pt.abcdefgh.tmp"]
    partial += [run_dir / ".run.db.a1b2c3d4.tmp", run_dir / ".config.json.zz__zz11.tmp"]
    others = [checkpoints / "last.pt", checkpoints / "notes.tmp", checkpoints / ".mine.txt.tmp"]
    others += [run_dir / ".selected.json.abcdefgh.tmp", run_dir / "keep.tmp"]
    for path in partial + others:
        path.write_bytes(b"x")
    (checkpoints / ".dir.pt.abcdefgh.tmp").mkdir()
    assert folder.remove_stale_temporaries(run_dir) == sorted(partial[:2]) + sorted(partial[2:])
    assert all(path.exists() for path in others) and not any(path.exists() for path in partial)


def test_a_damaged_database_is_set_aside_with_its_companions(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", steps=1)
    (run_dir / "run.db-wal").write_bytes(b"wal")
    aside = folder.set_aside_database(run_dir)
    assert aside is not None and aside.name.startswith("run.db.damaged-")
    assert not (run_dir / "run.db").exists() and not (run_dir / "run.db-wal").exists()
    assert Path(f"{aside}-wal").read_bytes() == b"wal"
    assert folder.set_aside_database(run_dir) is None


# ------------------------------------------------------------------------------ --overwrite


def test_overwrite_may_replace_only_a_run_lvseg_wrote(tmp_path: Path, monkeypatch) -> None:
    run_dir = make_run(tmp_path / "run", steps=1)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"x")
    (run_dir / "evaluation").mkdir()
    (run_dir / "evaluation" / ".lvseg-output").write_text("{}")
    (run_dir / "run.db.damaged-20240101-000000").write_bytes(b"x")
    folder.check_replaceable_run(run_dir)  # every entry is lvseg's

    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInputError) as error:
        folder.replace_run(run_dir)
    assert str(error.value) == (
        f"{run_dir}: holds notes.txt, which lvseg did not write: --overwrite replaces only a "
        "training run lvseg wrote; move them out or choose another --out"
    )
    (run_dir / "notes.txt").unlink()
    (run_dir / "checkpoints" / "mine.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="holds checkpoints/mine.txt, which lvseg"):
        folder.replace_run(run_dir)
    (run_dir / "checkpoints" / "mine.txt").unlink()

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "data.csv").write_text("1")
    with pytest.raises(InvalidInputError, match="is not a training run: --overwrite replaces"):
        folder.replace_run(plain)
    with pytest.raises(InvalidInputError, match="holds the input"):
        folder.check_replaceable_run(run_dir, keep=[run_dir / "evaluation"])
    monkeypatch.chdir(run_dir)
    with pytest.raises(InvalidInputError, match="holds the current folder"):
        folder.check_replaceable_run(run_dir)
    monkeypatch.chdir(tmp_path)

    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with RunStore.open(run_dir) as store:
            store.set_status("running")
            store.set_meta(pid=alive.pid)
        with pytest.raises(
            InvalidInputError, match=f"is being trained right now \\(process {alive.pid}\\)"
        ):
            folder.replace_run(run_dir)
    finally:
        alive.kill()
        alive.wait()
    assert folder.replace_run(run_dir) is True
    assert not run_dir.exists() and list(tmp_path.glob(".run.*")) == []
    assert folder.replace_run(tmp_path / "missing") is False
    assert json.loads((plain / "data.csv").read_text()) == 1
