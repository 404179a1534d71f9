"""Summaries, breakdowns, slice positions and clinical stacks on hand-made rows and records."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from lvseg import jsonsafe
from lvseg.data.records import ED, ES, LV, MYOCARDIUM, Geometry, SliceRecord
from lvseg.evaluate import stacks, summary


def row(patient, dice, apd, *, hd95=None, good=None, detected=True, **extra):
    good = (apd is not None and apd < 5) if good is None else good
    return {
        "patient_id": patient,
        "dice": dice,
        "iou": dice / (2 - dice),
        "precision": dice,
        "recall": dice,
        "pixel_accuracy": 0.99,
        "background_accuracy": 0.98,
        "hd95": hd95 if hd95 is not None else apd,
        "assd": apd,
        "apd": apd,
        "good_contour_5mm": good,
        "good_contour_4mm": apd is not None and apd < 4,
        "detected": detected,
        "false_positive": False,
        **extra,
    }


def test_summary_means_rates_and_good_contours_only():
    rows = [
        row("A", 0.9, 2.0, phase=ED, position="basal", group="N"),
        row("A", 0.8, 4.5, phase=ES, position="mid", group="N"),
        row("B", 0.0, None, detected=False, good=False, phase=ED, position="apical", group="HF"),
        row("B", 0.7, 6.0, phase=ES, position="mid", group="HF"),
    ]
    found = summary.summarise(rows)
    assert found.slices == 4 and found.patients == 2
    assert found.dice_mean == pytest.approx(0.6)
    assert found.dice_median == pytest.approx(0.75)
    assert found.apd_mm_mean == pytest.approx(12.5 / 3)  # the missed slice has no distance
    assert found.good_contour_rate_5mm == 0.5  # 2.0 and 4.5 of 4 contour slices
    assert found.good_contour_rate_4mm == 0.25
    assert found.detection_rate == 0.75
    assert found.pixel_accuracy == pytest.approx(0.99)
    assert found.background_only_accuracy == pytest.approx(0.98)
    good = found.good_contours_5mm
    assert good.slices == 2 and good.dice_mean == pytest.approx(0.85)
    assert good.apd_mm_mean == pytest.approx(3.25)  # flatters: the failures are left out

    patients = summary.by_patient(rows)
    assert [p.patient_id for p in patients] == ["A", "B"]
    assert patients[1].dice_mean == pytest.approx(0.35) and patients[1].detection_rate == 0.5

    parts = summary.breakdowns(rows)
    assert list(parts["position"]) == ["basal", "mid", "apical"]  # anatomical order
    assert parts["position"]["mid"].slices == 2
    assert parts["phase"]["ED"].dice_mean == pytest.approx(0.45)
    assert sorted(parts["group"]) == ["HF", "N"]
    assert doctest.testmod(summary).failed == 0


def test_json_safe_values():
    assert doctest.testmod(jsonsafe).failed == 0
    assert jsonsafe.json_safe((float("inf"), {"x": np.float64(-0.5)})) == [None, {"x": -0.5}]


def test_empty_rows_give_none_not_nan():
    found = summary.summarise([])
    assert found.slices == 0 and found.dice_mean is None and found.detection_rate is None


def record(patient, slice_index, area_px, *, phase=ED, spacing=(1.5, 1.5), position=None, myo=0):
    lv = np.zeros((40, 40), bool)
    lv.flat[:area_px] = True
    masks = {LV: lv}
    if myo:
        m = np.zeros((40, 40), bool)
        m.flat[-myo:] = True
        masks[MYOCARDIUM] = m
    return SliceRecord(
        image=np.zeros((40, 40), np.float32),
        masks=masks,
        patient_id=patient,
        source=f"{patient}-{slice_index}-{phase}",
        geometry=Geometry(original_shape=(40, 40)),
        slice_index=slice_index,
        slice_position_mm=position,
        phase_index=0 if phase == ED else 5,
        phase=phase,
        pixel_spacing_mm=spacing,
        slice_spacing_mm=None if spacing is None else 10.0,
    )


def test_slice_positions_put_the_base_at_the_larger_end():
    # slice 0 is the apex here (small), slice 5 the base: the order of the files does not matter
    records = [record("P", i, 100 + 100 * i) for i in range(6)]
    found = summary.slice_positions(records)
    assert [found[r.key] for r in records] == [
        "apical", "apical", "mid", "mid", "basal", "basal",
    ]  # fmt: skip
    assert summary.slice_positions(records[:2]) == {}  # too few locations for thirds


def test_clinical_volumes_ef_mass_and_agreement_from_areas():
    records, predicted = [], {}
    for i in range(4):
        ed = record("P", i, 400, phase=ED, myo=100)
        es = record("P", i, 200, phase=ES)
        records += [ed, es]
        predicted[ed.key] = ed.masks[LV].copy()
        half = np.zeros((40, 40), bool)
        half.flat[:100] = True  # predicted ES area is half the reference
        predicted[es.key] = half
    section = stacks.clinical_section(records, predicted)
    assert section.volume_units == "ml"
    (patient,) = section.patients
    pixel_mm2 = 1.5 * 1.5
    edv = 4 * 400 * pixel_mm2 * 10 / 1000
    assert patient.reference.edv == pytest.approx(edv)
    assert patient.reference.esv == pytest.approx(edv / 2)
    assert patient.reference.ef == pytest.approx(0.5)
    assert patient.predicted.ef == pytest.approx(0.75)
    assert patient.reference.mass_g == pytest.approx(4 * 100 * pixel_mm2 * 10 / 1000 * 1.05)
    assert patient.predicted.mass_g is None  # the networks segment the blood pool only
    assert patient.stack[ES].predicted_area == [100 * pixel_mm2] * 4
    assert section.agreement.ef.bias == pytest.approx(0.25)
    assert section.agreement.ef.n == 1


def test_clinical_without_spacing_is_relative_and_short_stacks_are_skipped():
    records = [record("P", i, 300, phase=p, spacing=None) for i in range(3) for p in (ED, ES)]
    records += [record("Q", 0, 300, phase=ED), record("Q", 0, 100, phase=ES)]
    predicted = {r.key: r.masks[LV] for r in records}
    section = stacks.clinical_section(records, predicted)
    assert section.volume_units == "relative" and "only the ejection fraction" in section.note
    assert [p.patient_id for p in section.patients] == ["P"]
    assert section.skipped[0].patient_id == "Q"
    assert section.agreement.edv is None and section.agreement.ef.bias == 0.0
    assert stacks.clinical_section([r.replace(phase=None) for r in records], predicted) is None
