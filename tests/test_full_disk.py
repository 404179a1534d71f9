"""A disk that fills up while ``lvseg evaluate`` or ``lvseg export`` writes: one line, exit 2,
nothing left on the disk and the run untouched. A real small tmpfs where this process may mount
one (root); the fuzz suite does the same for the phantom, predict and inspect's montage."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import invoke
from fuzzing import can_mount, mount_small_disk, snapshot


@pytest.fixture
def small_disk(tmp_path: Path):
    if not can_mount():
        pytest.skip("a small tmpfs cannot be mounted here (needs root)")
    disk = tmp_path / "disk"
    unmount = mount_small_disk(disk, 48)
    yield disk
    unmount()


@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_a_full_disk_is_one_line_and_leaves_nothing(command, small_disk, tiny_run, tiny_phantom):
    out = small_disk / "out"
    before = snapshot(tiny_run, None)
    if command == "evaluate":
        result = invoke("evaluate", tiny_run, tiny_phantom, "--out", out)
    else:
        result = invoke("export", tiny_run, "--out", out)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: no space left on the device; free some and run it again"]
    assert "Traceback" not in result.output
    assert list(small_disk.iterdir()) == []
    assert snapshot(tiny_run, None) == before
