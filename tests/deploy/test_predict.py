"""``lvseg predict``: masks back where they belong on synthetic studies of known geometry
(rotated, shifted, resampled, the heart far from the image centre), volumes and EF, every output,
bad input, and the lean install that imports no torch."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import scipy.ndimage as ndi
from builders import invoke, write_dicom
from oracle import disc_study, oracle_plan, write_oracle_model

from lvseg.data.contours import fill_contour, read_contour
from lvseg.deploy.predict import predict
from lvseg.evaluate.metrics import dice

SPACING = (0.9, 0.8)  # (row, col) mm
GAP_MM = 8.0
BLOB = (slice(89, 92), slice(94, 97))  # the core of disc_study's distractor


def rotation(degrees: tuple[float, float, float]) -> np.ndarray:
    a, b, c = np.radians(degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def write_nifti_study(path: Path, images: np.ndarray) -> np.ndarray:
    """A 4D NIfTI (x = cols, y = rows, z = slices, t = phases), rotated and shifted in space."""
    affine = np.eye(4)
    affine[:3, :3] = rotation((25, -15, 40)) @ np.diag([SPACING[1], SPACING[0], GAP_MM])
    affine[:3, 3] = (-61.5, 17.25, 103.0)
    image = nib.Nifti1Image(images.transpose(3, 2, 0, 1).astype(np.int16), affine)
    image.header.set_zooms((SPACING[1], SPACING[0], GAP_MM, 40.0))
    image.header.set_xyzt_units("mm", "msec")
    nib.save(image, str(path))
    return affine


def loaded_masks(path: Path) -> np.ndarray:
    """masks.nii.gz back as (slices, phases, rows, cols)."""
    return np.asarray(nib.load(str(path)).dataobj).transpose(2, 3, 1, 0).astype(bool)


def expected_volumes(masks: np.ndarray) -> np.ndarray:
    return masks.sum(axis=(2, 3)).sum(axis=0) * SPACING[0] * SPACING[1] * GAP_MM / 1000


def check_masks(predicted: np.ndarray, truth: np.ndarray) -> None:
    """Every frame's mask over its disc. The network's grid is coarser than the source (1.25 mm
    against 0.8-0.9 mm), so one edge may move by half a coarse pixel and a frame's centroid by
    up to ~0.5 source pixel; a mapping error would move *all* of them the same way, which the
    mean over frames (within 0.15 px of zero: 0.01-0.06 px measured) rules out."""
    assert predicted.shape == truth.shape
    shifts = []
    for s in range(truth.shape[0]):
        for p in range(truth.shape[1]):
            assert dice(predicted[s, p], truth[s, p]) > 0.9, (s, p)
            shifts.append(
                np.subtract(ndi.center_of_mass(predicted[s, p]), ndi.center_of_mass(truth[s, p]))
            )
    shifts = np.array(shifts)
    assert np.abs(shifts).max() < 0.6, np.abs(shifts).max(axis=0)
    assert np.abs(shifts.mean(axis=0)).max() < 0.15, shifts.mean(axis=0)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory) -> Path:
    return write_oracle_model(tmp_path_factory.mktemp("oracle") / "oracle.onnx")


def test_nifti_study_masks_land_on_the_source_grid_and_volumes_follow(tmp_path, oracle):
    images, truth = disc_study()
    affine = write_nifti_study(tmp_path / "cine.nii.gz", images)
    found = predict(oracle, tmp_path / "cine.nii.gz", tmp_path / "out")
    study = found.studies[0]

    written = nib.load(str(tmp_path / "out" / "masks.nii.gz"))
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)
    assert written.shape == (200, 160, 4, 8)
    check_masks(loaded_masks(tmp_path / "out" / "masks.nii.gz"), truth)

    # The heart sits far from the image centre: it was located, not assumed, and the bright
    # blob near the centre (slice 1) is outside the crop.
    assert study.heart_located is True
    assert not loaded_masks(tmp_path / "out" / "masks.nii.gz")[1][(slice(None), *BLOB)].any()
    expected = expected_volumes(truth)
    np.testing.assert_allclose(study.volumes_ml, expected, rtol=0.03)
    assert (study.ed_phase, study.es_phase) == (0, 4)
    edv, esv = expected[0], expected[4]
    assert study.ef == pytest.approx((edv - esv) / edv, abs=0.01)
    assert study.sv_ml == pytest.approx(study.edv_ml - study.esv_ml)


def test_tta_on_a_flip_invariant_model_gives_the_same_masks_and_says_it_was_on(tmp_path, oracle):
    images, truth = disc_study(slices=2, phases=4)
    write_nifti_study(tmp_path / "cine.nii.gz", images)
    plain = predict(oracle, tmp_path / "cine.nii.gz", tmp_path / "plain")
    tta = invoke("predict", oracle, tmp_path / "cine.nii.gz", "--out", tmp_path / "tta", "--tta")
    assert tta.exit_code == 0, tta.output
    np.testing.assert_array_equal(
        loaded_masks(tmp_path / "tta" / "masks.nii.gz"),
        loaded_masks(tmp_path / "plain" / "masks.nii.gz"),
    )
    assert plain.studies[0].model.tta is False  # the oracle's export did not ask
    written = json.loads((tmp_path / "tta" / "summary.json").read_text())
    assert written["model"]["tta"] is True


def test_a_crop_that_holds_the_distractor_leaves_it_to_the_largest_region_rule(tmp_path):
    """With a crop that holds the whole (resampled) image, nothing is located and the oracle
    calls the distractor blob of slice 1 LV too; keeping the largest region (the heart) leaves
    it out, as the located 64 px crop does (the NIfTI test above)."""
    images, truth = disc_study()
    write_nifti_study(tmp_path / "cine.nii.gz", images)
    wide = write_oracle_model(tmp_path / "wide.onnx", oracle_plan(crop=160))
    found = predict(wide, tmp_path / "cine.nii.gz", tmp_path / "out")
    assert found.studies[0].heart_located is False
    predicted = loaded_masks(tmp_path / "out" / "masks.nii.gz")
    assert not predicted[1][(slice(None), *BLOB)].any()
    assert not predicted[0][(slice(None), *BLOB)].any()
    check_masks(predicted, truth)  # and the heart is whole


def write_dicom_study(folder: Path, images: np.ndarray) -> dict[int, tuple[int, int]]:
    """The study as an oblique DICOM cine (one series, slice s at s x 8 mm along the normal,
    instance numbers shuffled so that neither they nor the file names tell the order);
    returns instance number -> (slice, phase)."""
    slices, phases = images.shape[:2]
    axes = rotation((20, 35, -10))
    row_direction, column_direction, normal = axes[:, 0], axes[:, 1], axes[:, 2]
    order = np.random.default_rng(1).permutation(slices * phases) + 1
    where = {}
    for s in range(slices):
        for p in range(phases):
            instance = int(order[s * phases + p])
            where[instance] = (s, p)
            position = np.array([12.0, -40.0, 7.5]) + s * GAP_MM * normal
            write_dicom(
                folder / f"{instance}.dcm",
                images[s, p].astype(np.int16),
                instance,
                PatientID="ORACLE",
                StudyInstanceUID="1.2.3.4",
                SeriesInstanceUID="1.2.3.4.5",
                ImageOrientationPatient=[
                    round(float(v), 6) for v in (*row_direction, *column_direction)
                ],
                ImagePositionPatient=[round(float(v), 4) for v in position],
                PixelSpacing=list(SPACING),
                SliceThickness=GAP_MM,
                TriggerTime=40.0 * p,
                CardiacNumberOfImages=phases,
            )
    return where


def test_dicom_study_contours_and_masks_follow_the_instance_numbers(tmp_path, oracle):
    images, truth = disc_study(slices=3, phases=6)
    where = write_dicom_study(tmp_path / "study", images)
    found = predict(oracle, tmp_path / "study", tmp_path / "out")
    study = found.studies[0]
    assert study.study.shape == [3, 6, 160, 200]
    check_masks(loaded_masks(tmp_path / "out" / "masks.nii.gz"), truth)

    contours = sorted((tmp_path / "out" / "contours").glob("*.txt"))
    assert len(contours) == 3 * 6
    frames = list(csv.DictReader((tmp_path / "out" / "frames.csv").open()))
    assert len(frames) == 18
    assert {int(r["instance"]) for r in frames} == set(where)
    for row in frames:  # each contour file is named in its frame's row, beside the instance
        s, p = where[int(row["instance"])]
        assert row["contour"] == f"s{s:02d}-p{p:02d}-icontour-auto.txt"
        path = tmp_path / "out" / "contours" / row["contour"]
        refilled = fill_contour(read_contour(path, truth.shape[2:]), truth.shape[2:])
        assert dice(refilled, truth[s, p]) > 0.9, path.name
    volumes = list(csv.DictReader((tmp_path / "out" / "volumes.csv").open()))
    assert [float(v["trigger_time_ms"]) for v in volumes] == [40.0 * p for p in range(6)]
    assert len(list((tmp_path / "out" / "overlays").glob("*.png"))) == 18
    assert (tmp_path / "out" / "volume-curve.png").stat().st_size > 5000


def test_repeated_instance_numbers_never_share_a_contour_file(tmp_path, oracle):
    """One series per slice, each numbering its frames from 1 (as many scanners do): 3 slices
    share every InstanceNumber, and every frame still gets its own contour file."""
    import pydicom

    images, _ = disc_study(slices=3, phases=4)
    where = write_dicom_study(tmp_path / "study", images)
    for instance, (s, p) in where.items():
        path = tmp_path / "study" / f"{instance}.dcm"
        dicom = pydicom.dcmread(path)
        dicom.InstanceNumber = p + 1
        dicom.SeriesInstanceUID = f"1.2.3.4.5.{s}"
        dicom.SeriesNumber = s + 1
        dicom.save_as(path)
    found = predict(oracle, tmp_path / "study", tmp_path / "out")
    assert found.studies[0].study.shape[:2] == [3, 4]
    frames = list(csv.DictReader((tmp_path / "out" / "frames.csv").open()))
    assert sorted(int(row["instance"]) for row in frames) == sorted([1, 2, 3, 4] * 3)
    names = [row["contour"] for row in frames]
    assert len(set(names)) == 12 and "" not in names
    assert len(list((tmp_path / "out" / "contours").iterdir())) == 12


def test_skip_invalid_predicts_a_study_with_a_junk_file_and_lists_it(tmp_path, oracle):
    images, _ = disc_study(slices=3, phases=4)
    write_dicom_study(tmp_path / "study", images)
    junk = tmp_path / "study" / "junk.dcm"
    junk.write_bytes(b"DICM" + bytes(300))
    refused = invoke("predict", oracle, tmp_path / "study", "--out", tmp_path / "refused")
    assert refused.exit_code == 2 and "junk.dcm" in refused.output
    assert not (tmp_path / "refused").exists()

    result = invoke(
        "predict", oracle, tmp_path / "study", "--out", tmp_path / "out", "--skip-invalid"
    )
    assert result.exit_code == 0, result.output
    assert f"skipped {junk}:" in result.output and "EF" in result.output
    (row,) = list(csv.DictReader((tmp_path / "out" / "skipped.csv").open()))
    assert row["path"] == str(junk) and row["reason"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["study"]["shape"][:2] == [3, 4]


def test_a_fifo_and_links_out_of_the_study_are_never_opened(tmp_path, oracle):
    """A FIFO named like a DICOM file would block predict forever; ``loop -> ..`` would lead it
    into the sibling study. Neither is followed: the one study is segmented."""
    import os

    from builders import within

    images, _ = disc_study(slices=2, phases=3)
    write_dicom_study(tmp_path / "in" / "study", images)
    sibling = tmp_path / "in" / "sibling"
    write_dicom_study(sibling, images)
    os.mkfifo(tmp_path / "in" / "study" / "pipe.dcm")
    (tmp_path / "in" / "study" / "loop").symlink_to("..")
    (tmp_path / "in" / "study" / "out.dcm").symlink_to(next(sibling.glob("*.dcm")))
    with within(60):
        found = predict(oracle, tmp_path / "in" / "study", tmp_path / "out")
    (study,) = found.studies
    assert study.study.shape[:2] == [2, 3]
    sources = {row["source"] for row in csv.DictReader((tmp_path / "out" / "frames.csv").open())}
    assert all(Path(source).parent == tmp_path / "in" / "study" for source in sources)


def test_a_missing_middle_slice_is_a_note_in_the_summary_and_the_output(tmp_path, oracle):
    images, _ = disc_study(slices=5, phases=2)
    where = write_dicom_study(tmp_path / "study", images)
    for instance, (s, _p) in where.items():
        if s == 2:
            (tmp_path / "study" / f"{instance}.dcm").unlink()
    result = invoke("predict", oracle, tmp_path / "study", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    (note,) = [n for n in summary["study"]["notes"] if n.startswith("slice gap")]
    assert "slices 1 and 2 are 16.0 mm apart, the others 8.0 mm" in note
    assert note in " ".join(result.output.split())


def test_images_without_spacing_get_masks_but_no_volumes(tmp_path):
    from PIL import Image

    images, truth = disc_study(slices=1, phases=1, spacing=(1.25, 1.25), centre_px=(60, 60))
    Image.fromarray((images[0, 0] / 4).astype(np.uint8)).save(tmp_path / "frame.png")
    model = write_oracle_model(tmp_path / "grid.onnx", oracle_plan(spacing_mm=None, crop=256))
    found = predict(model, tmp_path / "frame.png", tmp_path / "out")
    study = found.studies[0]
    assert study.volumes_ml is None and "no volumes" in study.volume_note
    assert not (tmp_path / "out" / "volumes.csv").exists()
    check_masks(loaded_masks(tmp_path / "out" / "masks.nii.gz"), truth)


def test_several_studies_get_a_folder_each_and_a_table(tmp_path, oracle):
    images, _ = disc_study(slices=2, phases=4)
    write_dicom_study(tmp_path / "in" / "a", images)
    second = tmp_path / "in" / "b"
    where = write_dicom_study(second, images)
    import pydicom

    for instance in where:
        dicom = pydicom.dcmread(second / f"{instance}.dcm")
        dicom.PatientID, dicom.StudyInstanceUID = "OTHER", "1.2.3.9"
        dicom.save_as(second / f"{instance}.dcm")
    result = invoke("predict", oracle, tmp_path / "in", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "out" / "studies.csv").open()))
    assert [r["name"] for r in rows] == ["ORACLE", "OTHER"]
    assert (tmp_path / "out" / "ORACLE" / "masks.nii.gz").is_file()
    assert (tmp_path / "out" / "OTHER" / "summary.json").is_file()
    assert "EF" in result.output


# ------------------------------------------------------------------------------ the real model


def test_predict_with_the_exported_tiny_model_on_a_phantom_cine(
    tmp_path, exported_tiny, tiny_phantom
):
    study = sorted((tiny_phantom / "dicoms").iterdir())[0]
    result = invoke("predict", exported_tiny, study, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)[0]
    shape = summary["study"]["shape"]
    assert len(list((tmp_path / "out" / "overlays").glob("*.png"))) == shape[0] * shape[1]
    assert summary["model"]["precision"] == "fp32"  # the folder's fp32 model.onnx is picked
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["study"] == summary["study"]


LEAN = textwrap.dedent(
    """
    import importlib.abc, sys

    class Absent(importlib.abc.MetaPathFinder):
        # As if these were not installed: importing them fails as a missing module does.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "kornia", "onnx", "onnxscript", "fastapi"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, Absent())
    from lvseg.cli import app
    try:
        app(sys.argv[1:], standalone_mode=False)
    finally:
        print("torch imported:", any(m.split(".")[0] == "torch" for m in sys.modules))
    """
)


def test_the_lean_install_predicts_without_torch(tmp_path, oracle):
    """What ``pip install lvseg[infer]`` gives (no torch, kornia, onnx or web stack) predicts."""
    images, _ = disc_study(slices=2, phases=4)
    write_nifti_study(tmp_path / "cine.nii.gz", images)
    done = subprocess.run(
        [sys.executable, "-c", LEAN, "predict", str(oracle), str(tmp_path / "cine.nii.gz"),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "torch imported: False" in done.stdout
    assert (tmp_path / "out" / "masks.nii.gz").is_file()
    # A command that does need PyTorch says which extra installs it.
    training = subprocess.run(
        [sys.executable, "-c", LEAN.replace("standalone_mode=False", "standalone_mode=True"),
         "train", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert training.returncode == 2
    assert "needs torch, which is not installed: pip install 'lvseg[train]'" in training.stderr


def test_the_infer_extra_leaves_torch_out():
    import tomllib

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    lean = project["project"]["dependencies"] + project["project"]["optional-dependencies"]["infer"]
    names = {d.split(";")[0].split(">")[0].split("=")[0].split("[")[0].strip() for d in lean}
    assert "onnxruntime" in names
    assert not names & {"torch", "kornia", "onnx", "onnxscript", "fastapi", "uvicorn"}


# ------------------------------------------------------------------------------ bad input


def test_bad_inputs_are_one_line_exit_2_and_write_nothing(tmp_path, oracle, tiny_run):
    import pydicom

    images, _ = disc_study(slices=2, phases=4)
    write_nifti_study(tmp_path / "cine.nii.gz", images)
    out = tmp_path / "out"

    def refused(*args, expect: str) -> None:
        result = invoke("predict", *args)
        assert result.exit_code == 2, result.output
        assert expect in result.output
        assert "Traceback" not in result.output
        assert not out.exists()

    refused(tiny_run, tmp_path / "cine.nii.gz", "--out", out, expect="lvseg export")
    refused(
        tiny_run / "checkpoints" / "best.pt", tmp_path / "cine.nii.gz", "--out", out,
        expect="a PyTorch checkpoint",
    )  # fmt: skip
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    refused(
        tmp_path / "junk.onnx",
        tmp_path / "cine.nii.gz",
        "--out",
        out,
        expect="not a readable ONNX model",
    )
    newer = write_oracle_model(tmp_path / "newer.onnx", lvseg_format_version="99")
    refused(newer, tmp_path / "cine.nii.gz", "--out", out, expect="newer than this lvseg reads")
    foreign = write_oracle_model(tmp_path / "foreign.onnx", lvseg_format="something-else")
    refused(foreign, tmp_path / "cine.nii.gz", "--out", out, expect="without lvseg metadata")
    (tmp_path / "empty").mkdir()
    refused(oracle, tmp_path / "empty", "--out", out, expect="no DICOM files")

    long_axis = tmp_path / "long-axis"
    for p in range(4):
        write_dicom(long_axis / f"{p + 1}.dcm", images[0, p].astype(np.int16), p + 1,
                    TriggerTime=40.0 * p, ImagePositionPatient=[0, 0, 0])  # fmt: skip
    two_chamber = {
        "ImageOrientationPatient": [1, 0, 0, 0, 0, -1],
        "ImagePositionPatient": [0, 5, 0],
    }
    write_dicom(
        long_axis / "9.dcm", images[0, 0].astype(np.int16), 9, TriggerTime=0.0, **two_chamber
    )
    refused(oracle, long_axis, "--out", out, expect="no short-axis cine")

    mixed = tmp_path / "mixed"
    for s in range(2):
        for p in range(2):
            size = 40 if (s, p) == (1, 1) else 32
            write_dicom(mixed / f"{s * 2 + p + 1}.dcm", np.zeros((size, size), np.int16),
                        s * 2 + p + 1, TriggerTime=40.0 * p,
                        ImagePositionPatient=[0, 0, 10 * s])  # fmt: skip
    refused(oracle, mixed, "--out", out, expect="the other images of the short-axis stack")

    unplaced = tmp_path / "unplaced"
    for s in range(2):
        for p in range(2):
            path = write_dicom(unplaced / f"{s * 2 + p + 1}.dcm", np.zeros((32, 32), np.int16),
                               s * 2 + p + 1, TriggerTime=40.0 * p,
                               ImagePositionPatient=[0, 0, 10 * s])  # fmt: skip
    dicom = pydicom.dcmread(path)
    del dicom.ImagePositionPatient
    dicom.save_as(path)
    refused(oracle, unplaced, "--out", out, expect="no slice position")

    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = invoke("predict", oracle, tmp_path / "cine.nii.gz", "--out", out)
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (out / "keep.txt").read_text() == "mine"


# ------------------------------------------------------------------------------ quality control


def area_scorer() -> dict:
    """A quality score by hand: the predicted Dice falls with the log of the LV area (0.95 for
    large cavities down to 0.3 for small ones), so which frames it flags is known."""
    from lvseg.segment.quality import SIGNALS, QualityModel

    zeros, ones = (0.0,) * len(SIGNALS), (1.0,) * len(SIGNALS)
    weights = (-1.0,) + (0.0,) * (len(SIGNALS) - 1)  # failure score = -log1p(area / 100)
    model = QualityModel(zeros, ones, weights, 0.0, (-2.5, -0.5), (0.95, 0.3), (-0.1, 0.05), 9)
    return {**model.to_dict(), "source": "by hand, for a test"}


def test_quality_control_flags_frames_marks_them_and_judges_the_ef(tmp_path):
    model = write_oracle_model(tmp_path / "qc.onnx", quality=json.dumps(area_scorer()))
    images, _ = disc_study(slices=4, phases=8)
    write_nifti_study(tmp_path / "cine.nii.gz", images)
    result = invoke(
        "predict", model, tmp_path / "cine.nii.gz", "--out", tmp_path / "out",
        "--review-below", 0.6,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    rows = list(csv.DictReader((out / "frames.csv").open()))
    predicted = np.array([float(r["predicted_dice"]) for r in rows])
    flagged = np.array([r["flagged"] == "1" for r in rows])
    area = np.array([float(r["lv_area_mm2"]) for r in rows])
    # the hand-made score: 0.95 - 0.65 * (2.5 - log1p(area / 100)) / 2, within its range
    expected = np.interp(-np.log1p(area / 100), [-2.5, -0.5], [0.95, 0.3])
    np.testing.assert_allclose(predicted, expected, atol=0.02)  # areas on the crop's grid
    low = np.array([float(r["predicted_dice_low"]) for r in rows])
    high = np.array([float(r["predicted_dice_high"]) for r in rows])
    np.testing.assert_allclose(low, predicted - 0.1, atol=1e-3)  # the score's band: -0.1/+0.05
    np.testing.assert_allclose(high, predicted + 0.05, atol=1e-3)
    assert flagged.any() and not flagged.all()
    np.testing.assert_array_equal(flagged, predicted < 0.6)
    summary = json.loads((out / "summary.json").read_text())
    quality = summary["quality"]
    assert quality["flag_below"] == 0.6 and quality["judged_frames"] == 32
    assert len(quality["flagged_frames"]) == flagged.sum()
    assert all(f["reason"].startswith("predicted Dice") for f in quality["flagged_frames"])
    # the smallest cavities are at end-systole: flagged frames hold much of its volume, so the
    # EF is not to be trusted as it stands
    share = quality["volume_share_flagged"]
    es = [int(r["phase"]) == 4 for r in rows]
    pixels = np.array([float(r["lv_pixels"]) for r in rows])
    assert share["ES"] == pytest.approx(pixels[flagged & es].sum() / pixels[es].sum(), abs=1e-3)
    assert summary["es_phase"] == 4 and share["ES"] > 0.1 and quality["ef_trusted"] is False
    assert quality["verdict"] == (
        f"EF {100 * summary['ef']:.1f}% (flagged frames hold {100 * share['ES']:.0f}% of the "
        "ES volume; review)"
    )
    assert "frames flagged" in result.output and "; review)" in result.output
    # flagged overlays get an orange frame, the others none
    from PIL import Image

    first = next(r for r, f in zip(rows, flagged, strict=True) if f)
    clean = next(r for r, f in zip(rows, flagged, strict=True) if not f)
    name = "overlays/s{:02d}-p{:02d}.png"
    marked = np.asarray(Image.open(out / name.format(int(first["slice"]), int(first["phase"]))))
    plain = np.asarray(Image.open(out / name.format(int(clean["slice"]), int(clean["phase"]))))
    assert tuple(marked[0, 0]) == (255, 140, 0) and tuple(plain[0, 0]) != (255, 140, 0)
    # the review page shows the flagged frames only, worst first
    page = (out / "review.html").read_text()
    shown = [line for line in page.splitlines() if line.startswith("<figure>")]
    assert len(shown) == flagged.sum()
    worst = np.argmin(predicted)
    assert name.format(int(rows[worst]["slice"]), int(rows[worst]["phase"])) in shown[0]
    assert "Frames to review (predicted Dice under 0.6)" in page


def test_an_empty_frame_between_segmented_slices_is_flagged_and_others_are_not_scored():
    from lvseg.data.records import Geometry, SliceRecord
    from lvseg.segment.quality import QualityModel, judge

    scorer = QualityModel.from_dict(area_scorer())
    # (slices, phases): phase 0 has two one-slice holes, phase 1 a run of two empty slices;
    # the empty last slice of phase 1 lies past the stack's segmented end
    areas = [[600.0, 600.0], [0.0, 0.0], [400.0, 0.0], [0.0, 500.0], [300.0, 0.0]]
    blank = dict.fromkeys(scorer.to_dict()["signals"], 0.0)
    signals = [{**blank, "area": a} for a in sum(areas, [])]
    image = np.zeros((8, 8), np.float32)
    records = [
        SliceRecord(image, {}, "P", "x", Geometry((8, 8)), slice_index=s, phase_index=p)
        for s in range(5)
        for p in range(2)
    ]
    quality = judge(scorer, records, signals, 0.5)
    empty = [i for i, a in enumerate(sum(areas, [])) if a == 0]
    assert np.isnan(quality.predicted_dice[empty]).all()
    assert np.isfinite(np.delete(quality.predicted_dice, empty)).all()
    holes = [2, 6, 3, 5]  # (s1, p0), (s3, p0), (s1, p1), (s2, p1); not (s4, p1)
    assert np.flatnonzero(quality.flagged).tolist() == sorted(holes)
    assert quality.reasons == dict.fromkeys(sorted(holes), "no LV between slices that have one")


def test_review_below_needs_a_model_with_a_quality_score(tmp_path, oracle):
    images, _ = disc_study(slices=2, phases=4)
    write_nifti_study(tmp_path / "cine.nii.gz", images)
    result = invoke(
        "predict", oracle, tmp_path / "cine.nii.gz", "--out", tmp_path / "out",
        "--review-below", 0.8,
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--review-below needs a model exported with a quality-control score" in result.output
    assert not (tmp_path / "out").exists()


def test_a_volume_curve_with_two_minima_puts_the_ef_up_for_review():
    from dataclasses import replace

    from lvseg.deploy.predict import quality_summary
    from lvseg.deploy.results import StudyVolumes
    from lvseg.segment.quality import Judgement

    phases = 8
    calm = Judgement(np.full(phases, 0.9), np.zeros(phases, bool), {}, 0.7)
    pixels = np.full((1, phases), 100.0)
    one = [120.0, 110.0, 80.0, 60.0, 70.0, 90.0, 110.0, 118.0]
    found = StudyVolumes(
        slices=1, phases=phases, pixel_spacing_mm=None, slice_spacing_mm=None, lv_pixels=pixels,
        lv_area_mm2=None, volume_ml=one, ef=0.5, ed_phase=0, es_phase=3,
    )  # fmt: skip
    quality = quality_summary(calm, found, phases)
    assert quality.volume_curve_minima == [3] and quality.ef_trusted is True
    assert quality.verdict == "EF 50.0% (no doubt at ED or ES)"
    # phase 5 segmented short: a second dip, and the EF may come from either
    two = [120.0, 110.0, 80.0, 60.0, 100.0, 62.0, 110.0, 118.0]
    quality = quality_summary(calm, replace(found, volume_ml=two), phases)
    assert quality.volume_curve_minima == [3, 5] and quality.ef_trusted is False
    assert quality.verdict == "EF 50.0% (the volume curve has 2 minima (phases 3, 5); review)"
    # fewer phases than a curve needs: its shape is not judged
    short = quality_summary(calm, replace(found, volume_ml=two[:4], es_phase=3), phases)
    assert short.volume_curve_minima is None


def test_a_score_fitted_without_tta_does_not_judge_frames_segmented_with_it(tmp_path):
    model = write_oracle_model(tmp_path / "qc.onnx", quality=json.dumps(area_scorer()))
    images, _ = disc_study(slices=2, phases=4)
    write_nifti_study(tmp_path / "cine.nii.gz", images)
    result = invoke("predict", model, tmp_path / "cine.nii.gz", "--out", tmp_path / "out", "--tta")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["quality"] is None and summary["model"]["quality_score"] is None
    assert any("no quality control" in note for note in summary["notes"])
    header = (tmp_path / "out" / "frames.csv").read_text().splitlines()[0]
    assert "predicted_dice" not in header
    refused = invoke(
        "predict", model, tmp_path / "cine.nii.gz", "--out", tmp_path / "again", "--tta",
        "--review-below", 0.8,
    )  # fmt: skip
    assert refused.exit_code == 2 and "fitted on frames segmented without" in refused.output
