"""``lvseg export``: parity with PyTorch, int8 within its stated drop, ORT and TorchScript, the
model card, and refusals that leave nothing behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from builders import invoke

from lvseg.deploy import export as export_module
from lvseg.deploy.export import INT8_AIM_DROP, PARITY_MIN_DICE, ExportError, export
from lvseg.deploy.predict import predict
from lvseg.runs.checkpoint import load_model
from lvseg.segment import onnx as runtime


@pytest.fixture(scope="module")
def card(exported_tiny) -> dict:
    return json.loads((exported_tiny / "model-card.json").read_text())


def test_export_writes_every_file_and_each_matches_pytorch(exported_tiny, card):
    names = {p.name for p in exported_tiny.iterdir()}
    assert names == {
        "model.onnx", "model.int8.onnx", "model.ort", "model.int8.ort",
        "model-card.md", "model-card.json", ".lvseg-output",
    }  # fmt: skip
    checks = card["export_checks"]
    assert checks["check_slices"] > 0
    for label in ("onnx fp32", "ort fp32"):
        assert checks["parity"][label]["mask_dice"] >= PARITY_MIN_DICE
        assert checks["parity"][label]["max_abs_logit_difference"] < 1e-3
        assert checks["validation_dice"][label] == pytest.approx(
            checks["validation_dice"]["pytorch"], abs=1e-3
        )
    for label, file in checks["files"].items():
        assert (exported_tiny / file["file"]).stat().st_size == file["bytes"], label


def test_int8_runs_smaller_and_within_the_stated_drop(exported_tiny, card):
    checks = card["export_checks"]
    int8 = runtime.open_model(exported_tiny / "model.int8.onnx")
    assert int8.precision == "int8"
    logits = int8.logits(np.zeros((2, 1, 64, 64), np.float32))
    assert logits.shape == (2, 2, 64, 64) and np.isfinite(logits).all()
    assert checks["files"]["onnx int8"]["bytes"] < 0.7 * checks["files"]["onnx fp32"]["bytes"]
    drop = checks["validation_dice"]["pytorch"] - checks["validation_dice"]["onnx int8"]
    assert drop <= INT8_AIM_DROP
    assert checks["calibration_slices"] > 0


def test_onnx_has_dynamic_batch_and_size_and_carries_the_plan(exported_tiny, tiny_run):
    loaded = load_model(tiny_run)
    for name in ("model.onnx", "model.ort"):
        exported = runtime.open_model(exported_tiny / name, threads=1)
        assert exported.plan == loaded.plan
        assert exported.model_name == "lvnet" and exported.precision == "fp32"
        images = np.random.default_rng(0).standard_normal((3, 1, 48, 80)).astype(np.float32)
        with torch.no_grad():
            expected = loaded.model(torch.from_numpy(images)).logits.numpy()
        np.testing.assert_allclose(exported.logits(images), expected, atol=1e-4)


def test_model_card_says_what_the_model_is_and_is_not(exported_tiny, card):
    text = (exported_tiny / "model-card.md").read_text()
    assert "Not for clinical use" in text
    assert card["model"]["parameters"] == sum(
        p.numel() for p in load_model(card["model"]["checkpoint"]).model.parameters()
    )
    assert card["preprocessing"]["crop_size_px"] == card["preprocessing"]["plan"]["crop_size"]
    spacing = card["preprocessing"]["target_spacing_mm"]  # exact in the JSON, 4 digits in text
    assert f"- spacing: {spacing[0]:.4g} x {spacing[1]:.4g} mm\n" in text
    assert card["training"]["train_patients"] == 3 and card["training"]["val_patients"] == 1
    for label in card["export_checks"]["files"]:
        assert f"| {label} |" in text
    assert "NOT FOR CLINICAL USE" in card["intended_use"]


def test_a_tta_export_says_so_in_its_file_and_card_and_predict_follows_it(
    tmp_path, tiny_run, tiny_phantom
):
    found = export(tiny_run, tmp_path / "tta", tta=True)
    checks = found.export_checks
    assert found.model.tta is True and checks.tta is True
    assert 0 <= checks.validation_dice["pytorch tta"] <= 1
    # 8 network runs per slice: slower than one (not timed exactly: a benchmark's job)
    assert checks.latency_ms_1_thread["pytorch tta"] > checks.latency_ms_1_thread["pytorch"]
    text = (tmp_path / "tta" / "model-card.md").read_text()
    assert "| pytorch + TTA (8 views) |" in text and "`--no-tta` turns it off" in text
    assert runtime.open_model(tmp_path / "tta" / "model.onnx").tta is True
    study = sorted((tiny_phantom / "dicoms").iterdir())[0]
    on = predict(tmp_path / "tta", study, tmp_path / "on")
    off = predict(tmp_path / "tta", study, tmp_path / "off", tta=False)
    assert on.studies[0].model.tta is True
    assert off.studies[0].model.tta is False


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_export_traces_the_model_with_its_plan(tmp_path, tiny_run):
    found = export(tiny_run, tmp_path / "ts", format="torchscript")
    path = tmp_path / "ts" / "model.torchscript.pt"
    extra = {"lvseg.json": ""}
    traced = torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra["lvseg.json"])["plan"] == json.dumps(
        load_model(tiny_run).plan.to_dict(), sort_keys=True
    )
    image = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        expected = load_model(tiny_run).model(image).logits
        torch.testing.assert_close(traced(image), expected, atol=1e-5, rtol=1e-4)
    assert found.export_checks.parity["torchscript"]["mask_dice"] == 1.0


def test_an_export_whose_masks_differ_is_refused_and_leaves_nothing(
    tmp_path, tiny_run, monkeypatch
):
    class Flipped(export_module.TorchNetwork):
        def logits(self, images):  # a "reference" that disagrees with the ONNX graph
            return -super().logits(images)

    monkeypatch.setattr(export_module, "TorchNetwork", Flipped)
    with pytest.raises(ExportError, match="masks differ from PyTorch's"):
        export(tiny_run, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out*"))


def test_command_line_refusals(tmp_path, tiny_run, exported_tiny):
    result = invoke(
        "export", tiny_run, "--out", tmp_path / "x", "--format", "torchscript", "--int8"
    )
    assert result.exit_code == 2 and "--int8 applies to the onnx and ort formats" in result.output
    assert not (tmp_path / "x").exists()
    result = invoke("export", exported_tiny / "model.onnx", "--out", tmp_path / "y")
    assert result.exit_code == 2 and "this command takes a training run" in result.output
    result = invoke("export", tiny_run, "--out", exported_tiny)
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (exported_tiny / "model.onnx").is_file()


def test_the_command_prints_the_checks(tmp_path, tiny_run):
    result = invoke("export", tiny_run, "--out", tmp_path / "cli")
    assert result.exit_code == 0, result.output
    assert "onnx fp32: model.onnx" in result.output
    assert "mask Dice vs PyTorch 1.0000" in result.output
    assert "model card:" in result.output


def test_check_slices_never_calibrate_on_kept_out_patients_and_say_when_optimistic(tiny_phantom):
    from types import SimpleNamespace

    from lvseg.config import TrainConfig
    from lvseg.data.load import labelled_dataset
    from lvseg.data.splits import Split
    from lvseg.deploy.export import check_slices

    a, b, c, d = labelled_dataset(tiny_phantom).patients

    config = TrainConfig().merged({"data": {"path": str(tiny_phantom)}})

    def slices(split):
        checkpoint = SimpleNamespace(
            train_config=config, train_data=config.data.path, split=Split.from_dict(split)
        )
        loaded = SimpleNamespace(checkpoint=checkpoint)
        calibrate, checks, how = check_slices(loaded, None)
        return {r.patient_id for r in calibrate}, {r.patient_id for r in checks}, how

    assert slices({"train": [a, b], "val": [c], "test": [d]})[:2] == ({a, b}, {c})
    calibrate, checks, how = slices({"train": [a, b], "val": [], "test": []})
    assert (calibrate, checks) == ({a, b}, {c, d}) and "did not train on" in how
    calibrate, checks, how = slices({"train": [a, b, c, d], "val": []})
    assert not calibrate & checks and "optimistic" in how


def test_the_card_quotes_the_runs_evaluation_of_that_checkpoint(tmp_path, tiny_run, tiny_phantom):
    import shutil

    from lvseg.evaluate.run import evaluate

    run = shutil.copytree(tiny_run, tmp_path / "run")
    scored = evaluate(run, tiny_phantom)  # into RUN/evaluation, where the card looks
    found = export(run, tmp_path / "out")
    quoted = found.evaluation
    assert quoted["file"] == str(run / "evaluation" / "metrics.json")
    assert quoted["dice_mean"] == scored.summary.dice_mean
    assert quoted["slices"] == scored.summary.slices and quoted["crop"] == "located"
    card_text = (tmp_path / "out" / "model-card.md").read_text()
    assert "| slices | patients | Dice mean |" in card_text and "Crop: located." in card_text


def test_the_card_quotes_an_evaluation_given_by_name_and_only_of_that_checkpoint(
    tmp_path, tiny_run, tiny_phantom
):
    from lvseg.evaluate.run import evaluate

    scored = evaluate(tiny_run, tiny_phantom, out=tmp_path / "eval", limit=4)  # not RUN/evaluation
    result = invoke(
        "export", tiny_run, "--out", tmp_path / "out", "--evaluation", tmp_path / "eval"
    )
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "out" / "model-card.json").read_text())
    assert card["evaluation"]["file"] == str(tmp_path / "eval" / "metrics.json")
    assert card["evaluation"]["dice_mean"] == scored.summary.dice_mean
    assert card["evaluation"]["slices"] == 4
    # another checkpoint's evaluation, no evaluation, an ensemble: one line, nothing written
    exported = load_model(tiny_run).source
    other = next(p for p in (tiny_run / "checkpoints").glob("*.pt") if p.name != exported.name)
    evaluate(other, tiny_phantom, out=tmp_path / "other", limit=2)
    (tmp_path / "empty").mkdir()
    for args, message in (
        ([tiny_run, "--evaluation", tmp_path / "other"], f"it scored {other}, not the model"),
        ([tiny_run, "--evaluation", tmp_path / "empty"], "no evaluation here"),
        ([tiny_run, other, "--evaluation", tmp_path / "eval"], "an ensemble has none"),
    ):
        result = invoke("export", *args, "--out", tmp_path / "refused")
        assert result.exit_code == 2 and message in result.output, result.output
        assert not (tmp_path / "refused").exists()


def test_an_ensemble_exports_as_one_graph_that_averages_its_members(tmp_path, tiny_run):
    from dataclasses import replace

    from lvseg.deploy.ensemble import Ensemble, merged_split
    from lvseg.runs.checkpoint import load_checkpoint

    single = load_model(tiny_run)
    # A second member that differs: the same network with its LV scores shifted by a constant.
    other = load_checkpoint(tiny_run / "checkpoints" / "last.pt")
    state = dict(other.state_dict)
    bias = next(k for k in state if k.endswith("head.bias"))
    state[bias] = state[bias] + torch.tensor([0.0, 1.0])
    shifted = replace(other, state_dict=state)
    shifted.save(tmp_path / "shifted.pt")

    result = invoke(
        "export", tiny_run, tmp_path / "shifted.pt", "--out", tmp_path / "ensemble"
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "ensemble" / "model-card.json").read_text())
    assert card["model"]["name"] == "ensemble of 2 lvnet"
    assert card["model"]["parameters"] == 2 * single.parameters
    assert len(card["model"]["members"]) == 2 and card["evaluation"] is None
    assert (
        "An ensemble: the mean class probability of 2 models"
        in (tmp_path / "ensemble" / "model-card.md").read_text()
    )

    exported = runtime.open_model(tmp_path / "ensemble" / "model.onnx")
    images = np.random.default_rng(1).standard_normal((2, 1, 64, 64)).astype(np.float32)
    members = [single.model, load_model(tmp_path / "shifted.pt").model]
    with torch.no_grad():
        expected = torch.stack(
            [m(torch.from_numpy(images)).logits.softmax(1) for m in members]
        ).mean(0)
        ours = Ensemble(members)(torch.from_numpy(images)).logits.softmax(1)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(
        torch.from_numpy(exported.logits(images)).softmax(1).numpy(), expected.numpy(), atol=1e-4
    )
    # The split: trained on what any member trained on, held out only what all held out.
    split = single.checkpoint.split
    assert merged_split([split, split]) == split
    assert exported.split == split


def test_members_that_prepare_inputs_differently_are_refused(tmp_path, tiny_run):
    from dataclasses import replace

    from lvseg.runs.checkpoint import load_checkpoint

    saved = load_checkpoint(tiny_run / "checkpoints" / "last.pt")
    replace(saved, plan=replace(saved.plan, crop_size=saved.plan.crop_size + 16)).save(
        tmp_path / "wider.pt"
    )
    result = invoke("export", tiny_run, tmp_path / "wider.pt", "--out", tmp_path / "bad")
    assert result.exit_code == 2
    assert "an ensemble's members must share the inference plan" in result.output
    assert not (tmp_path / "bad").exists()
