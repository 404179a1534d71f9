"""Atomic writes: nothing half-written, nothing lost, ordinary permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lvseg.data import atomic


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
