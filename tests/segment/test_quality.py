"""Quality-control signals and score on constructed segmentations with known failures."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from lvseg.data.records import Geometry, SliceRecord
from lvseg.evaluate.quality import fit_quality_model
from lvseg.segment.locate import Placement
from lvseg.segment.quality import (
    SCORED,
    SIGNALS,
    TTA_SCORED,
    QualityModel,
    frame_signals,
    judge,
    mode_mismatch,
    scorer_for,
)
from lvseg.segment.segmenter import SliceSegmentation

SIZE = 48
PLACEMENT = Placement((24.0, 24.0), located=True, scope="stack", note="test")


def disc(radius: float, centre=(24.0, 24.0), sharpness: float = 4.0) -> np.ndarray:
    """A soft disc of LV probability: ~1 inside, ~0 outside, a rim of doubt at the edge."""
    rows, cols = np.mgrid[:SIZE, :SIZE]
    distance = np.hypot(rows - centre[0], cols - centre[1])
    return (1.0 / (1.0 + np.exp(sharpness * (distance - radius)))).astype(np.float32)


def frame(probability: np.ndarray, slice_index: int = 0, phase: int = 0) -> SliceSegmentation:
    record = SliceRecord(
        image=np.zeros((SIZE, SIZE), np.float32),
        masks={},
        patient_id="P1",
        source="test",
        geometry=Geometry(original_shape=(SIZE, SIZE)),
        slice_index=slice_index,
        phase_index=phase,
        pixel_spacing_mm=(1.5, 1.5),
    )
    crop = record.replace(pixel_spacing_mm=(1.5, 1.5))
    return SliceSegmentation(record, crop, probability, probability > 0.5, PLACEMENT)


def signals_of(*probabilities: np.ndarray) -> list[dict[str, float]]:
    return frame_signals([frame(p, slice_index=i) for i, p in enumerate(probabilities)])


def test_a_clean_disc_is_confident_solid_and_whole():
    (clean,) = signals_of(disc(10))
    assert list(clean) == list(SIGNALS)
    assert clean["area"] == pytest.approx(np.pi * 10**2 * 1.5**2, rel=0.05)
    assert clean["peak"] > 0.99 and clean["uncertainty"] < 0.3
    assert clean["fragments"] == 1 and clean["kept"] == 1.0
    assert clean["solidity"] > 0.9 and clean["edge"] == 0.0
    assert clean["area_jump"] == 0.0 and clean["drift"] == 0.0  # no other frame to compare


def test_constructed_failures_raise_their_signal():
    clean = signals_of(disc(10))[0]
    empty = signals_of(np.full((SIZE, SIZE), 0.05, np.float32))[0]
    assert empty["area"] == 0 and empty["peak"] < 0.1 and empty["solidity"] == 1.0
    doubtful = signals_of(np.clip(disc(10, sharpness=0.3), 0.3, 0.7))[0]
    assert doubtful["uncertainty"] > 3 * clean["uncertainty"]
    fragmented = np.maximum(disc(6, (12, 12)), disc(5, (36, 34)))
    pieces = signals_of(np.maximum(fragmented, disc(4, (10, 38))))[0]
    assert pieces["fragments"] == 3 and pieces["kept"] < 0.5
    beside = signals_of(disc(10, centre=(24.0, 2.0)))[0]  # the crop cuts the LV
    assert beside["edge"] > 0.2
    ring = disc(10) * (1 - disc(6, (24, 28)))  # a crescent
    assert signals_of(ring)[0]["solidity"] < clean["solidity"] - 0.2


def test_stack_signals_find_the_odd_frame():
    stack = [disc(10), disc(9), disc(4), disc(8), disc(7)]
    stack[4] = disc(7, centre=(10.0, 38.0))  # a slice segmented elsewhere
    found = signals_of(*stack)
    jumps = [s["area_jump"] for s in found]
    assert np.argmax(jumps) == 2 and jumps[2] > 1.0 and jumps[0] < 0.3
    drifts = [s["drift"] for s in found]
    assert np.argmax(drifts) == 4 and drifts[4] == pytest.approx(1.5 * np.hypot(14, 14), abs=1)
    assert max(drifts[:4]) < 2.0


def test_the_score_separates_failures_and_round_trips():
    rng = np.random.default_rng(0)
    frames, dice = [], []
    for _ in range(30):
        radius = rng.uniform(6, 12)
        frames.append(disc(radius, sharpness=rng.uniform(2, 6)))
        dice.append(rng.uniform(0.85, 0.97))
        frames.append(np.clip(disc(radius, sharpness=rng.uniform(0.2, 0.5)), 0.2, 0.8))
        dice.append(rng.uniform(0.1, 0.6))
    signals = frame_signals([frame(p, slice_index=None) for p in frames])
    model = fit_quality_model(signals, dice)
    predicted = model.predict(signals)
    failed = np.array(dice) < 0.7
    assert predicted[failed].max() < 0.7 < predicted[~failed].min()
    assert model.fitted_on == 60 and model.interval[0] <= 0 <= model.interval[1]
    assert model.signals == SCORED and len(model.weights) == len(SCORED)
    again = QualityModel.from_dict(model.to_dict())
    np.testing.assert_array_equal(again.predict(signals), predicted)
    with pytest.raises(ValueError, match="does not compute: \\['colour'\\]"):
        QualityModel.from_dict({**model.to_dict(), "signals": ["uncertainty", "colour"]})
    with pytest.raises(ValueError, match="mean has 2 values for 1"):
        QualityModel.from_dict({**model.to_dict(), "signals": ["uncertainty"]})
    with pytest.raises(ValueError, match="under and over"):
        fit_quality_model(signals[::2], dice[::2])
    # the interval, per range of the score: four ranges of 15 frames, each range's 10-90%
    # residual quantiles; the likely failures' Dice (0.1-0.6) is far less certain than the
    # likely successes' (0.85-0.97)
    assert len(model.interval_edges) == 3 and len(model.interval_low) == 4
    widths = np.subtract(model.interval_high, model.interval_low)
    # the two ranges of higher failure scores hold the failures: their intervals are wider
    assert min(widths[2:]) > 1.5 * max(widths[:2])
    judged = judge(model, [frame(p, slice_index=None).record for p in frames], signals)
    assert (judged.dice_low <= judged.predicted_dice).all()
    assert (judged.predicted_dice <= judged.dice_high).all()
    inside = (judged.dice_low <= dice) & (np.array(dice) <= judged.dice_high)
    assert 0.6 <= inside.mean() <= 0.95  # 10-90% quantiles, fitted on these very frames


def test_a_plain_score_carries_the_tta_one_and_each_judges_its_own_frames():
    rng = np.random.default_rng(1)
    frames, dice, agreement = [], [], []
    for _ in range(30):
        frames.append(disc(rng.uniform(6, 12), sharpness=rng.uniform(2, 6)))
        dice.append(rng.uniform(0.85, 0.97))
        agreement.append(rng.uniform(0.9, 1.0))
        frames.append(np.clip(disc(rng.uniform(6, 12), sharpness=0.4), 0.2, 0.8))
        dice.append(rng.uniform(0.1, 0.6))
        agreement.append(rng.uniform(0.3, 0.8))
    results = [frame(p, slice_index=None) for p in frames]
    plain = fit_quality_model(frame_signals(results), dice)
    for result, value in zip(results, agreement, strict=True):
        result.view_agreement = value
    with_views = frame_signals(results)
    assert [s["disagreement"] for s in with_views] == pytest.approx([1 - a for a in agreement])
    tta = fit_quality_model(with_views, dice, use=TTA_SCORED, tta=True)
    both = dataclasses.replace(plain, with_tta=tta)
    again = QualityModel.from_dict(json.loads(json.dumps(both.to_dict())))
    assert again == both and again.for_tta(False) is again and again.for_tta(True) == tta
    assert tta.for_tta(True) is tta and plain.for_tta(True) is None and tta.for_tta(False) is None
    assert scorer_for(None, True) is None and scorer_for(both, True) == tta
    assert "fitted on frames segmented without" in mode_mismatch(plain, True)
    assert tta.weights[TTA_SCORED.index("disagreement")] > 0  # views that disagree: failed


def test_presence_reads_the_class_map_the_presence_head_pools():
    (sure,) = signals_of(np.where(disc(10) > 0.5, 0.99, 0.01).astype(np.float32))
    inside = (disc(10) > 0.5).mean()
    # log(0.99 / 0.01) = 4.595 inside the disc, its negative outside
    assert sure["presence"] == pytest.approx(4.595 * (2 * inside - 1), abs=1e-3)
    (nothing,) = signals_of(np.zeros((SIZE, SIZE), np.float32))
    assert nothing["presence"] == pytest.approx(np.log(1e-4 / (1 - 1e-4)))  # clipped
    (faint,) = signals_of(np.where(disc(10) > 0.5, 0.6, 0.01).astype(np.float32))
    assert faint["presence"] < sure["presence"]


def test_assess_measures_the_score_on_fixed_frames():
    from lvseg.evaluate.quality import assess
    from lvseg.segment.quality import Judgement

    predicted = np.array([0.9, 0.8, 0.4, np.nan, 0.95, np.nan])
    flagged = np.array([False, False, True, True, False, False])
    truth = [0.92, 0.5, 0.3, 0.0, 0.9, 0.85]
    judged = Judgement(predicted, flagged, {}, 0.7, None, predicted - 0.1, predicted + 0.05)
    found = assess(judged, truth)
    assert found.frames == 6 and found.scored_frames == 4 and found.failures == 3
    # risk: 0.9, 0.8, 0.4, 0 (flagged hole), 0.95, 1 (unscored, not flagged); the failures
    # (0.8, 0.4, 0) against the others (0.9, 0.95, 1): every pair in order
    assert found.auroc == 1.0 and found.auroc_segmented == 1.0
    assert found.empty_failures == 1 and found.empty_failures_flagged == 1
    assert found.mae == pytest.approx((0.02 + 0.3 + 0.1 + 0.05) / 4)
    assert found.spearman == pytest.approx(0.8)
    assert found.interval_coverage == 0.5  # 0.92 in [0.8, 0.95], 0.9 in [0.85, 1.0]
    assert found.failures_flagged == pytest.approx(2 / 3) and found.good_flagged == 0.0
    assert [c.frames for c in found.calibration] == [1, 1, 1, 1]


def test_the_shipped_score_flags_constructed_failures_and_passes_a_clean_stack():
    from lvseg.segment.quality import default_quality_model, judge

    scorer = default_quality_model()
    assert scorer is not None, "lvseg ships lvseg/segment/quality.json"
    assert scorer.fitted_on > 1000 and "CV" in scorer.source
    # a clean stack: five slices of one phase, sharp discs shrinking toward the apex
    clean = [disc(r) for r in (12, 11, 10, 8, 6)]
    frames = [frame(p, slice_index=i) for i, p in enumerate(clean)]
    judged = judge(scorer, [f.record for f in frames], frame_signals(frames))
    assert not judged.flagged.any(), judged.reasons
    assert (judged.predicted_dice > 0.8).all()
    # the same stack with one failure at a time in the middle slice
    failures = {
        "empty": np.full((SIZE, SIZE), 0.02, np.float32),
        "beside": disc(10, centre=(24.0, 3.0)),
        "fragmented": np.maximum.reduce([disc(5, (12, 12)), disc(5, (36, 34)), disc(5, (12, 38))]),
        "doubtful": np.clip(disc(10, sharpness=0.3), 0.3, 0.7),
    }
    for name, probability in failures.items():
        stack = list(clean)
        stack[2] = probability
        frames = [frame(p, slice_index=i) for i, p in enumerate(stack)]
        judged = judge(scorer, [f.record for f in frames], frame_signals(frames))
        assert judged.flagged.tolist() == [False, False, True, False, False], (name, judged.reasons)
        assert judged.reasons[2], name


def phantom_frames(blur_px: float = 0.7) -> list[SliceSegmentation]:
    """A phantom patient's whole cine (every slice with an LV, all 20 phases) segmented as a
    confident, right network would: its LV probability is the true mask, blurred by
    ``blur_px`` (a rim of doubt about a pixel wide), on the image's own 1.2 mm grid (about the
    crop's: the Sunnybrook plan resamples to 1.33 mm)."""
    import scipy.ndimage as ndi

    from lvseg.data.phantom import generate_patient, patient_records
    from lvseg.data.records import LV

    patient = generate_patient(0)
    frames = []
    for record in patient_records(patient, "all"):
        truth = np.asarray(record.masks[LV], np.float32)
        probability = np.clip(ndi.gaussian_filter(truth, blur_px), 0, 1).astype(np.float32)
        frames.append(SliceSegmentation(record, record, probability, truth > 0.5, PLACEMENT))
    return frames


