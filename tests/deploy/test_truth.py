"""A prediction of the phantom against the phantom's truth (the demo's last step)."""

from __future__ import annotations

import json

import pytest
from builders import invoke


def test_phantom_truth_pairs_every_predicted_study_with_its_true_ef(
    tmp_path, exported_tiny, tiny_phantom
):
    out = tmp_path / "prediction"
    result = invoke("predict", exported_tiny, tiny_phantom / "dicoms", "--out", out)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tiny_phantom / "phantom.json").read_text())
    truth = {p["patient_id"]: p for p in manifest["patients"]}
    shown = invoke("data", "phantom-truth", tiny_phantom, out, "--json")
    assert shown.exit_code == 0, shown.output
    rows = json.loads(shown.output)
    assert sorted(r["patient_id"] for r in rows) == sorted(truth)
    for row in rows:
        summary = json.loads((out / row["study"] / "summary.json").read_text())
        assert row["true_ef"] == truth[row["patient_id"]]["ejection_fraction"]
        assert row["group"] == truth[row["patient_id"]]["group"]
        assert row["predicted_ef"] == summary["ef"]
        assert row["trusted"] == summary["quality"]["ef_trusted"]
        if summary["ef"] is not None:
            expected = 100 * (summary["ef"] - row["true_ef"])
            assert row["error_points"] == pytest.approx(expected)
    table = invoke("data", "phantom-truth", tiny_phantom, out)
    assert table.exit_code == 0 and "studies within 5 points of the true EF" in table.output


def test_phantom_truth_refuses_what_is_not_a_phantom_or_a_prediction(tmp_path, tiny_phantom):
    (tmp_path / "empty").mkdir()
    not_prediction = invoke("data", "phantom-truth", tiny_phantom, tmp_path / "empty")
    assert not_prediction.exit_code == 2
    assert "no summary.json: not an lvseg predict output" in not_prediction.output
    not_phantom = invoke("data", "phantom-truth", tmp_path / "empty", tmp_path / "empty")
    assert not_phantom.exit_code == 2 and "not an lvseg phantom folder" in not_phantom.output
