"""One inference path: on a phantom study whose heart is far from the image centre, the masks
``lvseg evaluate`` scores are the masks ``lvseg predict`` writes, and the centre crop, which is
not what predict does, scores lower there."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from builders import invoke, off_centre_phantom, train_tiny_lvnet

from lvseg.deploy.predict import predict
from lvseg.evaluate.run import evaluate
from lvseg.segment.segmenter import CROPS


@pytest.fixture(scope="module")
def located_run(tiny_phantom, tmp_path_factory) -> Path:
    """A width-8 LVNet trained for 8 epochs on the tiny phantom: good enough to find a heart
    (the 2-epoch tiny run calls LV almost anywhere on a whole image)."""
    return train_tiny_lvnet(tiny_phantom, tmp_path_factory.mktemp("located-run") / "run", 8)


@pytest.fixture(scope="module")
def exported(located_run, tmp_path_factory) -> Path:
    from lvseg.deploy.export import export

    out = tmp_path_factory.mktemp("located-export") / "export"
    export(located_run, out)
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return off_centre_phantom(tmp_path_factory.mktemp("off-centre") / "study")


def predicted_masks(out: Path) -> dict[str, np.ndarray]:
    """What predict wrote, frame by frame, keyed by the frame's source file."""
    masks = np.asarray(nib.load(str(out / "masks.nii.gz")).dataobj).transpose(2, 3, 1, 0) > 0
    with open(out / "frames.csv", newline="") as handle:
        return {
            row["source"]: masks[int(row["slice"]), int(row["phase"])]
            for row in csv.DictReader(handle)
        }


def predicted_by_study(out: Path) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        found |= predicted_masks(folder)
    return found


def test_evaluate_scores_exactly_the_masks_predict_writes(exported, located_run, study, tmp_path):
    predict(exported, study / "dicoms", tmp_path / "predicted")
    written = predicted_by_study(tmp_path / "predicted")
    # the same exported model through evaluate (ONNX Runtime, as predict runs it)
    scored = evaluate(exported, study, write=False, split="all", keep_masks=True)
    assert scored.settings.crop == "located" and scored.model.runtime.startswith("onnxruntime")
    assert scored.settings.placement.slices_by_placement["stack"] == len(scored.rows)
    by_source = {row["source"]: scored.masks[row["key"]] for row in scored.rows}
    assert len(by_source) == len(written) == 30  # 2 phases x (7 + 8 slices)
    assert set(by_source) == set(written)
    for source, mask in by_source.items():
        assert np.array_equal(mask, written[source]), source
    assert sum(m.sum() for m in by_source.values()) > 0
    # the PyTorch model it was exported from: the same masks, but for pixels whose probability
    # lies within float rounding of 0.5 (logits agree to ~1e-5)
    torch_scored = evaluate(located_run, study, write=False, split="all", keep_masks=True)
    by_source = {row["source"]: torch_scored.masks[row["key"]] for row in torch_scored.rows}
    differing = sum(int((by_source[s] != written[s]).sum()) for s in written)
    assert differing <= 2, differing
    assert abs(torch_scored.summary.dice_mean - scored.summary.dice_mean) < 1e-3


def test_the_centre_crop_scores_lower_where_the_heart_is_off_centre(exported, study):
    # Every region kept: the tiny model's masks are fragmented, and this is about the crop.
    located = evaluate(exported, study, write=False, split="all", largest_component=False)
    centred = evaluate(
        exported, study, write=False, split="all", crop="centre", largest_component=False
    )
    assert centred.settings.placement.slices_by_placement["image"] == len(centred.rows)
    # 8 epochs of the (strongly augmented) default recipe: a rough model, but one that finds
    # the heart on every slice, where the centre crop finds nothing. Its Dice is chaotic in
    # float rounding (0.12 with kornia 0.9.0, 0.28 with 0.8.3, whose affine matrices differ by
    # 2e-7): what is asserted is the detection, which is not, and a Dice above nothing.
    assert located.summary.detection_rate > 0.9
    assert centred.summary.detection_rate < 0.1  # the centre crop misses the heart
    assert centred.summary.dice_mean < 0.05
    assert located.summary.dice_mean > centred.summary.dice_mean + 0.05


def test_the_command_says_which_crop_it_used(exported, study, tmp_path):
    # the export knows its training patients (the phantom's first two), as the run does
    refused = invoke("evaluate", exported, study, "--out", tmp_path / "e")
    assert refused.exit_code == 2 and "every patient here trained the model" in refused.output
    result = invoke(
        "evaluate", exported, study, "--crop", "centre", "--split", "all", "--out", tmp_path / "e"
    )
    assert result.exit_code == 0, result.output
    assert "crop: centre" in result.stdout
    report = (tmp_path / "e" / "report.html").read_text()
    assert "centred on the image" in report
    compared = invoke("evaluate", "--compare", tmp_path / "e")
    assert compared.exit_code == 0 and "| centre |" in compared.stdout
    assert invoke("evaluate", exported, study, "--crop", "middle").exit_code == 2


def test_the_command_line_crops_are_the_segmenters():
    from lvseg.cli.choices import Crop

    assert tuple(c.value for c in Crop) == CROPS
