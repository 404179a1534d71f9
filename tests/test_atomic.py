"""Atomic writes: nothing half-written, nothing lost, ordinary permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lvseg import atomic


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.txt"]


def test_files_and_folders_get_umask_permissions_not_private_ones(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "a.txt", "x")
        with atomic.atomic_directory(tmp_path / "folder") as folder:
            (folder / "inside.txt").write_text("y")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755


def test_directory_is_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic.atomic_directory(target) as folder:
        (folder / "first.txt").write_text("1")
    with pytest.raises(FileExistsError):
        with atomic.atomic_directory(target):
            pass
    with pytest.raises(ValueError), atomic.atomic_directory(target, overwrite=True) as folder:
        (folder / "second.txt").write_text("2")
        raise ValueError("crash while building")
    assert sorted(p.name for p in target.iterdir()) == ["first.txt"]
    with atomic.atomic_directory(target, overwrite=True) as folder:
        (folder / "second.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["second.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_output_folder_is_marked_and_only_lvseg_folders_are_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    atomic.check_output_folder(out, overwrite=False)  # new
    with atomic.output_folder(out) as folder:
        (folder / "result.txt").write_text("1")
    assert (out / atomic.OUTPUT_MARKER).is_file() and atomic.written_by_lvseg(out)
    with pytest.raises(FileExistsError):
        atomic.check_output_folder(out, overwrite=False)
    atomic.check_output_folder(out, overwrite=True)  # lvseg's own: may be replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    atomic.check_output_folder(mine, overwrite=False)  # empty: as good as new
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(atomic.InvalidInputError, match="lvseg did not write it"):
        atomic.check_output_folder(mine, overwrite=True)
    # a folder written before the marker existed is known by its manifest
    old = tmp_path / "old-evaluation"
    old.mkdir()
    (old / "metrics.json").write_text('{"lvseg_version": "0.1.0", "summary": {}}')
    atomic.check_output_folder(old, overwrite=True)
    (old / "metrics.json").write_text('{"summary": {}}')
    assert not atomic.written_by_lvseg(old)


def test_an_output_folder_never_holds_an_input_the_current_folder_or_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data" / "study"
    data.mkdir(parents=True)
    (data / "1.dcm").write_bytes(b"pixels")
    for out, needle in (
        (data, "is the input"),
        (data.parent, "holds the input"),
        (tmp_path, "holds the input"),
    ):
        with pytest.raises(atomic.InvalidInputError, match=needle):
            atomic.check_output_folder(out, overwrite=True, keep=[data, None])
    link = tmp_path / "link"  # a link to the data's folder is that folder
    link.symlink_to(data.parent, target_is_directory=True)
    with pytest.raises(atomic.InvalidInputError, match="holds the input"):
        atomic.check_output_folder(link, overwrite=True, keep=[data])
    monkeypatch.chdir(data)
    for out in (Path("."), Path(".."), data):
        with pytest.raises(atomic.InvalidInputError, match="the current folder"):
            atomic.check_output_folder(out, overwrite=True)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / atomic.OUTPUT_MARKER).write_text("{}")  # even one that claims to be an output
    with pytest.raises(atomic.InvalidInputError, match="is a training run"):
        atomic.check_output_folder(run, overwrite=True)
    assert (data / "1.dcm").read_bytes() == b"pixels"
