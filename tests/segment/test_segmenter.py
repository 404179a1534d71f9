"""The segmenter on its own: stacks, where the crop goes, and masks back on the source grid, with
a NumPy "network" whose answer is known exactly (no torch, no ONNX Runtime)."""

from __future__ import annotations

import numpy as np
import pytest
from builders import disc, plain_plan

from lvseg.data.preprocess import PreprocessPlan
from lvseg.data.records import LV, Geometry, SliceRecord
from lvseg.errors import InvalidInputError
from lvseg.segment.locate import voting_frames
from lvseg.segment.segmenter import Segmenter, stacks

SHAPE = (48, 96)
HEART = (12.0, 78.0)  # far from the image centre (23.5, 47.5)
BLOB = (24.0, 46.0)  # a bright distractor at the centre, on one slice only


class Threshold:
    """Calls a pixel LV when it is brighter than the half-way level of its image."""

    lv_class = 1

    def logits(self, images: np.ndarray) -> np.ndarray:
        high = images.max(axis=(1, 2, 3), keepdims=True)
        low = images.min(axis=(1, 2, 3), keepdims=True)
        lv = 40 * (images - (high + low) / 2)
        return np.concatenate([np.zeros_like(lv), lv], axis=1)


def plan(crop: int = 32) -> PreprocessPlan:
    return plain_plan(None, crop)  # no spacing: the network sees the images as they are


def stack(patient: str = "P1", slices: int = 3, phases: int = 2, **fields) -> list[SliceRecord]:
    records = []
    for s in range(slices):
        for p in range(phases):
            lv = disc(SHAPE, HEART, 6 - s - p)
            image = np.where(lv, 900.0, 100.0).astype(np.float32)
            if s == 1:
                image[disc(SHAPE, BLOB, 2)] = 900.0
            records.append(
                SliceRecord(
                    image=image,
                    masks={LV: lv},
                    patient_id=patient,
                    source=f"{patient}-{s}-{p}.png",
                    geometry=Geometry(SHAPE),
                    **{"slice_index": s, "phase_index": p, **fields},
                )
            )
    return records


def test_the_located_crop_holds_the_heart_and_masks_come_back_exactly():
    records = stack()
    results = Segmenter(Threshold(), plan()).segment(records)
    placement = results[0].placement
    assert placement.located and placement.scope == "stack"
    assert "3 slices x 2 phases" in placement.note
    assert all(r.placement is placement for r in results)  # one centre for the whole stack
    assert np.abs(np.subtract(placement.centre, HEART)).max() < 1.0
    for record, result in zip(records, results, strict=True):
        assert result.record is record and result.crop.image.shape == (32, 32)
        assert result.probability.shape == (32, 32)
        assert np.array_equal(result.mask, record.masks[LV]), record.source
        # the crop's masks are the reference cut as the image was
        assert result.crop.masks[LV].sum() == record.masks[LV].sum()


def test_the_centre_crop_cuts_at_the_image_centre_and_misses_this_heart():
    results = Segmenter(Threshold(), plan(), crop="centre").segment(stack())
    placement = results[0].placement
    assert not placement.located and placement.scope == "image"
    assert placement.centre == ((SHAPE[0] - 1) / 2, (SHAPE[1] - 1) / 2)
    assert not any((r.mask & r.record.masks[LV]).any() for r in results)
    assert results[2].mask.any()  # the distractor at the centre is all slice 1 shows


def test_records_without_a_slice_index_are_located_one_by_one():
    records = stack(slices=2, phases=1)
    records = [r.replace(slice_index=None) for r in records]
    results = Segmenter(Threshold(), plan()).segment(records)
    assert [r.placement.scope for r in results] == ["slice", "slice"]
    assert results[0].placement is not results[1].placement
    assert "one frame" in results[0].placement.note
    assert np.array_equal(results[0].mask, records[0].masks[LV])


def test_an_image_that_fits_in_the_crop_is_centred():
    results = Segmenter(Threshold(), plan(crop=96)).segment(stack(slices=1, phases=1))
    assert not results[0].placement.located and "fits in the crop" in results[0].placement.note


def test_results_keep_the_input_order_when_patients_interleave():
    a, b = stack("A", slices=2, phases=1), stack("B", slices=2, phases=1)
    records = [a[0], b[0], a[1], b[1]]
    assert stacks(records) == [[0, 2], [1, 3]]
    results = Segmenter(Threshold(), plan(), batch_size=1).segment(records)
    assert [r.record.source for r in results] == [r.source for r in records]


