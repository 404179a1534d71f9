"""The workbench's Runs routes on a real tiny run (copied under the workspace's runs/): every
figure is the run.db's, read here independently with sqlite3; an unknown run is 404, a name
that is not one folder of runs/ (traversal, a symlink out) is 400, both one line of JSON."""

from __future__ import annotations

import json
import shutil
import sqlite3
import statistics

import pytest
from fastapi.testclient import TestClient

from lvseg.workbench.api import create_workbench_app
from lvseg.workbench.runs import wall_seconds

BASE = "http://127.0.0.1:8765"
TOKEN = "a-workbench-token-of-some-length"
RUN = "tiny"


@pytest.fixture
def space(space, tiny_run):
    shutil.copytree(tiny_run, space.runs / RUN)
    return space


@pytest.fixture
def http(space, queue):
    return TestClient(create_workbench_app(space, queue), base_url=BASE)


def stored(run_dir) -> dict:
    """What the run's database holds, read with sqlite3 alone."""
    with sqlite3.connect(f"file:{run_dir / 'run.db'}?mode=ro", uri=True) as db:
        epochs = [
            {"epoch": epoch, **json.loads(metrics)}
            for epoch, metrics in db.execute("SELECT epoch, metrics FROM epochs ORDER BY epoch")
        ]
        meta = {key: json.loads(value) for key, value in db.execute("SELECT key, value FROM meta")}
        rates = [json.loads(m)["images_per_s"] for (m,) in db.execute("SELECT metrics FROM steps")]
        status = db.execute("SELECT time, status FROM status ORDER BY id").fetchall()
        steps = db.execute("SELECT count(*) FROM steps").fetchone()[0]
    return {"epochs": epochs, "meta": meta, "rates": rates, "status": status, "steps": steps}


def test_the_run_list_holds_what_the_run_db_holds(http, space):
    facts = stored(space.runs / RUN)
    epochs = facts["epochs"]
    best = max(epochs, key=lambda row: row["val_dice"])
    (running, _), (ended, final) = facts["status"]  # one run, from start to finish
    answer = http.get("/api/runs")
    assert answer.status_code == 200
    (row,) = answer.json()["runs"]
    assert row["name"] == RUN and row["status"] == final == "finished"
    assert row["model"] == facts["meta"]["model"] == "lvnet"
    assert row["epochs"] == len(epochs) == 2
    assert (row["best_val_dice"], row["best_epoch"]) == (best["val_dice"], best["epoch"])
    assert row["train_loss"] == epochs[-1]["train_loss"]
    assert row["val_dice"] == epochs[-1]["val_dice"]
    assert row["parameters"] == facts["meta"]["parameters"] > 0
    assert row["macs"] == facts["meta"]["macs"] > 0
    assert row["seconds_per_epoch"] == pytest.approx(statistics.fmean(e["seconds"] for e in epochs))
    assert row["slices_per_s"] == pytest.approx(statistics.median(facts["rates"]))
    assert row["wall_s"] == pytest.approx(ended - running)
    assert row["steps"] == facts["steps"] and row["error"] is None


def test_a_run_in_detail_has_its_validation_dice_per_epoch(http, space):
    epochs = stored(space.runs / RUN)["epochs"]
    answer = http.get(f"/api/runs/{RUN}")
    assert answer.status_code == 200
    detail = answer.json()
    assert detail["name"] == RUN and detail["epochs"] == 2
    assert detail["per_epoch"] == [
        {key: row[key] for key in ("epoch", "train_loss", "val_loss", "val_dice")} for row in epochs
    ]


def test_only_run_folders_are_listed_and_a_broken_one_says_why(http, space):
    (space.runs / "job-0002").mkdir()  # a queued job's folder, no run.db yet
    (space.runs / "broken").mkdir()
    (space.runs / "broken" / "run.db").write_bytes(b"not a database at all" * 100)
    rows = {row["name"]: row for row in http.get("/api/runs").json()["runs"]}
    assert list(rows) == ["broken", RUN]
    assert rows["broken"]["status"] == "corrupt" and rows["broken"]["error"]
    answer = http.get("/api/runs/broken")
    assert answer.status_code == 400 and "\n" not in answer.json()["error"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/runs/nope", 404),
        ("/api/runs/job-0002", 404),  # a folder, but not a run
        ("/api/runs/%2e%2e", 400),
        ("/api/runs/%2e", 400),
        ("/api/runs/..%5c..%5cetc", 400),
        ("/api/runs/%00", 400),
        ("/api/runs/..%2f..%2fetc", 404),  # two path components: no such route
    ],
)
def test_a_run_name_is_one_folder_of_runs(http, space, path, status):
    (space.runs / "job-0002").mkdir()
    answer = http.get(path)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error and "\n" not in error and len(error) < 200


def test_a_run_linked_in_from_outside_is_neither_listed_nor_read(http, space, tiny_run):
    (space.runs / "linked").symlink_to(tiny_run, target_is_directory=True)
    assert [row["name"] for row in http.get("/api/runs").json()["runs"]] == [RUN]
    answer = http.get("/api/runs/linked")
    assert answer.status_code == 400
    assert "outside" in answer.json()["error"]


def test_the_runs_need_the_token_when_there_is_one(space, queue):
    http = TestClient(create_workbench_app(space, queue, token=TOKEN), base_url=BASE)
    assert http.get("/api/runs").status_code == 401
    assert http.get(f"/api/runs/{RUN}").status_code == 401
    answer = http.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert [row["name"] for row in answer.json()["runs"]] == [RUN]


def test_wall_time_counts_the_running_spans_only():
    history = [
        {"time": 100.0, "status": "running"},
        {"time": 160.0, "status": "stopped"},  # 60 s, then it lay stopped for an hour
        {"time": 3760.0, "status": "running"},
        {"time": 3790.0, "status": "finished"},  # 30 s more
    ]
    assert wall_seconds(history, updated=3790.0) == 90.0
    # still running (or killed): up to its last sign of life
    assert wall_seconds(history[:3], updated=3800.0) == 100.0
    assert wall_seconds([], updated=None) is None
