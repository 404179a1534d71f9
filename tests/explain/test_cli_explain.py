"""``lvseg explain`` end to end on a tiny trained LVNet: panels, index, metrics, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from builders import invoke, page_links
from PIL import Image

from lvseg.explain.cam import conv_layer_names
from lvseg.model.registry import build_model
from lvseg.runs.checkpoint import load_checkpoint, load_model, resolve_model_path


@pytest.fixture(scope="module")
def run_dir(tiny_run) -> Path:
    return tiny_run


def checkpoint_of(run_dir: Path, folder: Path, name: str, **config) -> Path:
    """The run's checkpoint (plan and all) with another, freshly initialised network."""
    saved = load_checkpoint(resolve_model_path(run_dir))
    saved.model_name, saved.model_config = name, config
    saved.state_dict = build_model(name, **config).state_dict()
    path = folder / f"{name}-{'-'.join(f'{k}{v}' for k, v in config.items())}.pt"
    saved.save(path)
    return path


def index_links(out: Path) -> list[str]:
    return page_links((out / "index.html").read_text(encoding="utf-8"))


def test_one_panel_per_slice_and_an_index_of_existing_files(run_dir, tiny_phantom, tmp_path):
    first_layer = conv_layer_names(load_model(run_dir).model)[0]
    out = tmp_path / "out"
    result = invoke(
        "explain", run_dir, tiny_phantom, "--out", out, "--limit", 5, "--gallery", first_layer
    )
    assert result.exit_code == 0, result.output
    assert "cam@head" in result.output and "gradcam@" in result.output  # both by default

    panels = sorted((out / "panels").glob("*.png"))
    assert len(panels) == 5
    assert all(Image.open(p).format == "PNG" for p in panels)
    links = index_links(out)
    assert {out / link for link in links} >= set(panels)
    for link in links:
        assert not Path(link).is_absolute() and ":" not in link and ".." not in link
        assert (out / link).is_file(), link
    assert not (out / "metrics.json").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_metrics_writes_per_slice_measures_means_and_the_sanity_check(
    run_dir, tiny_phantom, tmp_path
):
    out = tmp_path / "out"
    result = invoke("explain", run_dir, tiny_phantom, "--out", out, "--limit", 3, "--metrics")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "metrics.json").read_text())
    labels = [e["label"] for e in report["explanations"]]
    assert labels[0] == "cam@head" and labels[1].startswith("gradcam@")

    rows = report["slices"]
    assert len(rows) == 3 and len(list((out / "panels").glob("*.png"))) == 3
    measured = [row for row in rows if row["reference_lv_pixels"]]
    assert measured, "the phantom's first slices have a reference LV"
    for row in rows:
        assert (out / row["panel"]).is_file()
        assert 0.0 <= row["dice"] <= 1.0
    for row in measured:
        assert set(row["explanations"]) == set(labels)
        for values in row["explanations"].values():
            assert 0.0 <= values["energy_inside"] <= 1.0
            assert isinstance(values["pointing_hit"], bool)
            for name in ("deletion", "insertion", "random_deletion", "random_insertion"):
                assert 0.0 <= values[f"{name}_auc"] <= 1.0

    means = report["means"]
    assert means["slices"] == 3 and means["slices_with_reference"] == 3
    assert means["dice"] == pytest.approx(np.mean([row["dice"] for row in rows]))
    for label in labels:
        energy = [row["explanations"][label]["energy_inside"] for row in measured]
        assert means["explanations"][label]["energy_inside"] == pytest.approx(np.mean(energy))
        assert "deletion_gain" in means["explanations"][label]
        curves = report["mean_curves"][label]
        assert curves["fractions"][0] == 0.0 and curves["fractions"][-1] == 1.0
        sanity = report["sanity"][label]
        assert sanity["layers"][0] == "(none)" and sanity["spearman"][0] == 1.0
        assert len(sanity["layers"]) == len(sanity["ssim"]) > 1

    page = (out / "index.html").read_text(encoding="utf-8")
    assert "Summary" in page and "energy in LV" in page and "deletion AUC" in page
    assert "metrics.json" in index_links(out)
    assert "energy in LV" in result.output  # the means table on the terminal