def test_a_clean_phantom_study_is_not_flagged_and_its_broken_frames_are():
    from lvseg.segment.quality import default_quality_model, judge

    scorer = default_quality_model()
    frames = phantom_frames()
    records = [f.record for f in frames]
    assert len({r.phase_index for r in records}) == 20 and len(frames) == 171
    judged = judge(scorer, records, frame_signals(frames))
    assert not judged.flagged.any(), judged.reasons
    # the apical slices' small cavities are the least sure (a one-pixel rim is more of them)
    assert np.nanmin(judged.predicted_dice) > 0.75 and np.median(judged.predicted_dice) > 0.9
    # the same study, one mid-ventricular frame at a time broken as a network breaks it
    middle = max(range(len(frames)), key=lambda i: frames[i].probability.sum())
    rows, cols = frames[middle].probability.shape
    broken = {
        "empty": np.zeros((rows, cols), np.float32),
        "doubtful": np.clip(frames[middle].probability, 0.35, 0.65),
        "scattered": np.roll(frames[middle].probability, cols // 3, axis=1) * 0.9
        + np.roll(frames[middle].probability, -cols // 3, axis=1),
    }
    for name, probability in broken.items():
        changed = list(frames)
        result = frames[middle]
        changed[middle] = SliceSegmentation(
            result.record, result.crop, probability, probability > 0.5, PLACEMENT
        )
        judged = judge(scorer, records, frame_signals(changed))
        assert np.flatnonzero(judged.flagged).tolist() == [middle], (name, judged.reasons)