def test_stacks_part_by_patient_and_grid():
    records = stack("A", slices=1, phases=2) + stack("B", slices=1, phases=1)
    records.append(records[0].replace(image=np.zeros((40, 40), np.float32)))
    records.append(records[0].replace(slice_index=None))
    assert stacks(records) == [[0, 1], [2], [3], [4]]


def test_voting_frames_spread_over_the_cycle():
    slices = [s for s in range(2) for _ in range(20)]
    phases = [p for _ in range(2) for p in range(20)]
    assert sorted({phases[i] for i in voting_frames(slices, phases)}) == [0, 5, 10, 15]
    assert len(voting_frames(slices, phases)) == 8
    assert voting_frames([0, 0, 1], [0, 8, 8]) == [0, 1, 2]  # two phases: both vote


class LeftHalf:
    """Calls LV the left half of any image: a network that is not invariant to flips or turns,
    so test-time augmentation changes its answer in a way known exactly."""

    lv_class = 1

    def logits(self, images: np.ndarray) -> np.ndarray:
        lv = np.full(images.shape, -20.0, np.float32)
        lv[..., : images.shape[-1] // 2] = 20.0
        return np.concatenate([np.zeros_like(lv), lv], axis=1)


def test_tta_averages_the_eight_views_back_on_the_crop():
    records = stack(slices=1, phases=1)
    plain = Segmenter(LeftHalf(), plan(), crop="centre").segment(records)[0]
    tta = Segmenter(LeftHalf(), plan(), crop="centre", tta=True).segment(records)[0]
    np.testing.assert_allclose(plain.probability[:, :16], 1.0, atol=1e-6)
    # The 8 views: identity, 3 quarter turns, each mirrored. Each view's "left half" maps back
    # to the left, top, right or bottom half, twice each; a corner pixel lies in 2 of the 4
    # halves, so it averages to 1/2; along the middle, 1/2 too, by symmetry.
    np.testing.assert_allclose(tta.probability, 0.5, atol=1e-6)
    # A flip- and turn-invariant network gives the same answer with or without TTA.
    invariant = Segmenter(Threshold(), plan(), tta=True).segment(records)[0]
    located = Segmenter(Threshold(), plan()).segment(records)[0]
    np.testing.assert_allclose(invariant.probability, located.probability, atol=1e-6)
    np.testing.assert_array_equal(invariant.mask, located.mask)
    # how far the views agree: not at all for LeftHalf (every view calls 512 pixels LV, their
    # mean calls none), fully for the invariant network; not measured without TTA
    assert tta.view_agreement == 0.0 and invariant.view_agreement == 1.0
    assert plain.view_agreement is None and located.view_agreement is None


def test_largest_component_keeps_the_blood_pool_and_drops_a_stray_blob():
    lv = disc(SHAPE, (24.0, 48.0), 6)
    stray = disc(SHAPE, (24.0, 59.0), 2)
    image = np.where(lv | stray, 900.0, 100.0).astype(np.float32)
    record = SliceRecord(
        image=image, masks={LV: lv}, patient_id="P", source="p.png", geometry=Geometry(SHAPE)
    )
    every = Segmenter(Threshold(), plan(), crop="centre", largest_component=False)
    every = every.segment([record])[0].mask
    largest = Segmenter(Threshold(), plan(), crop="centre").segment([record])[0].mask
    np.testing.assert_array_equal(every, lv | stray)  # the threshold calls both
    np.testing.assert_array_equal(largest, lv)  # the blob is gone, the pool untouched


def test_an_unknown_crop_is_refused():
    with pytest.raises(InvalidInputError, match="unknown crop 'middle'"):
        Segmenter(Threshold(), plan(), crop="middle")


def test_the_segmenter_depends_only_on_the_layers_below_it():
    """``segment`` sits under every command that runs a model: it imports data, model and the
    root helpers, never a consumer (evaluate, explain, deploy, train, runs, cli) and never torch
    at module level (the lean predict install has none)."""
    import ast
    from pathlib import Path

    import lvseg.segment

    allowed = ("lvseg.data", "lvseg.model", "lvseg.segment", "lvseg.errors", "lvseg.layout")
    for path in Path(lvseg.segment.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: torch is imported inside TorchNetwork
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                assert name.split(".")[0] != "torch", (path.name, name)
                if name.startswith("lvseg"):
                    assert name.startswith(allowed), (path.name, name)
