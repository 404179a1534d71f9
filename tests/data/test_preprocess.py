"""Tests of the fingerprint, the plan, per-record preprocessing and the cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from lvseg.data import preprocess as pp
from lvseg.data.folders import read
from lvseg.data.records import LV, MYOCARDIUM, RV, Geometry, SliceRecord

SHARED_PNG = Path("../shared/data/sunnybrook-png")


def disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    rows, cols = np.indices(shape)
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def make_record(
    shape: tuple[int, int] = (96, 96),
    centre: tuple[float, float] = (48.0, 48.0),
    radius: float = 10.0,
    spacing: tuple[float, float] | None = None,
    patient: str = "P1",
    slice_index: int = 0,
    seed: int = 0,
    myocardium: bool = False,
) -> SliceRecord:
    """A slice with a bright LV disc on a textured background (and an optional myocardium ring)."""
    rng = np.random.default_rng(seed)
    lv = disc(shape, centre, radius)
    image = (20 + 5 * rng.standard_normal(shape)).astype(np.float32)
    image[lv] += 100
    masks = {LV: lv}
    if myocardium:
        masks[MYOCARDIUM] = disc(shape, centre, radius + 4) & ~lv
    return SliceRecord(
        image=image,
        masks=masks,
        patient_id=patient,
        source=f"{patient}-{slice_index}",
        geometry=Geometry(original_shape=shape, source_pixel_spacing_mm=spacing),
        slice_index=slice_index,
        phase_index=0,
        pixel_spacing_mm=spacing,
    )


def centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


# ---- fingerprint and plan ----------------------------------------------------------------------


def test_fingerprint_counts_spacings_and_units():
    records = [
        make_record(spacing=(1.0, 1.0), patient="A"),
        make_record(spacing=(2.0, 2.0), patient="B", myocardium=True),
        make_record(spacing=None, patient="C", shape=(64, 80), centre=(32, 40)),
    ]
    fp = pp.fingerprint(records)
    assert (fp.n_records, fp.n_patients) == (3, 3)
    assert (fp.spacing_known, fp.spacing_unknown) == (2, 1)
    assert fp.spacing_median_mm == (1.5, 1.5)
    assert fp.spacing_min_mm == (1.0, 1.0) and fp.spacing_max_mm == (2.0, 2.0)
    assert fp.shape_counts == {"96x96": 2, "64x80": 1}
    assert fp.structure_counts == {LV: 3, MYOCARDIUM: 1, RV: 0}
    lv_px = float(disc((96, 96), (48, 48), 10).sum())
    # mm^2 for the records with spacing, px for the one without.
    assert fp.area[LV].mm.min == pytest.approx(lv_px * 1.0)
    assert fp.area[LV].mm.max == pytest.approx(lv_px * 4.0)
    assert fp.area[LV].px.count == 1
    # The heart of B includes the myocardium: 2 * 14 + 1 = 29 px, at 2 mm.
    assert fp.heart_extent.mm.max == pytest.approx(29 * 2.0)
    assert fp.heart_extent.px.max == pytest.approx(21)
    assert fp.intensity_foreground.mean > fp.intensity_image.mean


def test_fingerprint_and_plan_round_trip_through_json():
    fp = pp.fingerprint([make_record(spacing=(1.2, 1.2)), make_record(spacing=None, seed=1)])
    again = pp.Fingerprint.from_dict(json.loads(json.dumps(fp.to_dict())))
    assert again == fp
    plan = pp.plan_preprocessing(fp)
    assert pp.PreprocessPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_plan_target_spacing_is_the_median_or_none():
    spaced = [make_record(spacing=(s, s), seed=i) for i, s in enumerate((1.0, 1.25, 2.0))]
    assert pp.plan_preprocessing(pp.fingerprint(spaced)).target_spacing_mm == (1.25, 1.25)
    unspaced = [make_record(seed=i) for i in range(3)]
    assert pp.plan_preprocessing(pp.fingerprint(unspaced)).target_spacing_mm is None
    overridden = pp.plan_preprocessing(pp.fingerprint(spaced), target_spacing_mm=(1.0, 1.0))
    assert overridden.target_spacing_mm == (1.0, 1.0)


def test_plan_crop_from_heart_extent_margin_and_jitter():
    # LV discs of radius 30 px (61 px across) centred 10 px off the image centre.
    records = [
        make_record(shape=(256, 256), centre=(137.5, 127.5), radius=30, seed=i) for i in range(4)
    ]
    plan = pp.plan_preprocessing(pp.fingerprint(records))
    assert plan.target_spacing_mm is None
    assert plan.jitter_px == 10
    # 61 * 1.3 + 2 * 10 = 99.3 -> 112, a multiple of 16.
    assert plan.crop_size == 112
    assert plan.context_size == 132
    assert plan.notes and any("crop 112" in note for note in plan.notes)
    # Clamps.
    tiny = [make_record(radius=2, seed=i) for i in range(2)]
    assert pp.plan_preprocessing(pp.fingerprint(tiny)).crop_size == 64
    capped = pp.plan_preprocessing(pp.fingerprint(records), max_crop=96)
    assert capped.crop_size == 96


def test_plan_converts_mm_to_target_pixels():
    # 41 px across at 2 mm = 82 mm; at a 1 mm target that is 82 px (* 1.3 = 106.6 -> 112).
    records = [make_record(shape=(96, 96), radius=20, spacing=(2.0, 2.0))]
    plan = pp.plan_preprocessing(pp.fingerprint(records), target_spacing_mm=(1.0, 1.0))
    assert plan.crop_size == 112


# ---- per record ----------------------------------------------------------------------------


def test_resampling_2mm_to_1mm_doubles_size_and_quadruples_area():
    record = make_record(shape=(64, 64), centre=(30.0, 35.0), radius=10, spacing=(2.0, 2.0))
    resampled = pp.resample_record(record, (1.0, 1.0))
    assert resampled.image.shape == (128, 128)
    assert resampled.image.dtype == np.float32
    assert resampled.geometry.zoom == (2.0, 2.0)
    assert resampled.pixel_spacing_mm == (1.0, 1.0)
    lv = resampled.masks[LV]
    assert lv.dtype == bool
    assert lv.sum() / record.masks[LV].sum() == pytest.approx(4.0, rel=0.05)
    # Pixel edges align: a centre c maps to (c + 0.5) * 2 - 0.5.
    np.testing.assert_allclose(centroid(lv), (np.array([30.0, 35.0]) + 0.5) * 2 - 0.5, atol=0.3)
    # The image follows the mask.
    assert resampled.image[lv].mean() > resampled.image[~lv].mean() + 80


def test_resampling_down_and_without_spacing():
    record = make_record(shape=(96, 96), radius=20, spacing=(0.5, 0.5))
    resampled = pp.resample_record(record, (1.5, 1.5))
    assert resampled.image.shape == (32, 32)
    assert resampled.masks[LV].sum() / record.masks[LV].sum() == pytest.approx(1 / 9, rel=0.1)
    unspaced = make_record()
    assert pp.resample_record(unspaced, (1.0, 1.0)) is unspaced


def test_normalisation_clips_and_standardises():
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, (64, 64)).astype(np.float32)
    image[0, 0] = 1e6
    normalised = pp.normalise_intensity(image)
    assert normalised.dtype == np.float32
    assert normalised.mean() == pytest.approx(0, abs=1e-4)
    assert normalised.std() == pytest.approx(1, abs=1e-3)
    # The outlier is clipped to the 99.5th percentile, not left to dominate.
    assert normalised.max() < 4
    assert np.all(pp.normalise_intensity(np.full((8, 8), 7.0)) == 0)


def test_crop_is_centred_on_the_heart():
    record = make_record(shape=(128, 128), centre=(40.0, 90.0), radius=12)
    plan = pp.PreprocessPlan(target_spacing_mm=None, crop_size=64, jitter_px=8)
    cropped = pp.preprocess_record(record, plan)
    assert cropped.image.shape == (64, 64)
    assert cropped.masks[LV].sum() == record.masks[LV].sum()
    np.testing.assert_allclose(centroid(cropped.masks[LV]), (32, 32), atol=0.01)
    assert cropped.geometry.crop_box == (8, 72, 58, 122)
    # The crop is the normalised full image, cut where the box says.
    full = pp.normalise_intensity(record.image)
    np.testing.assert_array_equal(cropped.image, full[8:72, 58:122])


def test_inference_crop_is_centred_on_the_image():
    record = make_record(shape=(128, 100), centre=(40.0, 30.0), radius=12)
    plan = pp.PreprocessPlan(target_spacing_mm=None, crop_size=64, jitter_px=0)
    cropped = pp.preprocess_record(record, plan, centre="image")
    assert cropped.geometry.crop_box == (32, 96, 18, 82)


def test_jitter_moves_the_crop_within_bounds():
    record = make_record(shape=(128, 128), centre=(64.0, 64.0), radius=12)
    plan = pp.PreprocessPlan(target_spacing_mm=None, crop_size=64, jitter_px=6)
    rng = np.random.default_rng(0)
    base = pp.preprocess_record(record, plan).geometry.crop_box
    seen = set()
    for _ in range(200):
        row, col = rng.integers(-plan.jitter_px, plan.jitter_px + 1, size=2)
        offset = (int(row), int(col))
        assert max(abs(offset[0]), abs(offset[1])) <= plan.jitter_px
        seen.add(offset)
        box = pp.preprocess_record(record, plan, offset=offset).geometry.crop_box
        assert box == (base[0] + offset[0], base[1] + offset[0], base[2] + offset[1],
                       base[3] + offset[1])  # fmt: skip
    assert len(seen) > 50  # covers the range rather than a few points
    assert {o[0] for o in seen} == set(range(-6, 7))


def test_crop_near_the_border_is_padded():
    record = make_record(shape=(96, 96), centre=(8.0, 90.0), radius=6)
    plan = pp.PreprocessPlan(target_spacing_mm=None, crop_size=64, jitter_px=0)
    cropped = pp.preprocess_record(record, plan)
    assert cropped.image.shape == (64, 64)
    assert cropped.masks[LV].sum() == record.masks[LV].sum()
    r0, _, c0, _ = cropped.geometry.crop_box
    assert r0 < 0
    full = pp.normalise_intensity(record.image)
    # Padding is the image's darkest clipped value, the masks' background.
    assert np.all(cropped.image[:-r0] == full.min())
    assert not cropped.masks[LV][:-r0].any()


def test_masks_stay_binary_and_aligned_after_full_preprocessing():
    record = make_record(shape=(80, 80), centre=(35.0, 45.0), radius=10, spacing=(1.5, 1.5),
                         myocardium=True)  # fmt: skip
    plan = pp.PreprocessPlan(target_spacing_mm=(1.0, 1.0), crop_size=64, jitter_px=0)
    out = pp.preprocess_record(record, plan)
    for mask in out.masks.values():
        assert mask.dtype == bool
    assert not (out.masks[LV] & out.masks[MYOCARDIUM]).any()
    # The ring surrounds the LV: same centre.
    np.testing.assert_allclose(centroid(out.masks[LV]), centroid(out.masks[MYOCARDIUM]), atol=0.5)
    assert out.image[out.masks[LV]].mean() > out.image[~out.masks[LV]].mean() + 2


def test_to_source_grid_maps_a_prediction_back():
    record = make_record(shape=(80, 90), centre=(30.0, 50.0), radius=12, spacing=(1.6, 1.6))
    plan = pp.PreprocessPlan(target_spacing_mm=(1.0, 1.0), crop_size=64, jitter_px=0)
    out = pp.preprocess_record(record, plan)
    back = pp.to_source_grid(out.masks[LV].astype(np.float32), out.geometry) > 0.5
    assert back.shape == (80, 90)
    original = record.masks[LV]
    dice = 2 * (back & original).sum() / (back.sum() + original.sum())
    assert dice > 0.97


def test_stack_masks_flags_labelled_structures():
    record = make_record(myocardium=True)
    masks, labelled = pp.stack_masks(record)
    assert masks.shape == (3, 96, 96) and masks.dtype == np.uint8
    assert labelled.tolist() == [True, True, False]
    assert set(np.unique(masks)) <= {0, 1}
    assert not masks[2].any()


@settings(max_examples=50, deadline=None)
@given(st.integers(-20, 30), st.integers(-20, 30), st.integers(1, 40), st.integers(1, 40))
def test_crop_padded_matches_a_padded_reference(row0, col0, height, width):
    array = np.arange(20 * 24, dtype=np.float32).reshape(20, 24)
    box = (row0, row0 + height, col0, col0 + width)
    pad = 64
    reference = np.pad(array, pad, constant_values=-1)[
        row0 + pad : row0 + pad + height, col0 + pad : col0 + pad + width
    ]
    np.testing.assert_array_equal(pp.crop_padded(array, box, -1.0), reference)


# ---- cache ---------------------------------------------------------------------------------


def write_png_dataset(root: Path, patients: int = 3, slices: int = 4) -> Path:
    """A Sunnybrook-like Images/ + Labels/ folder of small PNGs."""
    for p in range(patients):
        for s in range(slices):
            centre = (30 + 3 * s, 34 + 2 * p)
            lv = disc((72, 72), centre, 8 + s)
            rng = np.random.default_rng(p * 10 + s)
            image = np.clip(40 + 10 * rng.standard_normal((72, 72)) + 120 * lv, 0, 255)
            name = f"SC-N-{p:02d}-IM-0001-{s * 20 + 1:04d}.dcm.png"
            for folder, array in (("Images", image), ("Labels", 255 * lv)):
                (root / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array.astype(np.uint8)).save(root / folder / name)
    return root


@pytest.fixture
def png_dataset(tmp_path):
    return read(write_png_dataset(tmp_path / "data"))


@pytest.fixture
def small_plan():
    return pp.PreprocessPlan(target_spacing_mm=None, crop_size=32, jitter_px=4)


def test_cache_contents_equal_direct_preprocessing(png_dataset, small_plan, tmp_path):
    cache = pp.build_cache(png_dataset, small_plan, tmp_path / "cache")
    assert len(cache) == len(png_dataset) == 12
    assert cache.images.shape == (12, 40, 40) and cache.images.dtype == np.float32
    assert cache.masks.shape == (12, 3, 40, 40) and cache.masks.dtype == np.uint8
    assert isinstance(cache.images, np.memmap)
    assert cache.labelled.tolist() == [[True, False, False]] * 12
    for i, record in enumerate(png_dataset):
        for offset in ((0, 0), (-4, 4), (3, -2)):
            direct = pp.preprocess_record(record, small_plan, offset=offset)
            image, masks = cache.crop(i, offset)
            np.testing.assert_array_equal(image, direct.image)
            np.testing.assert_array_equal(masks, pp.stack_masks(direct)[0])
            assert cache.crop_box(i, offset) == direct.geometry.crop_box
    assert cache.entries[0]["patient_id"] == png_dataset[0].patient_id
    assert cache.geometry(0).original_shape == (72, 72)


def test_far_crops_read_the_stored_reach_and_move_only_the_share_asked(png_dataset, tmp_path):
    plan = pp.PreprocessPlan(target_spacing_mm=None, crop_size=32, jitter_px=4, reach_px=16)
    assert plan.margin_px == 16 and plan.context_size == 64
    cache = pp.build_cache(png_dataset, plan, tmp_path / "cache")
    assert cache.images.shape == (12, 64, 64)
    for i, record in enumerate(png_dataset):
        for offset in ((0, 0), (-16, 16), (11, -3)):  # beyond the jitter, within the reach
            direct = pp.preprocess_record(record, plan, offset=offset)
            np.testing.assert_array_equal(cache.crop(i, offset)[0], direct.image)
            assert cache.crop_box(i, offset) == direct.geometry.crop_box
    with pytest.raises(ValueError, match="beyond the cached margin of 16 px"):
        cache.crop(0, (17, 0))
    rng = np.random.default_rng(0)
    offsets = cache.random_offsets(2000, rng)
    assert np.abs(offsets).max() == 4
    cache.far_offsets(offsets, 0.25, rng)
    far = np.abs(offsets).max(axis=1) > 4
    assert 0.15 < far.mean() < 0.25  # a quarter moved, most of them beyond the jitter
    assert np.abs(offsets).max() == 16
    untouched = offsets.copy()
    cache.far_offsets(untouched, 0.0, rng)  # no share: nothing drawn, nothing moved
    assert np.array_equal(untouched, offsets)


def test_cache_is_reused_and_invalidated(png_dataset, small_plan, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    first = pp.build_cache(png_dataset, small_plan, cache_dir)
    stamp = (first.path / pp.CACHE_IMAGES).stat().st_mtime_ns

    # A hit preprocesses nothing.
    def fail(*args, **kwargs):
        raise AssertionError("cache miss")

    with monkeypatch.context() as patch:
        patch.setattr(pp.cache, "preprocess_record", fail)
        second = pp.build_cache(png_dataset, small_plan, cache_dir)
    assert second.path == first.path and second.key == first.key
    assert (second.path / pp.CACHE_IMAGES).stat().st_mtime_ns == stamp

    # Another plan: another key and folder.
    other_plan = pp.PreprocessPlan(target_spacing_mm=None, crop_size=32, jitter_px=2)
    assert pp.build_cache(png_dataset, other_plan, cache_dir).path != first.path
    # Notes do not matter.
    noted = pp.PreprocessPlan(target_spacing_mm=None, crop_size=32, jitter_px=4, notes=["x"])
    assert pp.cache_key(png_dataset, noted) == first.key

    # A source file touched (new mtime): re-read, the key changes.
    source = Path(png_dataset[0].source)
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    reread = read(source.parents[1])
    rebuilt = pp.build_cache(reread, small_plan, cache_dir)
    assert rebuilt.key != first.key
    # A changed annotation file too.
    label = Path(png_dataset[1].annotation_sources[0])
    os.utime(label, ns=(label.stat().st_atime_ns, label.stat().st_mtime_ns + 10**9))
    assert pp.cache_key(read(source.parents[1]), small_plan) != rebuilt.key
    # No temporary folders left behind.
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".")]


def test_cache_key_of_in_memory_records_follows_content(small_plan):
    records = [make_record(seed=0), make_record(seed=1)]
    key = pp.cache_key(records, small_plan)
    assert pp.cache_key([make_record(seed=0), make_record(seed=1)], small_plan) == key
    changed = [make_record(seed=0), make_record(seed=2)]
    assert pp.cache_key(changed, small_plan) != key


def test_cache_index_is_json_with_geometry(png_dataset, small_plan, tmp_path):
    cache = pp.build_cache(png_dataset, small_plan, tmp_path / "cache", progress=None)
    index = json.loads((cache.path / pp.CACHE_INDEX).read_text())
    assert index["key"] == cache.key
    assert pp.PreprocessPlan.from_dict(index["plan"]) == small_plan
    entry = index["entries"][0]
    assert {"patient_id", "source", "zoom", "context_box", "pixel_spacing_mm"} <= set(entry)
    assert entry["context_box"][1] - entry["context_box"][0] == small_plan.context_size


def test_progress_callback_is_called(png_dataset, small_plan, tmp_path):
    calls = []
    pp.build_cache(
        png_dataset, small_plan, tmp_path / "cache", progress=lambda d, t: calls.append((d, t))
    )
    assert calls[0] == (1, 12) and calls[-1] == (12, 12)


def test_batches_cover_an_epoch_and_match_crops(png_dataset, small_plan, tmp_path):
    cache = pp.build_cache(png_dataset, small_plan, tmp_path / "cache", in_memory=True)
    batches = list(cache.batches(5, shuffle=True, jitter=True, seed=1, epoch=0))
    assert [len(b.indices) for b in batches] == [5, 5, 2]
    seen = torch.cat([b.indices for b in batches]).tolist()
    assert sorted(seen) == list(range(12))
    first = batches[0]
    assert first.images.shape == (5, 1, 32, 32) and first.masks.shape == (5, 3, 32, 32)
    assert first.labelled.shape == (5, 3) and first.labelled.dtype == torch.bool
    # Reproducible per (seed, epoch).
    repeat = next(cache.batches(5, seed=1, epoch=0))
    assert torch.equal(repeat.images, first.images) and torch.equal(repeat.indices, first.indices)
    other = next(cache.batches(5, seed=1, epoch=1))
    assert not torch.equal(other.images, first.images)
    # Without jitter a batch is the centred crops.
    plain = cache.batch([0, 4])
    np.testing.assert_array_equal(plain.images[1, 0].numpy(), cache.crop(4)[0])
    assert len(list(cache.batches(5, drop_last=True))) == 2
    with pytest.raises(ValueError):
        cache.batch([0], np.array([[small_plan.jitter_px + 1, 0]]))


def test_patient_indices_for_splits(png_dataset, small_plan, tmp_path):
    cache = pp.build_cache(png_dataset, small_plan, tmp_path / "cache")
    indices = cache.indices_of(["SC-N-01"])
    assert len(indices) == 4
    assert {cache.patient_ids[i] for i in indices} == {"SC-N-01"}


# ---- the real data -----------------------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.skipif(
    not SHARED_PNG.exists(),
    reason="Sunnybrook PNGs not found at ../shared/data/sunnybrook-png (run from the repo root)",
)
def test_sunnybrook_png_plan_and_cache(tmp_path):
    dataset = read(SHARED_PNG)
    fp = pp.fingerprint(dataset)
    # No spacing in the files: the reader gives Sunnybrook patients 1.33 mm, so the plan keeps
    # their grid (zoom 1) and works in mm.
    assert fp.n_records == 526 and fp.spacing_known == 526
    plan = pp.plan_preprocessing(fp)
    assert plan.target_spacing_mm == (1.33, 1.33)
    assert plan.crop_size in (96, 112, 128) and plan.crop_size % 16 == 0
    assert 0 < plan.jitter_px <= plan.crop_size // 4
    cache = pp.build_cache(dataset, plan, tmp_path / "cache")
    # Every LV lies wholly inside its crop, at the centre and at the extreme jitter.
    j = plan.jitter_px
    for i, record in enumerate(dataset):
        area = record.masks[LV].sum()
        assert cache.crop(i)[1][0].sum() == area
        assert cache.crop(i, (j, -j))[1][0].sum() == area
    # And inside the image-centred inference crop.
    for record in dataset.records[::25]:
        inference = pp.preprocess_record(record, plan, centre="image")
        assert inference.masks[LV].sum() == record.masks[LV].sum()
