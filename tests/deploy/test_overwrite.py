"""``--overwrite`` never deletes what it was not asked to: every data-loss case the reliability
fuzzing found (an output folder that is, or holds, an input, the model, a run or the current
folder) is one line, exit 2, and every input byte is where it was."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from builders import invoke


def fingerprint(*roots: Path) -> dict[str, str]:
    """Every file under the roots, by path, with a hash of its bytes."""
    found = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture
def workspace(tmp_path, tiny_phantom, tiny_run, exported_tiny) -> dict[str, Path]:
    """Private copies: a refusal that failed would delete them, not the session's fixtures."""
    places = {
        "data": shutil.copytree(tiny_phantom, tmp_path / "work" / "phantom"),
        "run": shutil.copytree(tiny_run, tmp_path / "work" / "run"),
        "model": shutil.copytree(exported_tiny, tmp_path / "work" / "export"),
    }
    places["study"] = places["data"] / "dicoms"
    return places


CASES = {
    "predict into its input": ("predict", "model", "study", "study", "is the input"),
    "predict into the folder that holds its input": (
        "predict", "model", "study", "data", "holds the input"),
    "predict into its model's folder": ("predict", "model", "study", "model", "is the input"),
    "evaluate into its data": ("evaluate", "run", "data", "data", "is the input"),
    "export into its run": ("export", "run", None, "run", "is the input"),
    "explain into the folder of its model and data": (
        "explain", "run", "data", "work", "holds the input"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_overwrite_never_deletes_an_input(case, workspace):
    command, model, data, out, needle = CASES[case]
    workspace["work"] = workspace["data"].parent
    before = fingerprint(workspace["work"])
    args = [command, workspace[model]] + ([workspace[data]] if data else [])
    result = invoke(*args, "--out", workspace[out], "--overwrite")
    assert result.exit_code == 2, result.output
    assert needle in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert fingerprint(workspace["work"]) == before


def test_the_current_folder_and_its_parents_are_never_an_output(workspace, monkeypatch):
    monkeypatch.chdir(workspace["study"])
    before = fingerprint(workspace["data"].parent)
    for out in (".", ".."):
        result = invoke("predict", workspace["model"], ".", "--out", out, "--overwrite")
        assert result.exit_code == 2 and "the current folder" in result.stderr, result.output
    result = invoke("data", "phantom", ".", "--patients", 1, "--overwrite")
    assert result.exit_code == 2 and "the current folder" in result.stderr, result.output
    assert fingerprint(workspace["data"].parent) == before


def test_a_run_is_never_an_output_even_a_foreign_commands(workspace, tmp_path):
    before = fingerprint(workspace["run"])
    result = invoke(
        "predict", workspace["model"], workspace["study"], "--out", workspace["run"], "--overwrite"
    )
    assert result.exit_code == 2 and "is a training run" in result.stderr, result.output
    assert fingerprint(workspace["run"]) == before


def test_overwrite_replaces_its_own_output(workspace, tmp_path):
    out = tmp_path / "prediction"
    first = invoke("predict", workspace["model"], workspace["study"], "--out", out)
    assert first.exit_code == 0, first.output
    again = invoke("predict", workspace["model"], workspace["study"], "--out", out, "--overwrite")
    assert again.exit_code == 0, again.output
    assert (out / ".lvseg-output").is_file() and (out / "studies.csv").is_file()
