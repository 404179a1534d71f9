"""The run store: every table round-trips, resume forgets the lost part, readers see the writer."""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from lvseg.errors import InvalidInputError
from lvseg.runs import SCHEMA_VERSION, RunStore, list_runs
from lvseg.runs.report import format_run_detail, format_runs_table

CONFIG = {"model": {"name": "lvnet", "width": 16}, "lr": 0.001, "epochs": 3, "tags": ["a", "b"]}


def make_run(run_dir: Path, epochs: int = 3, steps_per_epoch: int = 4) -> RunStore:
    """A small finished-looking run: steps, epochs, checkpoints and an event."""
    store = RunStore.create(run_dir, CONFIG, meta={"model": "lvnet", "device": "cpu"})
    step = 0
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            store.log_step(step, epoch, loss=1.0 / (step + 1), lr=0.001)
            step += 1
        store.log_epoch(epoch, train_loss=0.5, val_loss=0.6, val_dice=0.5 + 0.1 * epoch)
        store.add_checkpoint("last", "checkpoints/last.pt", epoch, step - 1, {}, 1000, 4000)
    return store


def test_create_writes_config_meta_status_and_open_reads_them(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "first"
    with RunStore.create(run_dir, CONFIG, meta={"model": "lvnet", "device": "cpu"}) as store:
        assert store.status == "running"
        assert store.config == CONFIG
    assert json.loads((run_dir / "config.json").read_text()) == CONFIG
    assert (run_dir / "checkpoints").is_dir()
    assert not list(run_dir.glob(".*.tmp"))

    with RunStore.open(run_dir) as store:
        meta = store.meta
        assert meta["model"] == "lvnet" and meta["device"] == "cpu"
        assert {"created", "lvseg_version", "host"} <= meta.keys()
        store.set_meta(parameters=91_000, device="cuda:0")
        store.set_status("stopped", "early stopping at epoch 7")
    with RunStore.open(run_dir, readonly=True) as store:
        assert store.meta["parameters"] == 91_000 and store.meta["device"] == "cuda:0"
        assert (store.status, store.status_message) == ("stopped", "early stopping at epoch 7")
        assert [row["status"] for row in store.status_history()] == ["running", "stopped"]
        with pytest.raises(PermissionError):
            store.log_step(0, 0, loss=1.0)
    with pytest.raises(ValueError, match="status"):
        RunStore.open(run_dir).set_status("exploded")


def test_steps_epochs_events_round_trip(tmp_path: Path) -> None:
    with RunStore.create(tmp_path / "run", CONFIG) as store:
        store.log_step(0, 0, loss=0.9, lr=0.01, grad_norm=2.5, skipped=0)
        store.log_step(1, 0, loss=0.8, lr=0.01, grad_norm=None, skipped=1)
        store.log_step(2, 1, loss=0.7)
        store.log_epoch(0, train_loss=0.85, val_loss=0.9, val_dice=0.41, seconds=12.5)
        first = store.event("nonfinite_step", "loss was nan", step=1, epoch=0, loss="nan", n=1)
        store.event("early_stop", "no improvement for 5 epochs", epoch=0, patience=5)

        steps = store.steps()
        assert [row["step"] for row in steps] == [0, 1, 2]
        assert steps[1] == {**steps[1], "epoch": 0, "loss": 0.8, "grad_norm": None, "skipped": 1}
        assert isinstance(steps[0]["time"], float)
        assert store.steps(names=["loss"], since_step=0) == [
            {"step": 1, "epoch": 0, "time": steps[1]["time"], "loss": 0.8},
            {"step": 2, "epoch": 1, "time": steps[2]["time"], "loss": 0.7},
        ]
        assert store.steps(names=["lr"], since_step=1)[0].keys() == {"step", "epoch", "time"}
        assert store.last_step() == 2

        (epoch,) = store.epochs()
        assert epoch["epoch"] == 0 and epoch["val_dice"] == 0.41 and epoch["seconds"] == 12.5

        events = store.events()
        assert [e["kind"] for e in events] == ["nonfinite_step", "early_stop"]
        assert events[0]["data"] == {"loss": "nan", "n": 1} and events[0]["step"] == 1
        assert events[1]["step"] is None and events[1]["epoch"] == 0
        assert [e["kind"] for e in store.events(since_id=first)] == ["early_stop"]
        assert store.events(kind="nonfinite_step")[0]["id"] == first

        with pytest.raises(ValueError, match="reserved"):
            store.log_step(3, 1, time=1.0)
        with pytest.raises(TypeError):
            store.log_step(3, 1, loss="low")


def test_non_finite_values_round_trip(tmp_path: Path) -> None:
    values = {"nan": math.nan, "inf": math.inf, "ninf": -math.inf}
    with RunStore.create(tmp_path / "run", {}) as store:
        store.log_step(0, 0, **values)
        store.log_epoch(0, **values)
        store.event("nonfinite_step", "bad", step=0, **values)
        store.add_checkpoint("epoch", "checkpoints/e0.pt", 0, 0, values, 10, 40, finite=False)
        store.log_layer_stats(0, [("conv1", name, value) for name, value in values.items()])
    with RunStore.open(tmp_path / "run", readonly=True) as store:
        for row in (
            store.steps()[0],
            store.epochs()[0],
            store.events()[0]["data"],
            store.checkpoints()[0]["metrics"],
            {row["stat"]: row["value"] for row in store.layer_stats()},
        ):
            assert math.isnan(row["nan"])
            assert row["inf"] == math.inf and row["ninf"] == -math.inf
        assert store.checkpoints()[0]["finite"] is False


def test_last_and_best_are_replaced_epoch_checkpoints_accumulate(tmp_path: Path) -> None:
    with RunStore.create(tmp_path / "run", {}) as store:
        assert store.best_checkpoint() is None
        for epoch in range(3):
            step = 10 * epoch + 9
            store.add_checkpoint("last", "checkpoints/last.pt", epoch, step, {}, 100, 400)
            store.add_checkpoint(
                "epoch", f"checkpoints/epoch_{epoch}.pt", epoch, step, {"val_dice": 0.5}, 100, 400
            )
            if epoch != 1:
                store.add_checkpoint(
                    "best", tmp_path / "run/checkpoints/best.pt", epoch, step, {"val_dice": 0.6},
                    100, 400,
                )  # fmt: skip
        store.add_checkpoint("epoch", "checkpoints/epoch_2.pt", 2, 29, {"val_dice": 0.7}, 100, 400)

        (last,) = store.checkpoints("last")
        assert (last["epoch"], last["step"], last["path"]) == (2, 29, "checkpoints/last.pt")
        best = store.best_checkpoint()
        assert best is not None
        assert (best["epoch"], best["path"], best["metrics"]) == (
            2,
            "checkpoints/best.pt",
            {"val_dice": 0.6},
        )
        epochs = store.checkpoints("epoch")
        assert [row["epoch"] for row in epochs] == [0, 1, 2]
        assert epochs[-1]["metrics"] == {"val_dice": 0.7}
        assert len(store.checkpoints()) == 5
        assert {"parameters", "size_bytes", "finite", "time"} <= last.keys()
        with pytest.raises(ValueError, match="kind"):
            store.add_checkpoint("newest", "checkpoints/x.pt", 0, 0, {}, 1, 1)
        with pytest.raises(ValueError, match="inside"):
            store.add_checkpoint("epoch", tmp_path / "elsewhere.pt", 0, 0, {}, 1, 1)


def test_layer_stats_batch_and_filters(tmp_path: Path) -> None:
    layers = [f"encoder.block{i}.conv" for i in range(50)]
    stats = ["grad_norm", "weight_norm", "act_mean", "act_std"]
    with RunStore.create(tmp_path / "run", {}) as store:
        for step in range(0, 100, 10):
            rows = [
                (layer, stat, step + i * 0.01) for i, layer in enumerate(layers) for stat in stats
            ]
            store.log_layer_stats(step, rows)
        store.log_layer_stats(90, [(layers[0], "grad_norm", -1.0)])  # replaces, does not add
    with RunStore.open(tmp_path / "run", readonly=True) as store:
        assert len(store.layer_stats()) == 10 * 200
        recent = store.layer_stats(since_step=70)
        assert len(recent) == 2 * 200 and {row["step"] for row in recent} == {80, 90}
        picked = store.layer_stats(since_step=80, layers=[layers[0]], stats=["grad_norm"])
        assert picked == [{"step": 90, "layer": layers[0], "stat": "grad_norm", "value": -1.0}]
        assert len(store.layer_stats(stats=["act_mean", "act_std"])) == 10 * 100
        assert store.layer_stats(layers=["no.such.layer"]) == []


PNG = b"\x89PNG\r\n\x1a\n" + b"rest of a picture"


def test_layer_matrix_is_the_heatmap_of_one_statistic(tmp_path: Path) -> None:
    with make_run(tmp_path / "run", epochs=1, steps_per_epoch=1) as store:
        store.log_layer_stats(10, [("conv1", "grad_norm", 1.0), ("conv2", "grad_norm", 2.0)])
        store.log_layer_stats(20, [("conv2", "grad_norm", math.nan), ("conv1", "act_mean", 5.0)])
        matrix = store.layer_matrix("grad_norm")
        assert matrix["layers"] == ["conv1", "conv2"] and matrix["steps"] == [10, 20]
        assert matrix["values"][0] == [1.0, 2.0]
        assert matrix["values"][1][0] is None and math.isnan(matrix["values"][1][1])
        assert store.layer_matrix("grad_norm", since_step=10)["steps"] == [20]
        assert store.layer_matrix("no_such_stat") == {"layers": [], "steps": [], "values": []}


def test_histograms_share_fixed_edges_and_watch_pictures_round_trip(tmp_path: Path) -> None:
    with make_run(tmp_path / "run", epochs=1, steps_per_epoch=1) as store:
        assert store.histogram_edges() is None
        store.log_histograms(10, [-1, 0, 1], {"conv1": [3, 4], "conv2": [0, 7]})
        store.log_histograms(20, [-1, 0, 1], {"conv1": [1, 1]})
        with pytest.raises(ValueError, match="cannot change"):
            store.log_histograms(30, [-2, 0, 2], {"conv1": [1, 1]})
        with pytest.raises(ValueError, match="3 counts for 2 bins"):
            store.log_histograms(30, [-1, 0, 1], {"conv1": [1, 1, 1]})
        store.log_watch(1, 0, "cam", PNG, dice=0.5, vmax=2.0)
        with pytest.raises(ValueError, match="PNG"):
            store.log_watch(1, 0, "cam", b"GIF89a")
    with RunStore.open(tmp_path / "run", readonly=True) as store:
        assert store.histogram_edges() == [-1.0, 0.0, 1.0]
        assert store.histograms(layers=["conv1"]) == [
            {"step": 10, "layer": "conv1", "counts": [3.0, 4.0]},
            {"step": 20, "layer": "conv1", "counts": [1.0, 1.0]},
        ]
        assert [row["step"] for row in store.histograms(since_step=10)] == [20]
        (frame,) = store.watch_frames()
        assert (frame["epoch"], frame["slice"], frame["kind"]) == (1, 0, "cam")
        assert frame["data"] == {"dice": 0.5, "vmax": 2.0}
        assert store.watch_png(1, 0, "cam") == PNG and store.watch_png(2, 0, "cam") is None
        assert store.watch_frames(since_epoch=1) == []


def test_truncate_after_forgets_the_lost_part_of_a_killed_run(tmp_path: Path) -> None:
    with make_run(tmp_path / "run", epochs=3, steps_per_epoch=4) as store:  # steps 0..11
        for step in (3, 7, 11):
            store.log_layer_stats(step, [("conv1", "grad_norm", 1.0)])
            store.log_histograms(step, [0.0, 1.0, 2.0], {"conv1": [1, 2]})
        for epoch in (1, 2):
            store.log_watch(epoch, 0, "cam", PNG)
        store.event("alert", "exploding gradients", step=9)
        store.event("note", "no step, epoch 2", epoch=2)
        store.event("note", "timeless")
        store.set_status("failed", "killed")

    with RunStore.open(tmp_path / "run") as store:  # resume from the checkpoint of epoch 1
        removed = store.truncate_after(step=7, epoch=1)
        assert removed == {
            "steps": 4,
            "epochs": 1,
            "layer_stats": 1,
            "histograms": 1,
            "watch": 1,
            "events": 2,
        }
        assert store.last_step() == 7
        assert [row["epoch"] for row in store.epochs()] == [0, 1]
        assert [row["step"] for row in store.layer_stats()] == [3, 7]
        assert [row["step"] for row in store.histograms()] == [3, 7]
        assert [frame["epoch"] for frame in store.watch_frames()] == [1]
        assert [e["message"] for e in store.events() if e["kind"] != "resumed"] == ["timeless"]
        (resumed,) = store.events(kind="resumed")
        assert (resumed["step"], resumed["epoch"]) == (7, 1)
        assert resumed["data"]["removed"] == removed
        assert store.status == "running"
        # the resumed run logs the same steps again
        store.log_step(8, 2, loss=0.1)
        later = store.event("note", "after resume", step=8)
        assert later > resumed["id"]
        assert [row["step"] for row in store.steps(since_step=6)] == [7, 8]


READER = textwrap.dedent(
    """
    import json, sys
    from lvseg.runs import RunStore
    store = RunStore.open(sys.argv[1], readonly=True)
    for line in sys.stdin:
        steps = store.steps(since_step=int(line))
        heavy = ["torch" in sys.modules, "numpy" in sys.modules]
        print(json.dumps([len(steps), store.status, *heavy]), flush=True)
    store.close()
    """
)


def test_readonly_reader_in_another_process_sees_an_open_writer(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    writer = RunStore.create(run_dir, {})
    try:
        for step in range(5):
            writer.log_step(step, 0, loss=1.0)
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, str(run_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert reader.stdin is not None and reader.stdout is not None

            def ask(since: int) -> list:
                reader.stdin.write(f"{since}\n")
                reader.stdin.flush()
                return json.loads(reader.stdout.readline())

            assert ask(-1) == [5, "running", False, False]  # no torch, no numpy in a reader
            for step in range(5, 12):
                writer.log_step(step, 1, loss=0.5)
            writer.set_status("finished")
            assert ask(4) == [7, "finished", False, False]
            reader.stdin.close()
            assert reader.wait(timeout=10) == 0
        finally:
            if reader.poll() is None:
                reader.kill()
    finally:
        writer.close()


def test_create_refuses_an_existing_run(tmp_path: Path) -> None:
    RunStore.create(tmp_path / "run", {"a": 1}).close()
    with pytest.raises(InvalidInputError, match="run.db") as error:
        RunStore.create(tmp_path / "run", {"a": 2})
    assert "resume" in error.value.reason
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == {"a": 1}


def test_open_names_the_path_and_the_problem(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no such run folder"):
        RunStore.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="not an lvseg run: no run.db"):
        RunStore.open(tmp_path / "empty")

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "run.db").write_bytes(bytes(range(256)) * 8)
    for readonly in (False, True):
        with pytest.raises(InvalidInputError, match="corrupt run database") as error:
            RunStore.open(garbage, readonly=readonly)
        assert error.value.path == str(garbage / "run.db")

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    sqlite3.connect(foreign / "run.db").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(InvalidInputError, match="corrupt run database"):
        RunStore.open(foreign)

    RunStore.create(tmp_path / "future", {}).close()
    connection = sqlite3.connect(tmp_path / "future" / "run.db")
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(InvalidInputError, match="newer"):
        RunStore.open(tmp_path / "future", readonly=True)
    connection = sqlite3.connect(tmp_path / "future" / "run.db")
    connection.execute("PRAGMA user_version = 1")
    connection.close()
    with pytest.raises(InvalidInputError, match="older than this lvseg"):
        RunStore.open(tmp_path / "future", readonly=True)


def test_list_runs_and_reports(tmp_path: Path) -> None:
    make_run(tmp_path / "b-finished", epochs=3).close()
    with RunStore.open(tmp_path / "b-finished") as store:
        store.set_status("finished")
    (tmp_path / "b-finished" / "selected.json").write_text("{}")
    RunStore.create(tmp_path / "a-new", {"model": "unet"}).close()
    (tmp_path / "c-corrupt").mkdir()
    (tmp_path / "c-corrupt" / "run.db").write_bytes(b"not a database at all" * 20)
    (tmp_path / "d-not-a-run").mkdir()
    (tmp_path / "d-not-a-run" / "notes.txt").write_text("hello")
    (tmp_path / "stray.txt").write_text("")

    runs = list_runs(tmp_path)
    assert [run.name for run in runs] == ["a-new", "b-finished", "c-corrupt"]
    new, finished, corrupt = runs
    assert (new.status, new.model, new.epochs, new.steps, new.best_val_dice) == (
        "running",
        "unet",  # from the config when meta has no model
        0,
        0,
        None,
    )
    assert new.created is not None and new.updated is not None and not new.selected
    assert (finished.status, finished.model, finished.epochs, finished.steps) == (
        "finished",
        "lvnet",
        3,
        12,
    )
    assert finished.best_val_dice == pytest.approx(0.7) and finished.best_epoch == 2
    assert finished.last_step == 11 and finished.selected
    assert corrupt.status == "corrupt" and "run.db" in (corrupt.error or "")
    assert [run.name for run in list_runs(tmp_path / "b-finished")] == ["b-finished"]
    with pytest.raises(InvalidInputError):
        list_runs(tmp_path / "nowhere")

    console = Console(width=160, record=True, color_system=None)
    console.print(format_runs_table(runs))
    with RunStore.open(tmp_path / "b-finished", readonly=True) as store:
        store_events = len(store.events())
        for renderable in format_run_detail(store):
            console.print(renderable)
    text = console.export_text()
    assert "b-finished" in text and "corrupt" in text and "0.7000 @2" in text
    assert "checkpoints/last.pt" in text and "val_dice" in text and store_events == 0


def test_many_steps_read_since_a_step(tmp_path: Path) -> None:
    with RunStore.create(tmp_path / "run", {}) as store:
        for step in range(20_000):
            store.log_step(step, step // 1000, loss=1.0, lr=0.001, grad_norm=0.5)
        assert len(store.steps()) == 20_000
        assert len(store.steps(since_step=19_899)) == 100
        assert store.steps(names=["loss"], since_step=19_998) == [
            {"step": 19_999, "epoch": 19, "time": store.steps()[-1]["time"], "loss": 1.0}
        ]
        assert list_runs(tmp_path)[0].steps == 20_000


def test_a_running_run_whose_writer_is_gone_reads_interrupted(tmp_path: Path) -> None:
    with make_run(tmp_path / "run", epochs=1) as store:
        assert store.writer_alive() is True and store.live_status == "running"
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        store.set_meta(pid=gone.pid)  # the trainer that wrote the run was killed
        assert store.writer_alive() is False
        assert store.live_status == "interrupted" and store.status == "running"
        assert store.summary().status == "interrupted"
        store.set_meta(host="another-machine")
        assert store.writer_alive() is None and store.live_status == "running"
        store.set_meta(host=socket.gethostname(), pid=os.getpid())
        store.set_status("failed", "diverged")
        assert store.live_status == "failed"  # only "running" is ever reinterpreted
