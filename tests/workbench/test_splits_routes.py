"""The phantom and split jobs run for real (queue + runner, lvseg data phantom / split as
subprocesses) on a 2-patient phantom: the phantom lands in datasets/ and is offered in the
dataset list once done; the splits land in splits/ and the split routes show them with the
dataset they came from. Then the routes' refusals: traversal, symlinks, other names."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from lvseg.workbench.api import create_workbench_app
from lvseg.workbench.datasets import Datasets
from lvseg.workbench.queue import JobQueue
from lvseg.workbench.runner import Runner
from lvseg.workbench.workspace import Workspace

BASE = "http://127.0.0.1:8765"
PATIENTS = {"PH-N-01", "PH-HF-I-02"}  # the 2-patient phantom of seed 0


def _run_to_end(queue: JobQueue, job_id: int, timeout: float = 120.0) -> None:
    with Runner(queue) as runner:
        deadline = time.monotonic() + timeout
        while queue.get(job_id).state in ("queued", "running"):
            assert time.monotonic() < deadline, "timed out"
            runner.tick()
            time.sleep(0.05)
    job = queue.get(job_id)
    assert job.state == "done", job.log_path.read_text()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A workspace where a data-phantom job (1) and two data-split jobs (2: val 0.5; 3: 2
    folds) ran, and its API client."""
    space = Workspace.open(tmp_path_factory.mktemp("splits") / "ws")
    with JobQueue.open(space) as queue:
        http = TestClient(create_workbench_app(space, queue), base_url=BASE)
        phantom = queue.submit("data-phantom", {"patients": 2, "seed": 0})
        # Its folder, half made while the job is queued, is not offered yet.
        phantom.run_dir.mkdir()
        assert http.get("/api/datasets").json() == {"datasets": []}
        phantom.run_dir.rmdir()
        _run_to_end(queue, phantom.id)
        split = queue.submit("data-split", {"data": "datasets/phantom-0001", "val": 0.5})
        _run_to_end(queue, split.id)
        folds = queue.submit("data-split", {"data": "datasets/phantom-0001", "folds": 2})
        _run_to_end(queue, folds.id)
        yield space, http


def test_the_phantom_job_s_dataset_is_offered(made):
    space, http = made
    folder = space.datasets / "phantom-0001"
    assert json.loads((folder / "phantom.json").read_text())  # lvseg data phantom wrote it
    listed = http.get("/api/datasets").json()["datasets"]
    assert [(d["name"], d["path"], d["registered"]) for d in listed] == [
        ("phantom-0001", str(folder), False)
    ]
    # Registered by its path, it is the same dataset, now registered (and not offered twice).
    Datasets(space).register("datasets/phantom-0001")
    listed = http.get("/api/datasets").json()["datasets"]
    assert [(d["name"], d["registered"]) for d in listed] == [("phantom-0001", True)]


def test_the_splits_are_listed_with_their_dataset(made):
    space, http = made
    assert sorted(p.name for p in space.splits.iterdir()) == [
        "split-0002.json",
        "split-0003_0.json",
        "split-0003_1.json",
    ]
    splits = http.get("/api/splits").json()["splits"]
    assert [(s["file"], s["job"], s["fold"]) for s in splits] == [
        ("split-0003_0.json", 3, 0),
        ("split-0003_1.json", 3, 1),
        ("split-0002.json", 2, None),
    ]
    folder = str(space.datasets / "phantom-0001")
    assert {(s["dataset"], s["data"]) for s in splits} == {("phantom-0001", folder)}
    assert splits[2]["options"] == {"val": 0.5}
    assert splits[0]["options"] == {"folds": 2}
    assert splits[2]["counts"] == {"train": 1, "val": 1, "test": 0}
    assert [s["counts"] for s in splits[:2]] == [{"train": 1, "val": 1, "test": 0}] * 2


def test_a_split_s_patients(made):
    space, http = made
    answer = http.get("/api/splits/split-0002.json")
    assert answer.status_code == 200
    split = answer.json()
    assert split["file"] == "split-0002.json" and split["dataset"] == "phantom-0001"
    assert set(split["train"]) | set(split["val"]) == PATIENTS and split["test"] == []
    assert split["counts"] == {"train": 1, "val": 1, "test": 0}
    on_disk = json.loads((space.splits / "split-0002.json").read_text())
    assert {part: split[part] for part in ("train", "val", "test")} == on_disk
    # The two folds validate on different patients.
    vals = [http.get(f"/api/splits/split-0003_{k}.json").json()["val"] for k in (0, 1)]
    assert {vals[0][0], vals[1][0]} == PATIENTS


def test_the_split_routes_refuse_other_files(made, tmp_path):
    space, http = made
    outside = tmp_path / "secret.json"
    outside.write_text('{"train": ["x"]}')
    (space.splits / "split-0009.json").symlink_to(outside)
    (space.splits / "split-0010.json").write_text("not json")
    try:
        for name in ("..%2Fdatasets.json", "..%2F..%2Fsecret.json", "datasets.json", "x.json"):
            answer = http.get(f"/api/splits/{name}")
            assert answer.status_code in (400, 404), name
            assert "train" not in answer.text
        assert http.get("/api/splits/split-0009.json").status_code == 404  # a symlink out
        assert http.get("/api/splits/split-0099.json").json() == {
            "error": "no split split-0099.json"
        }
        broken = http.get("/api/splits/split-0010.json")
        assert broken.status_code == 400 and "not a readable split" in broken.json()["error"]
        listed = {s["file"]: s for s in http.get("/api/splits").json()["splits"]}
        assert "split-0009.json" not in listed
        assert listed["split-0010.json"]["counts"] is None
        assert listed["split-0010.json"]["dataset"] is None  # no job 10
    finally:
        (space.splits / "split-0009.json").unlink()
        (space.splits / "split-0010.json").unlink()
