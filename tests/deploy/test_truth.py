"""A prediction of the phantom against the phantom's truth (the demo's last step)."""

from __future__ import annotations

import json

import pytest
from builders import invoke


def test_phantom_truth_pairs_every_predicted_study_with_its_true_volumes(
    tmp_path, exported_tiny, tiny_phantom, tiny_run
):
    out = tmp_path / "prediction"
    result = invoke("predict", exported_tiny, tiny_phantom / "dicoms", "--out", out)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tiny_phantom / "phantom.json").read_text())
    truth = {p["patient_id"]: p for p in manifest["patients"]}
    shown = invoke("data", "phantom-truth", tiny_phantom, out, "--run", tiny_run, "--json")
    assert shown.exit_code == 0, shown.output
    rows = json.loads(shown.output)
    assert sorted(r["patient_id"] for r in rows) == sorted(truth)
    # the tiny run trains on 3 of the 4 patients and holds one out
    assert sorted(r["held_out"] for r in rows) == [False, False, False, True]
    for row in rows:
        summary = json.loads((out / row["study"] / "summary.json").read_text())
        entry = truth[row["patient_id"]]
        assert row["true_ef"] == entry["label_ejection_fraction"]
        assert (row["true_edv_ml"], row["true_esv_ml"]) == (
            entry["label_edv_ml"],
            entry["label_esv_ml"],
        )
        assert row["group"] == entry["group"]
        assert row["predicted_ef"] == summary["ef"]
        assert row["predicted_edv_ml"] == summary["edv_ml"]
        assert row["trusted"] == summary["quality"]["ef_trusted"]
        if summary["ef"] is not None:
            expected = 100 * (summary["ef"] - row["true_ef"])
            assert row["error_points"] == pytest.approx(expected)
    table = invoke("data", "phantom-truth", tiny_phantom, out, "--run", tiny_run)
    assert table.exit_code == 0, table.output
    assert "studies the model never saw within 5 points of the true EF" in table.output
    assert "of 3 studies it trained on within 5 points" in table.output
    plain = invoke("data", "phantom-truth", tiny_phantom, out)
    assert plain.exit_code == 0 and "of 4 studies within 5 points of the true EF" in plain.output


def test_phantom_truth_of_a_perfect_segmentation_is_exact(tmp_path, tiny_phantom):
    """The truth is measured the way predict measures: the phantom's own masks, summed as
    discs, give the manifest's volumes, so a segmentation equal to the labels scores 0."""
    from lvseg.data.phantom import generate_patient

    manifest = json.loads((tiny_phantom / "phantom.json").read_text())
    entry = manifest["patients"][0]
    patient = generate_patient(entry["index"], manifest["seed"], downscale=manifest["downscale"])
    edv, esv = patient.label_volumes_ml()
    assert (round(edv, 2), round(esv, 2)) == (entry["label_edv_ml"], entry["label_esv_ml"])
    volumes = patient.lv.sum(axis=(1, 2, 3)) * float(
        patient.pixel_spacing_mm[0] * patient.pixel_spacing_mm[1] * patient.slice_spacing_mm
    )
    # ED and ES are the largest and smallest volume of the masks' curve, as predict picks them
    assert int(volumes.argmax()) == patient.ed_phase and int(volumes.argmin()) == patient.es_phase
    study = tmp_path / "prediction" / entry["patient_id"]
    study.mkdir(parents=True)
    summary = {
        "study": {"name": entry["patient_id"], "patient_id": entry["patient_id"]},
        "ef": 1.0 - esv / edv,
        "edv_ml": edv,
        "esv_ml": esv,
    }
    (study / "summary.json").write_text(json.dumps(summary))
    shown = invoke("data", "phantom-truth", tiny_phantom, tmp_path / "prediction", "--json")
    (row,) = json.loads(shown.output)
    assert row["error_points"] == pytest.approx(0.0, abs=0.01)
    assert row["true_ef"] == entry["label_ejection_fraction"] != entry["ejection_fraction"]


def test_phantom_truth_refuses_what_is_not_a_phantom_or_a_prediction(tmp_path, tiny_phantom):
    (tmp_path / "empty").mkdir()
    not_prediction = invoke("data", "phantom-truth", tiny_phantom, tmp_path / "empty")
    assert not_prediction.exit_code == 2
    assert "no summary.json: not an lvseg predict output" in not_prediction.output
    not_phantom = invoke("data", "phantom-truth", tmp_path / "empty", tmp_path / "empty")
    assert not_phantom.exit_code == 2 and "not an lvseg phantom folder" in not_phantom.output
    not_run = invoke(
        "data", "phantom-truth", tiny_phantom, tmp_path / "empty", "--run", tmp_path / "empty"
    )
    assert not_run.exit_code == 2 and "Traceback" not in not_run.output
    assert str(tmp_path / "empty") in not_run.output