def test_an_existing_out_is_kept_unless_overwrite(run_dir, tiny_phantom, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    refused = invoke("explain", run_dir, tiny_phantom, "--out", out, "--limit", 1)
    assert refused.exit_code == 2
    assert len(refused.stderr.strip().splitlines()) == 1 and "--overwrite" in refused.stderr
    assert (out / "old.txt").read_text() == "keep me"

    # --overwrite replaces only what lvseg wrote: not a folder of the user's...
    mine = invoke("explain", run_dir, tiny_phantom, "--out", out, "--limit", 1, "--overwrite")
    assert mine.exit_code == 2 and "lvseg did not write it" in mine.stderr
    assert (out / "old.txt").read_text() == "keep me"
    # ...but its own output
    ours = tmp_path / "ours"
    assert invoke("explain", run_dir, tiny_phantom, "--out", ours, "--limit", 1).exit_code == 0
    (ours / "old.txt").write_text("stale")
    replaced = invoke("explain", run_dir, tiny_phantom, "--out", ours, "--limit", 1, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert not (ours / "old.txt").exists() and (ours / "index.html").is_file()


BAD_INPUT = {
    "unknown layer": (["--layers", "nope"], "unknown layer 'nope'; the model's layers are"),
    "unknown gallery layer": (["--gallery", "nope"], "unknown gallery layer 'nope'"),
    "layers without gradcam": (["-m", "cam", "--layers", "head"], "add --method gradcam"),
    "cam without a cam head": (["-m", "cam"], "no global-average-pooling CAM head"),
    "wrong input shape": ([], "the model takes 2 input channels"),
    "unreadable model": ([], "not a readable lvseg checkpoint"),
    "missing model": ([], "no such model"),
    "onnx model": ([], "an exported model: this command takes a training run"),
    "input with no slices": ([], "folder is empty"),
    "missing input": ([], "no such file or folder"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(case, run_dir, tiny_phantom, tmp_path):
    options, message = BAD_INPUT[case]
    model, data = run_dir, tiny_phantom
    if case == "cam without a cam head":
        model = checkpoint_of(run_dir, tmp_path, "unet", width=2, depth=2)
    elif case == "wrong input shape":
        model = checkpoint_of(run_dir, tmp_path, "lvnet", width=4, in_channels=2)
    elif case == "unreadable model":
        model = tmp_path / "broken.pt"
        model.write_bytes(b"not a checkpoint")
    elif case == "missing model":
        model = tmp_path / "nothing"
    elif case == "onnx model":
        model = tmp_path / "model.onnx"
    elif case == "input with no slices":
        data = tmp_path / "empty"
        data.mkdir()
    elif case == "missing input":
        data = tmp_path / "absent"
    out = tmp_path / "out"
    result = invoke("explain", model, data, "--out", out, "--limit", 1, *options)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not out.exists()


def test_a_model_without_a_cam_head_gets_gradcam_by_default(run_dir, tiny_phantom, tmp_path):
    model = checkpoint_of(run_dir, tmp_path, "unet", width=2, depth=2)
    result = invoke("explain", model, tiny_phantom, "--out", tmp_path / "out", "--limit", 1)
    assert result.exit_code == 0, result.output
    assert "gradcam@" in result.output and "cam@head" not in result.output


def test_single_image_and_dicom_files_are_one_slice_each(run_dir, tiny_phantom, tmp_path):
    image = np.zeros((64, 64), np.uint8)
    lv = np.zeros((64, 64), bool)
    lv[24:40, 26:42] = True
    image[lv] = 200
    name = "SC-HF-I-09-IM-0001-0021.dcm.png"
    for folder, array in (("Images", image), ("Labels", lv.astype(np.uint8) * 255)):
        (tmp_path / "data" / folder).mkdir(parents=True)
        Image.fromarray(array).save(tmp_path / "data" / folder / name)
    lone = tmp_path / "lone.png"
    Image.fromarray(image).save(lone)

    dicom = sorted((tiny_phantom / "dicoms").rglob("*.dcm"))[0]

    out = tmp_path / "out"
    paired = tmp_path / "data" / "Images" / name
    result = invoke("explain", run_dir, paired, lone, dicom, "--out", out, "--metrics")
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "metrics.json").read_text())["slices"]
    assert [row["patient_id"] for row in rows] == ["SC-HF-I-09", "lone.png", dicom.name]
    assert rows[0]["slice_index"] == 1 and rows[0]["reference_lv_pixels"] > 0
    assert rows[0]["explanations"]  # measured: it has a reference LV
    for row in rows[1:]:
        assert row["reference"] is False and row["dice"] is None and not row["explanations"]
    assert len(list((out / "panels").glob("*.png"))) == 3
