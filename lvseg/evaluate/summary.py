"""From per-slice rows to the numbers a reviewer reads: overall means, per patient, breakdowns.

A *row* is one scored slice (:func:`lvseg.evaluate.metrics.SliceScores.to_dict` plus who and
where: ``patient_id``, ``group``, ``phase``, ``position``...). Everything here is plain Python
over rows, so the cross-validation benchmark can pool the rows of several folds and summarise
them with the same code as ``lvseg evaluate``.

Conventions (the report repeats them):

- Means of Dice, IoU, precision, recall and accuracies are over **all** scored slices.
- Distance means (HD95, ASSD, APD) are over the slices where the distance is defined: a slice
  where exactly one of prediction and reference is empty has no distance and is left out; it
  still counts against the detection and good-contour rates.
- Good-contour and detection rates are shares of the slices with a non-empty reference LV.
- ``good_contours_*`` repeat the means over good contours only: the challenge's convention,
  which flatters a method (its failures are left out), so both are reported.

>>> rows = [{"patient_id": "P1", "dice": 0.9, "apd": 1.0, "good_contour_5mm": True},
...         {"patient_id": "P1", "dice": 0.5, "apd": 7.0, "good_contour_5mm": False}]
>>> mean(r["dice"] for r in rows), rate(r["good_contour_5mm"] for r in rows)
(0.7, 0.5)
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lvseg.data.records import LV, SliceRecord

POSITIONS = ("basal", "mid", "apical")
GOOD_DISTANCES = ("apd", "hd95", "assd")
"""The distances of the good-contour summary, in the order the challenge reports them."""


def _kept(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if v is not None]


def mean(values: Iterable[Any]) -> float | None:
    """Mean of the defined values (None where there are none)."""
    kept = _kept(values)
    return statistics.fmean(kept) if kept else None


def median(values: Iterable[Any]) -> float | None:
    kept = _kept(values)
    return statistics.median(kept) if kept else None


def std(values: Iterable[Any]) -> float | None:
    """Population standard deviation of the defined values, as the CV tables report it."""
    kept = _kept(values)
    return statistics.pstdev(kept) if kept else None


def rate(flags: Iterable[bool | None]) -> float | None:
    """Share of True among the defined flags (None where there are none)."""
    kept = [bool(f) for f in flags if f is not None]
    return sum(kept) / len(kept) if kept else None


@dataclass
class GroupStats:
    """The short block of a breakdown table: slices, Dice, IoU, HD95, APD, good contours."""

    slices: int
    dice_mean: float | None
    dice_std: float | None
    dice_median: float | None
    iou_mean: float | None
    hd95_mm_mean: float | None
    apd_mm_mean: float | None
    good_contour_rate_5mm: float | None


@dataclass
class GoodContours:
    """The means over good contours only (APD under a threshold): the challenge's convention."""

    slices: int
    dice_mean: float | None
    apd_mm_mean: float | None
    hd95_mm_mean: float | None
    assd_mm_mean: float | None


@dataclass
class Summary(GroupStats):
    """The summary block of ``metrics.json`` (fields in the order ``--json`` prints them)."""

    patients: int
    precision_mean: float | None
    recall_mean: float | None
    pixel_accuracy: float | None
    background_only_accuracy: float | None
    assd_mm_mean: float | None
    good_contour_rate_4mm: float | None
    detection_rate: float | None
    false_positive_slices: int
    good_contours_5mm: GoodContours
    good_contours_4mm: GoodContours


@dataclass
class PatientStats:
    """One patient's row of the per-patient table."""

    patient_id: str
    group: str | None
    slices: int
    dice_mean: float | None
    dice_std: float | None
    dice_median: float | None
    iou_mean: float | None
    hd95_mm_mean: float | None
    apd_mm_mean: float | None
    good_contour_rate_5mm: float | None
    good_contour_rate_4mm: float | None
    detection_rate: float | None


Breakdowns = dict[str, dict[str, GroupStats]]
"""``{"position" | "phase" | "group": {value: GroupStats}}``."""


def _group_fields(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "slices": len(rows),
        "dice_mean": mean(r["dice"] for r in rows),
        "dice_std": std(r["dice"] for r in rows),
        "dice_median": median(r["dice"] for r in rows),
        "iou_mean": mean(r["iou"] for r in rows),
        "hd95_mm_mean": mean(r["hd95"] for r in rows),
        "apd_mm_mean": mean(r["apd"] for r in rows),
        "good_contour_rate_5mm": rate(r["good_contour_5mm"] for r in rows),
    }


