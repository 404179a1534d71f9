import json
import subprocess
import sys

import numpy as np
import pytest
from builders import invoke, linked_layout
from PIL import Image


def run_lvseg(*args):
    """The installed command line in a subprocess: real exit codes and real stderr."""
    return subprocess.run(
        [sys.executable, "-m", "lvseg", *map(str, args)], capture_output=True, text=True
    )


def test_help_lists_the_verbs():
    result = invoke("--help")
    assert result.exit_code == 0 and "data" in result.output
    result = invoke("data", "--help")
    for verb in ("inspect", "phantom", "split"):
        assert verb in result.output


def test_inspect_json_on_real_png(sunnybrook_png):
    summary = json.loads(invoke("data", "inspect", sunnybrook_png, "--json").stdout)
    assert summary["patients"] == 30
    assert summary["slices"] == 526
    assert summary["slices_per_structure"] == {"lv": 526}
    assert summary["skipped"] == []
    assert summary["format"] == "folders"
    # no spacing in the PNGs: Sunnybrook patients get their scans' 1.33 mm by name
    assert summary["pixel_spacing_mm"]["unknown"] == 0
    assert summary["pixel_spacing_mm"]["median"] == 1.33
    # More slices show the LV at end-diastole than at end-systole, when the apex has emptied.
    assert summary["phases"] == {"ED": 273, "ES": 253, "unknown": 0}


def test_inspect_json_on_real_dicom(sunnybrook_dicom, tmp_path):
    montage = tmp_path / "montage.png"
    result = invoke("data", "inspect", sunnybrook_dicom, "--json", "--out", montage)
    summary = json.loads(result.stdout)
    assert summary["patients"] == 5
    assert summary["slices"] == 96
    assert summary["slices_per_structure"] == {"lv": 96, "myocardium": 46}
    assert summary["format"] == "sunnybrook"
    assert summary["pixel_spacing_mm"]["min"] == 1.2891
    assert summary["pixel_spacing_mm"]["max"] == 1.3672
    assert summary["groups"] == {"HF-I": 5}
    picture = np.asarray(Image.open(montage))
    assert picture.shape[0] > 300 and picture.shape[1] > 600
    # Contours are drawn in colour on grey images.
    red = (picture[..., 0] > 200) & (picture[..., 1] < 120) & (picture[..., 2] < 120)
    assert red.sum() > 500


def test_inspect_table(tmp_path):
    root = linked_layout(tmp_path / "sb")
    result = invoke("data", "inspect", root)
    assert result.exit_code == 0
    for text in ("patients", "slices per structure", "lv 4, myocardium 2", "ED 2, ES 2"):
        assert text in result.output


def test_bad_input_is_one_line_exit_2_no_traceback(tmp_path):
    root = linked_layout(tmp_path / "sb")
    broken = root / "dicoms" / "SCD0000101" / "9.dcm"
    broken.write_text("not a dicom")
    result = run_lvseg("data", "inspect", root)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(broken) in lines[0] and "not a DICOM file" in lines[0]

    result = run_lvseg("data", "inspect", root, "--skip-invalid", "--json")
    assert result.returncode == 0
    summary = json.loads(result.stdout)
    assert summary["slices"] == 3
    assert summary["skipped"] == [
        {"path": str(broken), "reason": "not a DICOM file (no DICM preamble)"}
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "inspect", "/no/such/folder"], "/no/such/folder: no such file or folder"),
        (["data", "inspect", "{empty}"], "folder is empty"),
        (["data", "inspect", "{tmp}/sb", "--labels", "acdc"], "--labels does not apply"),
    ],
)
def test_cli_errors(tmp_path, args, message):
    linked_layout(tmp_path / "sb")
    (tmp_path / "empty").mkdir()
    args = [a.format(tmp=tmp_path, empty=tmp_path / "empty") for a in args]
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_split_command_writes_patient_level_splits(sunnybrook_png, tmp_path):
    out = tmp_path / "split.json"
    assert invoke("data", "split", sunnybrook_png, "--out", out, "--val", "0.2").exit_code == 0
    split = json.loads(out.read_text())
    assert len(split["train"]) == 24 and len(split["val"]) == 6 and split["test"] == []
    assert invoke("data", "split", sunnybrook_png, "--out", out, "--folds", "5").exit_code == 0
    folds = [json.loads((tmp_path / f"split_{i}.json").read_text()) for i in range(5)]
    assert sorted(p for f in folds for p in f["val"]) == sorted(split["train"] + split["val"])


def test_plan_command_proposes_crop_and_spacing(sunnybrook_dicom, tmp_path):
    out = tmp_path / "plan.json"
    result = invoke("data", "plan", sunnybrook_dicom, "--json", "--out", out)
    printed = json.loads(result.stdout)
    assert printed == json.loads(out.read_text())
    plan = printed["plan"]
    assert plan["target_spacing_mm"] == [1.367188, 1.367188]
    assert plan["crop_size"] == 128 and plan["jitter_px"] == 13
    assert printed["fingerprint"]["n_records"] == 96
    assert printed["fingerprint"]["structure_counts"] == {"lv": 96, "myocardium": 46, "rv": 0}


def test_a_full_disk_behind_a_library_s_own_error_is_one_line(tmp_path, monkeypatch):
    """pydicom re-raises a failed write as a new OSError without the errno, from the ENOSPC
    one: the CLI looks down the chain and still says "no space left" in one line."""
    import errno

    from lvseg.data import phantom

    def full(*args, **kwargs):
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.dcm"))
        except OSError as cause:
            raise OSError("With tag (7FE0,0010) got exception: [Errno 28]") from cause

    monkeypatch.setattr(phantom, "write_phantom", full)
    result = invoke("data", "phantom", tmp_path / "out", "--patients", "1")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: {tmp_path / 'x.dcm'}: no space left on the device; free some and run it again"
    ]
