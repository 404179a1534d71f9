"""The live monitor inside the engine: what a monitored run writes, that monitoring changes
nothing about training, watch slices, console alerts, and TensorBoard event files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lvseg.config import TrainConfig
from lvseg.data.preprocess import CachedSlices
from lvseg.model.registry import build_model
from lvseg.monitor.probes import HISTOGRAM_EDGES
from lvseg.monitor.watch import WatchSlices, choose_slices
from lvseg.runs.store import RunStore
from lvseg.train import engine
from lvseg.train.data import prepare


def config(data: Path, **monitor) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "seed": 0,
            "data": {"path": str(data)},
            "model": {"options": {"width": 8}},
            "optim": {"epochs": 2, "batch_size": 4},
            "runtime": {"device": "cpu", "deterministic": True},
            "monitor": {"interval": 3, "histogram_every": 2, **monitor},
        }
    )


def test_a_monitored_run_records_layers_histograms_and_watch_slices(tiny_phantom, tmp_path):
    alerts: list[str] = []
    result = engine.train(
        config(tiny_phantom), tmp_path / "run", progress=engine.Progress(on_alert=alerts.append)
    )
    with RunStore.open(tmp_path / "run", readonly=True) as store:
        grad = store.layer_matrix("grad_norm")
        acts = store.layer_matrix("act_zero_fraction")
        histograms = store.histograms()
        frames = store.watch_frames()
        events = store.events(kind="alert")
        first_cam = store.watch_png(1, 0, "cam")
        edges = store.histogram_edges()
    logged = [1] + [s for s in range(3, result.steps + 1, 3)]
    assert grad["steps"] == logged and acts["steps"] == logged
    model = build_model("lvnet", width=8)
    assert grad["layers"][:2] == ["stem.0.0", "stem.0.1"]  # model order
    assert len(grad["layers"]) == sum(1 for m in model.modules() if list(m.parameters(False)))
    assert len(acts["layers"]) == sum(isinstance(m, torch.nn.ReLU) for m in model.modules())
    assert all(v is not None and v > 0 for row in grad["values"] for v in row)
    assert edges == list(HISTOGRAM_EDGES)
    assert sorted({row["step"] for row in histograms}) == logged[::2]
    # 4 watch slices: the input once, then a prediction and a CAM per epoch
    kinds = {(f["epoch"], f["kind"]) for f in frames}
    assert kinds == {(0, "image"), (1, "prediction"), (1, "cam"), (2, "prediction"), (2, "cam")}
    assert len(frames) == 4 * 5
    assert Image.open(io.BytesIO(first_cam)).size == (2 * 64, 2 * 64)  # 64 px crops, 2x
    assert events == [] and alerts == []  # a healthy run is quiet


def test_monitoring_does_not_change_training(tiny_phantom, tmp_path):
    engine.train(config(tiny_phantom), tmp_path / "on")
    engine.train(config(tiny_phantom, enabled=False), tmp_path / "off")
    on = torch.load(tmp_path / "on" / "checkpoints" / "last.pt", weights_only=True)
    off = torch.load(tmp_path / "off" / "checkpoints" / "last.pt", weights_only=True)
    for name, tensor in on["state_dict"].items():
        assert torch.equal(tensor, off["state_dict"][name]), name
    with RunStore.open(tmp_path / "off", readonly=True) as store:
        assert store.layer_stats() == [] and store.watch_frames() == []


def test_watch_slices_span_lv_sizes_and_record_the_cam(tiny_phantom, tmp_path):
    data = prepare(config(tiny_phantom).data, 0, cache_root=tmp_path / "cache")
    val: CachedSlices = data.val
    chosen = choose_slices(val, 4)
    areas = [int(val.crop(i)[1][0].sum()) for i in chosen]
    assert len(chosen) == 4 and areas == sorted(areas) and areas[0] > 0
    every = sorted(int(val.crop(i)[1][0].sum()) for i in range(len(val)))
    assert areas[0] < np.median([a for a in every if a]) < areas[-1]
    assert choose_slices(val, 0) == []

    torch.manual_seed(0)
    model = build_model("lvnet", width=8).eval()
    written: dict[tuple[int, int, str], dict] = {}

    def write(epoch, slot, kind, png, **data):
        assert png.startswith(b"\x89PNG")
        written[(epoch, slot, kind)] = data

    watch = WatchSlices(val, chosen)
    watch.record(model, 3, torch.device("cpu"), write)
    with torch.no_grad():
        logits = model(val.batch(chosen).images).logits
    score = logits[:, 1] - logits[:, 0]
    for slot in range(4):
        cam = written[(3, slot, "cam")]
        assert cam["vmax"] == pytest.approx(float(score[slot].abs().max()))
        assert cam["vmin"] == -cam["vmax"]
        prediction = written[(3, slot, "prediction")]
        assert prediction["predicted_pixels"] == int((score[slot] > 0).sum())
        assert 0.0 <= prediction["dice"] <= 1.0
        assert "predicted_dice" not in prediction  # no quality score given
    # with a quality score, each prediction carries the Dice it predicts from the crop alone
    from lvseg.segment.quality import SIGNALS, QualityModel, crop_signals

    zeros, ones = (0.0,) * len(SIGNALS), (1.0,) * len(SIGNALS)
    weights = tuple(float(name == "uncertainty") for name in SIGNALS)
    scorer = QualityModel(zeros, ones, weights, 0.0, (0.0, 2.0), (0.95, 0.1), (-0.1, 0.1))
    WatchSlices(val, chosen, scorer).record(model, 4, torch.device("cpu"), write)
    spacing = val.plan.target_spacing_mm[0]
    for slot in range(4):
        probability = torch.sigmoid(score[slot]).numpy()
        expected = scorer.predict([crop_signals(probability, spacing).values])[0]
        predicted = written[(4, slot, "prediction")]["predicted_dice"]
        assert predicted == pytest.approx(expected, abs=1e-4) and 0.1 <= predicted <= 0.95


def test_tensorboard_event_files_hold_scalars_histograms_and_pictures(tiny_phantom, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is a dev/extra dependency")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    engine.train(config(tiny_phantom, tensorboard=True), tmp_path / "run")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"step/loss", "step/lr", "epoch/val_dice", "grad_norm/stem.0.0"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("epoch/val_dice")] == [1, 2]
    assert "log10_abs_grad/head" in tags["histograms"]
    assert {"watch/0/image", "watch/0/cam", "watch/3/prediction"} <= set(tags["images"])
