"""Several evaluations side by side, with published figures quoted beside them.

Each evaluation is a ``(label, metrics)`` pair, ``metrics`` being a ``metrics.json`` content (see
:mod:`lvseg.evaluate.report`). :func:`compare_rows` makes one flat row per model: its size, the data
it was scored on and its summary measures. Published rows (:data:`PUBLISHED`) are figures quoted
from papers, flagged ``"published": True`` and never measured here: they come from other data and
splits, and some average over good contours only, so they are context, not a leaderboard.

>>> rows = compare_rows([("ours", {"summary": {"dice_mean": 0.9}})])
>>> [(row["label"], row["published"]) for row in rows][:2]
[('ours', False), ('Avendi et al. 2016 (Sunnybrook, published)', True)]
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lvseg import atomic
from lvseg.evaluate.page import count, html_page, note
from lvseg.formatting import number_text, percent_text

COMPARE_FILE = "compare.html"
COMPARE_JSON = "compare.json"

PUBLISHED: list[dict[str, Any]] = [
    {
        "label": "Avendi et al. 2016 (Sunnybrook, published)",
        "dice_mean": 0.94,
        "apd_mm_mean": 1.81,
        "good_contour_rate_5mm": 0.9669,
        "note": "Sunnybrook online set; means over good contours",
    },
    {
        "label": "CMES 2023 paper we implement (published)",
        "dice_mean": 0.9448,
        "pixel_accuracy": 0.997,
        "note": "split not stated (probably image-level random)",
    },
]
"""Reference figures quoted beside ours, as the papers report them (not measured here)."""

MODEL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("label", "model"),
    ("parameters", "parameters"),
    ("size_mb_fp32", "size (MB, fp32)"),
    ("split", "split"),
    ("crop", "crop"),
    ("slices", "slices"),
    ("patients", "patients"),
)
"""What was compared: the model and the data it was scored on."""

COLUMNS: tuple[tuple[str, str], ...] = (
    ("dice_mean", "Dice mean"),
    ("dice_median", "Dice median"),
    ("iou_mean", "IoU"),
    ("precision_mean", "precision"),
    ("recall_mean", "recall"),
    ("pixel_accuracy", "pixel accuracy"),
    ("background_only_accuracy", "all-background accuracy"),
    ("hd95_mm_mean", "HD95 (mm)"),
    ("assd_mm_mean", "ASSD (mm)"),
    ("apd_mm_mean", "APD (mm)"),
    ("good_contour_rate_5mm", "good contours (APD < 5 mm)"),
    ("good_contour_rate_4mm", "good contours (APD < 4 mm)"),
    ("detection_rate", "detection rate"),
    ("good_5mm_dice_mean", "Dice, good contours only (5 mm)"),
    ("good_5mm_apd_mm_mean", "APD, good contours only (5 mm)"),
)
"""The summary measures shown, with their titles. The last two are means over good contours only
(the challenge's convention), the ones to hold against a published "means over good contours"."""

MARKDOWN_COLUMNS: tuple[str, ...] = (
    "label",
    "parameters",
    "size_mb_fp32",
    "split",
    "crop",
    "slices",
    "patients",
    "dice_mean",
    "dice_median",
    "pixel_accuracy",
    "hd95_mm_mean",
    "apd_mm_mean",
    "good_contour_rate_5mm",
    "detection_rate",
)
"""A narrower set for the terminal."""

TITLES = dict(MODEL_COLUMNS + COLUMNS)
PERCENT_KEYS = frozenset(
    {
        "pixel_accuracy",
        "background_only_accuracy",
        "good_contour_rate_5mm",
        "good_contour_rate_4mm",
        "detection_rate",
    }
)
DISTANCE_KEYS = frozenset({"hd95_mm_mean", "assd_mm_mean", "apd_mm_mean", "good_5mm_apd_mm_mean"})
ROW_KEYS = (*(key for key, _ in MODEL_COLUMNS + COLUMNS), "distance_units", "note", "published")


def _row(label: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    model = metrics.get("model") or {}
    data = metrics.get("data") or {}
    summary = metrics.get("summary") or {}
    good = summary.get("good_contours_5mm") or {}
    row: dict[str, Any] = dict.fromkeys(ROW_KEYS)
    row.update({key: summary.get(key) for key, _ in COLUMNS})
    row.update(
        label=label,
        parameters=model.get("parameters"),
        size_mb_fp32=model.get("size_mb_fp32"),
        split=data.get("split"),
        # evaluations written before the segmenter landed all cropped at the image centre
        crop=(metrics.get("settings") or {}).get("crop", "centre"),
        slices=summary.get("slices"),
        patients=summary.get("patients"),
        good_5mm_dice_mean=good.get("dice_mean"),
        good_5mm_apd_mm_mean=good.get("apd_mm_mean"),
        distance_units=data.get("distance_units") or "mm",
        note=data.get("split_note"),
        published=False,
    )
    return row


def compare_rows(
    evaluations: Sequence[tuple[str, Mapping[str, Any]]], published: bool = True
) -> list[dict[str, Any]]:
    """One row per ``(label, metrics)`` evaluation, then (with ``published``) the published
    rows, flagged ``"published": True``. Every row has the same keys; unknown values are None."""
    rows = [_row(label, metrics) for label, metrics in evaluations]
    if published:
        for figures in PUBLISHED:
            row: dict[str, Any] = dict.fromkeys(ROW_KEYS)
            row.update(figures, distance_units="mm", published=True)
            rows.append(row)
    return rows


def _label(row: Mapping[str, Any]) -> str:
    label = str(row.get("label") or "-")
    if row.get("published") and "published" not in label.lower():
        label += " (published)"
    return label


def cell(row: Mapping[str, Any], key: str) -> str:
    """One value of a row as text: percentages, distances with "px" where measured without pixel
    spacing, None as "-"."""
    value = row.get(key)
    if key == "label":
        return _label(row)
    if key == "parameters":
        return count(value)
    if key == "size_mb_fp32":
        return number_text(value, 2)
    if key in PERCENT_KEYS:
        return percent_text(value, 2 if "accuracy" in key else 1)
    if key in DISTANCE_KEYS:
        text = number_text(value, 2)
        return f"{text} px" if text != "-" and row.get("distance_units") == "px" else text
    return number_text(value)


def compare_markdown(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = MARKDOWN_COLUMNS
) -> str:
    """A Markdown table, one line per row; published rows are marked "(published)"."""
    lines = [
        "| " + " | ".join(TITLES.get(key, key) for key in columns) + " |",
        "|" + "|".join("---" if key == "label" else "---:" for key in columns) + "|",
    ]
    for row in rows:
        cells = (cell(row, key).replace("|", "\\|") for key in columns)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _html_table(rows: Sequence[Mapping[str, Any]]) -> str:
    keys = [key for key, _ in MODEL_COLUMNS + COLUMNS]
    head = "".join(f"<th>{html.escape(TITLES[key])}</th>" for key in keys) + "<th>note</th>"
    body = []
    for row in rows:
        css = " class='published'" if row.get("published") else ""
        cells = "".join(f"<td>{html.escape(cell(row, key))}</td>" for key in keys)
        cells += f"<td>{html.escape(number_text(row.get('note')))}</td>"
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table class='compare'><tr>{head}</tr>" + "".join(body) + "</table>"


def _plain(value: Any) -> Any:
    """numpy scalars (a metrics dict not yet through JSON) as Python numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_compare(
    folder: str | Path,
    evaluations: Sequence[tuple[str, Mapping[str, Any]]],
    published: bool = True,
) -> Path:
    """Write ``folder/compare.html`` (same style as the report) and ``folder/compare.json``
    (``{"columns": [{"key", "title"}], "rows": compare_rows(...)}``), atomically; return the page.
    """
    folder = Path(folder)
    rows = compare_rows(evaluations, published)
    columns = [{"key": key, "title": title} for key, title in MODEL_COLUMNS + COLUMNS]
    text = json.dumps({"columns": columns, "rows": rows}, indent=2, default=_plain)
    atomic.write_text(folder / COMPARE_JSON, text + "\n")
    body = [
        "<h1>LV segmentation: models compared</h1>",
        _html_table(rows),
        note(
            "Rows in italics are published figures quoted from the papers, not measured here: "
            "they come from other data and splits, and a 'means over good contours' figure "
            "leaves the failed slices out, so hold it against our good-contours-only columns, "
            "not our all-slices means."
        ),
        note(
            "Pixel accuracy sits beside the accuracy of predicting background everywhere (about "
            "98% on these crops); distances marked px were measured without pixel spacing."
        ),
        f"<p class='note'>As data: <a href='{COMPARE_JSON}'>{COMPARE_JSON}</a>.</p>",
    ]
    path = folder / COMPARE_FILE
    atomic.write_text(path, html_page("LV segmentation: models compared", body))
    return path
