"""Training data: a spacing for images that store none, and far crops, reach the saved plan."""

from __future__ import annotations

import numpy as np
from PIL import Image

from lvseg.config import DataConfig
from lvseg.data.preprocess import resample_and_normalise
from lvseg.data.records import LV, Geometry, SliceRecord
from lvseg.train.data import prepare


def png_folder(root, patients=4, size=48):
    """Image/mask pairs named as no known dataset is (so no spacing is guessed)."""
    for p in range(patients):
        for n in (1, 2):
            image = np.zeros((size, size), np.uint8)
            image[14 + n : 30 + n, 16:32] = 200
            for folder, array in (("Images", image), ("Labels", (image > 0) * 255)):
                path = root / folder / f"P{p:02d}-IM-0001-{n:04d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array.astype(np.uint8)).save(path)
    return root


def test_the_given_pixel_spacing_is_planned_saved_and_applied_at_inference(tmp_path):
    data = png_folder(tmp_path / "data")
    found = prepare(
        DataConfig(path=str(data), pixel_spacing_mm=0.5), seed=0, cache_root=tmp_path / "c"
    )
    plan = found.plan
    assert plan.assumed_spacing_mm == (0.5, 0.5) and plan.target_spacing_mm == (0.5, 0.5)
    assert plan.notes[0] == "pixel spacing 0.5 mm given to images that store none"
    assert found.train.entries[0]["pixel_spacing_mm"] is None  # the record as read
    # Inference: an image without spacing gets the plan's (zoom 1); one at 1.0 mm is brought to
    # the 0.5 mm the model learnt (twice the pixels), and its heart to the size it learnt.
    lv = np.zeros((48, 48), bool)
    lv[16:32, 16:32] = True
    record = SliceRecord(
        image=lv.astype(np.float32), masks={LV: lv}, patient_id="X", source="x.png",
        geometry=Geometry((48, 48)),
    )  # fmt: skip
    same = resample_and_normalise(record, plan)
    assert same.image.shape == (48, 48) and same.pixel_spacing_mm == (0.5, 0.5)
    coarse = record.replace(pixel_spacing_mm=(1.0, 1.0), geometry=Geometry((48, 48), (1.0, 1.0)))
    finer = resample_and_normalise(coarse, plan)
    assert finer.image.shape == (96, 96) and finer.masks[LV].sum() == 4 * lv.sum()
    # Without the option the folder keeps its pixel grid, as before.
    plain = prepare(DataConfig(path=str(data)), seed=0, cache_root=tmp_path / "c").plan
    assert plain.assumed_spacing_mm is None and plain.target_spacing_mm is None


def test_far_crops_widen_the_stored_context_by_half_a_crop(tmp_path):
    data = png_folder(tmp_path / "data")
    plain = prepare(DataConfig(path=str(data), far_crops=0.0), seed=0, cache_root=tmp_path / "c")
    far = prepare(DataConfig(path=str(data), far_crops=0.2), seed=0, cache_root=tmp_path / "c")
    assert plain.plan.reach_px == 0 and far.plan.reach_px == far.plan.crop_size // 2
    assert far.train.images.shape[-1] == far.plan.crop_size * 2
    assert far.plan.notes[-1].startswith("far crops: 20% of training crops")
