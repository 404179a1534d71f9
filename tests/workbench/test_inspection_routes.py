"""A dataset's inspection, montage and plan through the API, on a tiny 2-patient phantom in the
workspace's datasets/: the same answers as ``lvseg data inspect`` / ``plan`` run by hand, kept
in the workspace's cache (a subprocess counter proves a second call runs nothing), re-run when
the folder changes, and one-line errors for an unknown, a gone or an unreadable dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException

from lvseg.workbench.api import create_workbench_app
from lvseg.workbench.datasets import Datasets
from lvseg.workbench.inspection import CACHE_FOLDER, DataCommands
from lvseg.workbench.queue import JobQueue
from lvseg.workbench.workspace import Workspace

BASE = "http://127.0.0.1:8765"
PNG = b"\x89PNG\r\n\x1a\n"
REAL_RUN = subprocess.run  # the test's own runs, by hand, are not counted


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    from lvseg.data.phantom import write_phantom

    space = Workspace.open(tmp_path_factory.mktemp("inspection") / "ws")
    write_phantom(space.datasets / "tiny", patients=2, seed=0, downscale=4)
    return space


@pytest.fixture(scope="module")
def http(space):
    with JobQueue.open(space) as queue:
        yield TestClient(create_workbench_app(space, queue), base_url=BASE)


class Counted:
    """subprocess.run, counted."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv, **kwargs):
        self.calls.append(argv)
        return REAL_RUN(argv, **kwargs)


@pytest.fixture
def runs(monkeypatch):
    counted = Counted()
    monkeypatch.setattr(subprocess, "run", counted)
    return counted.calls


def _lvseg(*args: str) -> dict:
    done = REAL_RUN(
        [sys.executable, "-m", "lvseg", "data", *args, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_the_inspection_is_lvseg_data_inspect_and_is_cached(http, space, runs):
    folder = space.datasets / "tiny"
    answer = http.get("/api/datasets/tiny/inspection")
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert len(runs) == 1 and runs[0][3:7] == ["data", "inspect", str(folder), "--json"]
    by_hand = _lvseg("inspect", str(folder))
    assert {key: shown[key] for key in by_hand} == by_hand
    assert (shown["patients"], shown["groups"]) == (2, {"HF-I": 1, "N": 1})
    assert shown["dataset"] == "tiny" and shown["seconds"] > 0
    assert shown["command"].startswith(f"lvseg data inspect {folder} --json --out ")
    assert shown["command"].endswith(".png") and "montage" not in shown
    # Asked again, and its montage: from the cache, nothing run.
    assert http.get("/api/datasets/tiny/inspection").json() == shown
    picture = http.get("/api/datasets/tiny/montage.png")
    assert picture.status_code == 200
    assert picture.headers["content-type"] == "image/png"
    assert picture.content.startswith(PNG) and len(picture.content) > 10_000
    assert len(runs) == 1


def test_the_plan_is_lvseg_data_plan_rerun_when_the_folder_changes(http, space, runs):
    folder = space.datasets / "tiny"
    first = http.get("/api/datasets/tiny/plan").json()
    assert first["command"] == f"lvseg data plan {folder} --json"
    by_hand = _lvseg("plan", str(folder))
    assert {"fingerprint": first["fingerprint"], "plan": first["plan"]} == by_hand
    assert first["fingerprint"]["n_patients"] == 2
    assert http.get("/api/datasets/tiny/plan").json() == first
    assert len(runs) == 1
    # A file of the dataset touched: its folder's state is new, so the plan runs again, and
    # the cache keeps only the newest answer for the folder.
    manifest = folder / "phantom.json"
    later = manifest.stat().st_mtime + 10
    os.utime(manifest, (later, later))
    assert http.get("/api/datasets/tiny/plan").json()["plan"] == first["plan"]
    assert len(runs) == 2
    assert len(list((space.root / CACHE_FOLDER).glob("plan-*.json"))) == 1


def test_an_unknown_dataset_is_404(http, runs):
    for path in ("/api/datasets/nope/inspection", "/api/datasets/nope/plan"):
        answer = http.get(path)
        assert answer.status_code == 404
        assert answer.json() == {"error": "no dataset 'nope'"}
    assert http.get("/api/datasets/nope/montage.png").status_code == 404
    assert runs == []


def test_lvseg_s_own_error_is_a_one_line_400(http, space, runs):
    (space.datasets / "empty").mkdir()  # offered (unregistered), and not a dataset
    answer = http.get("/api/datasets/empty/inspection")
    assert answer.status_code == 400
    assert answer.json() == {"error": f"{space.datasets / 'empty'}: folder is empty"}
    assert len(runs) == 1
    assert not list((space.root / CACHE_FOLDER).glob("inspect-*.*.png"))  # no half montage


def test_a_gone_or_outside_folder_is_a_one_line_400(space, tmp_path, runs):
    gone = tmp_path / "gone"
    gone.mkdir()
    allowing = Workspace.open(space.root, [tmp_path])
    assert Datasets(allowing).register(str(gone))[1]
    with JobQueue.open(allowing) as queue:
        http = TestClient(create_workbench_app(allowing, queue), base_url=BASE)
        gone.rmdir()
        answer = http.get("/api/datasets/gone/inspection")
        assert answer.status_code == 400
        assert answer.json() == {"error": f"dataset gone: its folder {gone} is gone"}
    # The same registry, without the allowed root: the folder is no longer inside the roots.
    gone.mkdir()
    with JobQueue.open(space) as queue:
        http = TestClient(create_workbench_app(space, queue), base_url=BASE)
        answer = http.get("/api/datasets/gone/plan")
        assert answer.status_code == 400
        assert "outside the workspace and the allowed folders" in answer.json()["error"]
    assert runs == []


def test_one_run_at_a_time_per_dataset(space):
    """Two requests at once for a folder not yet inspected: the second waits for the first's
    answer instead of running lvseg again."""
    calls = []

    def slow(argv, **kwargs):
        calls.append(argv)
        time.sleep(0.3)
        return subprocess.CompletedProcess(argv, 0, stdout='{"fingerprint": {}, "plan": {}}')

    (space.datasets / "pair").mkdir()
    (space.datasets / "pair" / "a.txt").write_text("a")
    commands = DataCommands(space, Datasets(space), run=slow)
    answers = []
    threads = [
        threading.Thread(target=lambda: answers.append(commands.answer("pair", "plan")))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert answers[0] == answers[1] and answers[0]["plan"] == {}


def test_a_run_over_the_timeout_is_504(space):
    def stuck(argv, **kwargs):
        raise subprocess.TimeoutExpired(argv, kwargs["timeout"])

    (space.datasets / "slow").mkdir()
    (space.datasets / "slow" / "a.txt").write_text("a")
    commands = DataCommands(space, Datasets(space), timeout=5, run=stuck)
    with pytest.raises(HTTPException) as refused:
        commands.answer("slow", "inspect")
    assert (refused.value.status_code, refused.value.detail) == (
        504,
        "lvseg data inspect took over 5 s",
    )
    assert not list((space.root / CACHE_FOLDER).glob("inspect-*.*.png"))