def group_stats(rows: Sequence[dict[str, Any]]) -> GroupStats:
    """Slices, Dice, IoU, HD95, APD and good contours of a group of rows."""
    return GroupStats(**_group_fields(rows))


def _good_only(rows: Sequence[dict[str, Any]], threshold: int) -> GoodContours:
    good = [r for r in rows if r[f"good_contour_{threshold}mm"]]
    distances = {f"{name}_mm_mean": mean(r[name] for r in good) for name in GOOD_DISTANCES}
    return GoodContours(slices=len(good), dice_mean=mean(r["dice"] for r in good), **distances)


def summarise(rows: Sequence[dict[str, Any]]) -> Summary:
    """The summary of per-slice rows: overall means, rates and the good-contours-only means."""
    return Summary(
        **_group_fields(rows),
        patients=len({r["patient_id"] for r in rows}),
        precision_mean=mean(r["precision"] for r in rows),
        recall_mean=mean(r["recall"] for r in rows),
        pixel_accuracy=mean(r["pixel_accuracy"] for r in rows),
        background_only_accuracy=mean(r["background_accuracy"] for r in rows),
        assd_mm_mean=mean(r["assd"] for r in rows),
        good_contour_rate_4mm=rate(r["good_contour_4mm"] for r in rows),
        detection_rate=rate(r["detected"] for r in rows),
        false_positive_slices=sum(bool(r["false_positive"]) for r in rows),
        good_contours_5mm=_good_only(rows, 5),
        good_contours_4mm=_good_only(rows, 4),
    )


def by_patient(rows: Sequence[dict[str, Any]]) -> list[PatientStats]:
    """One row per patient, in patient order."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row["patient_id"]].append(row)
    return [
        PatientStats(
            patient_id=patient,
            group=members[0].get("group"),
            **_group_fields(members),
            good_contour_rate_4mm=rate(r["good_contour_4mm"] for r in members),
            detection_rate=rate(r["detected"] for r in members),
        )
        for patient, members in sorted(grouped.items())
    ]


def breakdowns(rows: Sequence[dict[str, Any]]) -> Breakdowns:
    """:func:`group_stats` by slice position, by phase and by pathology group, where known."""
    found: Breakdowns = {}
    for field, order in (("position", POSITIONS), ("phase", ("ED", "ES")), ("group", None)):
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            if row.get(field) is not None:
                grouped[str(row[field])].append(row)
        keys = [k for k in order if k in grouped] if order else sorted(grouped)
        found[field] = {key: group_stats(grouped[key]) for key in keys}
    return found


def slice_positions(records: Sequence[SliceRecord]) -> dict[str, str]:
    """``{record.key: "basal" | "mid" | "apical"}``: thirds of each patient's labelled stack.

    A patient's distinct slice locations (``slice_position_mm`` where every record has one, else
    ``slice_index``) are ranked and cut into thirds. Which end is the base is read from the
    anatomy, not the file order: the base is the end whose third has the larger mean reference
    LV area (the ventricle tapers to the apex). Patients with fewer than 3 locations, or with
    records that carry no location, get no position.
    """
    by_patient: dict[str, list[SliceRecord]] = defaultdict(list)
    for record in records:
        by_patient[record.patient_id].append(record)
    found: dict[str, str] = {}
    for patient_records in by_patient.values():
        if all(r.slice_position_mm is not None for r in patient_records):
            where = {r.key: float(r.slice_position_mm) for r in patient_records}
        elif all(r.slice_index is not None for r in patient_records):
            where = {r.key: float(r.slice_index) for r in patient_records}
        else:
            continue
        locations = sorted(set(where.values()))
        if len(locations) < 3:
            continue
        rank = {loc: min(2, 3 * i // len(locations)) for i, loc in enumerate(locations)}

        third_of = {r.key: rank[where[r.key]] for r in patient_records}
        first, last = (
            mean(
                float(r.masks[LV].sum())
                for r in patient_records
                if third_of[r.key] == t and LV in r.masks
            )
            for t in (0, 2)
        )
        names = POSITIONS if (first or 0.0) >= (last or 0.0) else POSITIONS[::-1]
        for record in patient_records:
            found[record.key] = names[third_of[record.key]]
    return found
