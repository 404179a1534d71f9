"""``lvseg evaluate`` end to end on a tiny trained LVNet: held-out split, files, JSON, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from builders import invoke, page_links
from PIL import Image

from lvseg.data.load import labelled_dataset
from lvseg.evaluate import run as evaluate_run
from lvseg.model.registry import build_model
from lvseg.runs.checkpoint import load_checkpoint, resolve_model_path

JSON_KEYS = {
    "slices", "patients", "dice_mean", "dice_median", "iou_mean", "pixel_accuracy",
    "background_only_accuracy", "hd95_mm_mean", "apd_mm_mean", "good_contour_rate_5mm",
    "good_contour_rate_4mm",
}  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tiny_run) -> Path:
    return tiny_run


@pytest.fixture(scope="module")
def evaluated(run_dir, tiny_phantom, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("evaluated") / "eval"
    result = invoke("evaluate", run_dir, tiny_phantom, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_json_summary_scores_only_the_held_out_patients(evaluated, run_dir, tiny_phantom):
    out, printed = evaluated
    assert JSON_KEYS <= set(printed)
    split = load_checkpoint(resolve_model_path(run_dir)).split.to_dict()
    dataset = labelled_dataset(tiny_phantom)
    held_out = [r for r in dataset.records if r.patient_id in split["val"]]
    assert printed["patients"] == len(split["val"]) == 1
    assert printed["slices"] == len(held_out)
    assert [p["patient_id"] for p in printed["per_patient"]] == list(split["val"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["excluded_patients"] == sorted(split["train"])
    assert metrics["data"]["distance_units"] == "mm"  # the phantom stores its pixel spacing
    assert "did not train on" in metrics["data"]["split_note"]
    assert metrics["summary"] == {k: v for k, v in printed.items() if k != "per_patient"}
    assert 0 <= printed["pixel_accuracy"] <= 1 and printed["background_only_accuracy"] > 0.5
    # every slice of the CSV is a held-out slice, with every column filled in where defined
    with open(out / "slices.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(held_out)
    assert {r["patient_id"] for r in rows} == set(split["val"])
    assert all(r["dice"] != "" and r["position"] in {"basal", "mid", "apical"} for r in rows)
    # the report links only files that exist beside it (figures, the raw numbers)
    links = page_links((out / "report.html").read_text(encoding="utf-8"))
    assert any(link.startswith("figures/worst_") for link in links)
    assert all((out / link).is_file() for link in links), links
    # the phantom labels ED and ES stacks with spacing: volumes in ml, a reference mass
    clinical = metrics["clinical"]
    assert clinical["volume_units"] == "ml"
    (patient,) = clinical["patients"]
    assert patient["reference"]["edv"] > patient["reference"]["esv"] > 0
    assert patient["reference"]["mass_g"] > 0


def test_all_split_scores_every_patient_and_says_so(run_dir, tiny_phantom, tmp_path):
    found = evaluate_run.evaluate(run_dir, tiny_phantom, tmp_path / "e", split="all", write=False)
    assert found.summary.patients == 4
    assert "optimistic" in found.data.split_note
    assert found.out is None and not (tmp_path / "e").exists()


def test_tta_is_asked_from_the_command_line_and_said_in_the_metrics(
    evaluated, run_dir, tiny_phantom, tmp_path
):
    out = tmp_path / "tta"
    result = invoke("evaluate", run_dir, tiny_phantom, "--out", out, "--tta", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    plain = json.loads((evaluated[0] / "metrics.json").read_text())
    assert metrics["settings"]["tta"] is True and plain["settings"]["tta"] is False
    assert metrics["summary"]["slices"] == plain["summary"]["slices"]
    # The same slices, other probabilities: 8 views averaged change some pixels.
    assert metrics["summary"]["dice_mean"] != plain["summary"]["dice_mean"]


def test_split_is_rebuilt_from_the_training_config_of_older_checkpoints(run_dir, tiny_phantom):
    saved = load_checkpoint(resolve_model_path(run_dir))
    config, expected = saved.train_config, (list(saved.split.train), list(saved.split.val))
    dataset = labelled_dataset(tiny_phantom)
    train_patients, val, how = evaluate_run.training_split(None, config, dataset, tiny_phantom)
    assert (train_patients, val) == expected and "rebuilt" in how
    # other data (e.g. the same patients as DICOM): the split comes from the training data
    other = tiny_phantom.parent / "other"
    assert evaluate_run.training_split(None, config, dataset, other)[:2] == expected
    gone = config.merged({"data": {"path": str(tiny_phantom.parent / "gone")}})
    unknown = evaluate_run.training_split(None, gone, dataset, other)
    assert unknown[0] is None and "unknown" in unknown[2]


def test_compare_puts_evaluations_beside_the_published_figures(evaluated, tmp_path):
    out, _ = evaluated
    result = invoke("evaluate", "--compare", out, out, "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("lvnet") >= 2
    assert "Avendi" in result.stdout and "published" in result.stdout
    assert (tmp_path / "cmp" / "compare.html").is_file()


def test_bad_input_is_one_line_and_exit_2(run_dir, tiny_phantom, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    cases = [
        (("evaluate", junk, tiny_phantom, "--out", tmp_path / "a"), "junk.pt"),
        (("evaluate", run_dir, tmp_path / "missing"), "missing"),
        (("evaluate", run_dir), "MODEL DATA"),
        (("evaluate", "--compare", tmp_path), "no evaluation here"),
    ]
    # a dataset whose images have no labels
    images = tmp_path / "unlabelled" / "Images"
    images.mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(images / "SC-N-01-IM-0001-0001.dcm.png")
    cases.append((("evaluate", run_dir, images.parent, "--out", tmp_path / "c"), "unlabelled"))
    for case, needle in cases:
        result = invoke(*case)
        assert result.exit_code == 2, (case, result.output)
        assert needle in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    # a model that wants two channels
    saved = load_checkpoint(resolve_model_path(run_dir))
    saved.model_name, saved.model_config = "lvnet", {"in_channels": 2, "width": 8}
    saved.state_dict = build_model("lvnet", in_channels=2, width=8).state_dict()
    two = tmp_path / "two.pt"
    saved.save(two)
    result = invoke("evaluate", two, tiny_phantom, "--out", tmp_path / "b")
    assert result.exit_code == 2 and "2 input channels" in result.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_existing_output_is_kept_and_a_crash_writes_nothing(
    run_dir, tiny_phantom, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = invoke("evaluate", run_dir, tiny_phantom, "--out", out)
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (out / "keep.txt").read_text() == "mine"

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(evaluate_run.report, "write_report", crash)
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError):
        evaluate_run.evaluate(run_dir, tiny_phantom, fresh)
    assert not fresh.exists() and not any(p.name.startswith(".fresh") for p in tmp_path.iterdir())


@pytest.mark.shared_data
def test_real_dicom_study_is_scored_in_mm_with_volumes_and_mass(run_dir, sunnybrook_dicom):
    # a phantom-trained model knows none of these patients: everyone is scored, in mm
    found = evaluate_run.evaluate(run_dir, sunnybrook_dicom, write=False)
    assert found.summary.slices == 96 and found.summary.patients == 5
    assert found.data.distance_units == "mm" and found.data.excluded_patients == []
    assert "unknown" not in found.data.split_note  # the tiny phantom is still on disk
    positions = {r["position"] for r in found.rows}
    assert positions == {"basal", "mid", "apical"}
    clinical = found.clinical
    assert clinical.volume_units == "ml" and len(clinical.patients) == 5
    for patient in clinical.patients:
        reference = patient.reference
        assert 8 <= patient.slice_spacing_mm <= 10
        assert 50 < reference.edv < 400 and 0 < reference.ef < 0.7  # heart-failure patients
        assert 60 < reference.mass_g < 300  # o-contours at ED


def test_explanation_measures_join_the_report(run_dir, tiny_phantom, tmp_path):
    explained = tmp_path / "explained"
    result = invoke("explain", run_dir, tiny_phantom, "--out", explained, "--metrics", "--limit", 4)
    assert result.exit_code == 0, result.output
    out = tmp_path / "eval"
    result = invoke("evaluate", run_dir, tiny_phantom, "--out", out, "--explanations", explained)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["explanations"]["source"] == str(explained / "metrics.json")
    assert "energy_inside" in metrics["explanations"]["means"]["cam@head"]
    assert "cam@head" in (out / "report.html").read_text()
    bad = invoke("evaluate", run_dir, tiny_phantom, "--out", tmp_path / "x", "--explanations", out)
    assert bad.exit_code == 2 and "not an lvseg explain --metrics output" in bad.output


def test_quality_control_is_scored_against_the_true_dice(run_dir, tiny_phantom, tmp_path):
    """A hand-made score (predicted Dice falls with the uncertainty) judged on held-out slices:
    its figures are recomputed here from slices.csv, and the report shows them."""

    from lvseg.segment.quality import SIGNALS, QualityModel

    zeros, ones = (0.0,) * len(SIGNALS), (1.0,) * len(SIGNALS)
    weights = tuple(float(name == "uncertainty") for name in SIGNALS)
    scorer = QualityModel(zeros, ones, weights, 0.0, (0.0, 0.5), (0.95, 0.3), (-0.2, 0.1), 9)
    (tmp_path / "qc.json").write_text(json.dumps(scorer.to_dict()))
    result = invoke(
        "evaluate",
        run_dir,
        tiny_phantom,
        "--out",
        tmp_path / "e",
        "--quality",
        tmp_path / "qc.json",
    )
    assert result.exit_code == 0, result.output
    assert "quality control:" in result.output and "AUROC" in result.output
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    quality = metrics["quality"]
    with open(tmp_path / "e" / "slices.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    scored = [r for r in rows if r["predicted_dice"] != ""]
    predicted = np.array([float(r["predicted_dice"]) for r in scored])
    true = np.array([float(r["dice"]) for r in scored])
    assert quality["frames"] == len(rows) and quality["scored_frames"] == len(scored) > 0
    assert quality["mae"] == pytest.approx(np.abs(predicted - true).mean(), abs=1e-3)
    # ranked by the failure score (the predicted Dice's steps would tie): a correlation here
    assert -1.0 <= quality["spearman"] <= 1.0
    assert quality["flagged"] == sum(r["flagged"] == "1" for r in rows)
    assert quality["flagged"] == sum(p < 0.7 for p in predicted) + sum(
        r["flagged"] == "1" for r in rows if r["predicted_dice"] == ""
    )
    assert sum(c["frames"] for c in quality["calibration"]) == len(scored)
    assert quality["score"] == {"source": "", "fitted_on": 9, "tta": False}
    # each slice's interval: its predicted Dice -0.2 / +0.1 (the score's one band), within [0, 1]
    low = np.array([float(r["predicted_dice_low"]) for r in scored])
    high = np.array([float(r["predicted_dice_high"]) for r in scored])
    np.testing.assert_allclose(low, np.clip(predicted - 0.2, 0, 1), atol=2e-4)
    np.testing.assert_allclose(high, np.clip(predicted + 0.1, 0, 1), atol=2e-4)
    inside = ((true >= low - 1e-4) & (true <= high + 1e-4)).mean()
    assert quality["interval_coverage"] == pytest.approx(inside, abs=0.02)
    # the EFs: one per held-out patient with both, judged as predict judges them
    with_ef = [
        p for p in metrics["clinical"]["patients"]
        if p["predicted"]["ef"] is not None and p["reference"]["ef"] is not None
    ]  # fmt: skip
    studies = quality["studies"]
    assert studies["studies"] == len(with_ef) > 0
    errors = [100 * abs(p["predicted"]["ef"] - p["reference"]["ef"]) for p in with_ef]
    assert studies["ef_error_over_5"] == sum(e > 5 for e in errors)
    # a score fitted without test-time augmentation cannot judge frames segmented with it
    tta = invoke(
        "evaluate", run_dir, tiny_phantom, "--out", tmp_path / "t", "--tta",
        "--quality", tmp_path / "qc.json",
    )  # fmt: skip
    assert tta.exit_code == 2 and "fitted on frames segmented without test-time" in tta.output
    assert not (tmp_path / "t").exists()
    page = (tmp_path / "e" / "report.html").read_text(encoding="utf-8")
    assert (
        "<h2>Quality control</h2>" in page
        and (tmp_path / "e" / "figures" / "quality.png").is_file()
    )
