"""Quality-control signals and score on constructed segmentations with known failures."""

from __future__ import annotations

import numpy as np
import pytest

from lvseg.data.records import Geometry, SliceRecord
from lvseg.evaluate.quality import fit_quality_model
from lvseg.segment.locate import Placement
from lvseg.segment.quality import SIGNALS, QualityModel, frame_signals
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
    again = QualityModel.from_dict(model.to_dict())
    np.testing.assert_array_equal(again.predict(signals), predicted)
    with pytest.raises(ValueError, match="other signals"):
        QualityModel.from_dict({**model.to_dict(), "signals": ["area"]})
    with pytest.raises(ValueError, match="under and over"):
        fit_quality_model(signals[::2], dice[::2])


def test_assess_measures_the_score_on_fixed_frames():
    from lvseg.evaluate.quality import assess
    from lvseg.segment.quality import Judgement

    predicted = np.array([0.9, 0.8, 0.4, np.nan, 0.95, np.nan])
    flagged = np.array([False, False, True, True, False, False])
    truth = [0.92, 0.5, 0.3, 0.0, 0.9, 0.85]
    found = assess(Judgement(predicted, flagged, {}, 0.7), truth, (-0.1, 0.05))
    assert found["frames"] == 6 and found["scored_frames"] == 4 and found["failures"] == 3
    # risk: 0.9, 0.8, 0.4, 0 (flagged hole), 0.95, 1 (unscored, not flagged); the failures
    # (0.8, 0.4, 0) against the others (0.9, 0.95, 1): every pair in order
    assert found["auroc"] == 1.0
    assert found["mae"] == pytest.approx((0.02 + 0.3 + 0.1 + 0.05) / 4)
    assert found["spearman"] == pytest.approx(0.8)
    assert found["interval_coverage"] == 0.5  # 0.92 in [0.8, 0.95], 0.9 in [0.85, 1.0]
    assert found["failures_flagged"] == pytest.approx(2 / 3) and found["good_flagged"] == 0.0
    assert [c["frames"] for c in found["calibration"]] == [1, 1, 1, 1]


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
