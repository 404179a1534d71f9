"""The evaluation report: ``report.html`` and its figures (``figures/*.png``) from metrics.json.

The page reads top to bottom the way a reviewer asks questions: what was evaluated (model, data,
split), how good it is overall (all slices, then the challenge's good-contours-only means, which
flatter), where it fails (per patient, slice position, phase and group; the worst slices as
overlays), whether the clinical numbers agree (volumes, EF, Bland-Altman, area along the stack),
and what every measure means, edge cases included.

Pixel accuracy is always printed beside the accuracy of a model that predicts background
everywhere: the LV covers a few percent of a crop, so ~98% is what predicting nothing scores.

The page is self-contained (inline CSS, no scripts, no external resources) and links its figures
(:mod:`lvseg.evaluate.plots`) by relative paths, so the folder can be moved or zipped. The input
is ``metrics.json``'s content (so a report can be rebuilt from the file) and the per-slice
``rows`` (``slices.csv``); any value may be None and prints as "-".
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lvseg import atomic
from lvseg.evaluate import plots
from lvseg.evaluate.page import (
    FIGURES_FOLDER,
    count,
    facts,
    figure,
    html_page,
    note,
    table,
    with_units,
)
from lvseg.evaluate.plots import SliceView
from lvseg.evaluate.report_clinical import clinical_section
from lvseg.evaluate.results import Placements
from lvseg.formatting import is_finite_number, number_text, percent_text

__all__ = ["FIGURES_FOLDER", "REPORT_FILE", "SliceView", "placement_text", "write_report"]

REPORT_FILE = "report.html"
DEFAULT_GOOD_CONTOUR_THRESHOLDS = (5.0, 4.0)


def _names(values: Sequence[Any] | None) -> str:
    if values is None:
        return "-"
    return f"{len(values)}: " + (", ".join(str(v) for v in values) if values else "none")


# ------------------------------------------------------------------------------ units


def _distance_units(metrics: Mapping[str, Any]) -> str:
    return (metrics.get("data") or {}).get("distance_units") or "mm"


def _thresholds(metrics: Mapping[str, Any]) -> list[float]:
    """Good-contour APD thresholds; the summary keys end in ``_{threshold:g}mm`` (5mm, 4mm)."""
    thresholds = (metrics.get("settings") or {}).get("good_contour_mm")
    return [float(t) for t in (thresholds or DEFAULT_GOOD_CONTOUR_THRESHOLDS)]


def _suffix(threshold: float) -> str:
    return f"{threshold:g}mm"


# ------------------------------------------------------------------------------ sections


def placement_text(placement: Placements) -> str:
    """The crop rule and how many slices each placement got."""
    words = {
        "stack": "located in the patient's stack",
        "slice": "located on the single frame",
        "image": "centred on the image",
    }
    parts = [f"{n} {words.get(k, k)}" for k, n in placement.slices_by_placement.items() if n]
    return placement.crop + (f" (slices: {', '.join(parts)})" if parts else "")


def _placement_text(settings: Mapping[str, Any]) -> str:
    # evaluations written before the segmenter landed all cropped at the image centre
    counts = (settings.get("placement") or {}).get("slices_by_placement") or {}
    return placement_text(Placements(settings.get("crop", "centre"), counts))


def _header(metrics: Mapping[str, Any]) -> list[str]:
    model = metrics.get("model") or {}
    data = metrics.get("data") or {}
    settings = metrics.get("settings") or {}
    size = model.get("size_mb_fp32")
    parts = [
        f"<h1>LV segmentation evaluation: {html.escape(str(model.get('name') or '-'))}</h1>",
        "<h2>Model</h2>",
        facts(
            [
                ("name", model.get("name")),
                ("parameters", count(model.get("parameters"))),
                ("size (fp32)", "-" if not is_finite_number(size) else f"{size:.2f} MB"),
                ("model file", model.get("source")),
                ("runtime", model.get("runtime")),
                ("training data", model.get("train_data")),
                ("training patients", _names(model.get("train_patients"))),
                ("validation patients", _names(model.get("val_patients"))),
            ]
        ),
        "<h2>Data</h2>",
        facts(
            [
                ("path", data.get("path")),
                ("format", data.get("format")),
                ("split", data.get("split")),
                ("split note", data.get("split_note")),
                ("evaluated patients", _names(data.get("patients"))),
                ("excluded patients", _names(data.get("excluded_patients"))),
                ("distance units", _distance_units(metrics)),
                ("geometry", settings.get("geometry")),
                ("prediction", settings.get("prediction")),
                ("crop", _placement_text(settings)),
                ("created", metrics.get("created")),
                ("lvseg version", metrics.get("lvseg_version")),
            ]
        ),
    ]
    if data.get("split") == "all":
        parts.append(
            note(
                "Split 'all': these patients may include the ones the model was trained or "
                "selected on, so the numbers below can overstate how it does on new patients.",
                "warning",
            )
        )
    if _distance_units(metrics) == "px":
        parts.append(_pixel_units_note(metrics))
    return parts


def _pixel_units_note(metrics: Mapping[str, Any]) -> str:
    reason = (metrics.get("data") or {}).get("spacing_note") or "no pixel spacing is known"
    return note(
        "Distances (HD95, ASSD, APD) are in pixels (px), not mm, and the good-contour rates "
        f"(thresholds in mm) are not defined. Why: {reason} (The metrics.json keys keep their "
        "'_mm' names.)",
        "warning",
    )


def _dice_with_sd(values: Mapping[str, Any]) -> str:
    """ "mean ± SD" of a block's Dice (the mean alone where the SD is unknown)."""
    dice = number_text(values.get("dice_mean"))
    if is_finite_number(values.get("dice_std")):
        dice += f" ± {number_text(values.get('dice_std'))}"
    return dice


def _summary_rows(summary: Mapping[str, Any], thresholds: Sequence[float], units: str) -> list:
    """The rows (measure, value, baseline) of the all-slices summary table."""
    rows = [
        ("slices", number_text(summary.get("slices")), ""),
        ("patients", number_text(summary.get("patients")), ""),
        ("Dice mean ± SD", _dice_with_sd(summary), ""),
        ("Dice median", number_text(summary.get("dice_median")), ""),
        ("IoU mean", number_text(summary.get("iou_mean")), ""),
        ("precision mean", number_text(summary.get("precision_mean")), ""),
        ("recall mean", number_text(summary.get("recall_mean")), ""),
        (
            "pixel accuracy",
            percent_text(summary.get("pixel_accuracy"), 2),
            f"all-background: {percent_text(summary.get('background_only_accuracy'), 2)}",
        ),
        (f"HD95 mean ({units})", with_units(summary.get("hd95_mm_mean"), units), ""),
        (f"ASSD mean ({units})", with_units(summary.get("assd_mm_mean"), units), ""),
        (f"APD mean ({units})", with_units(summary.get("apd_mm_mean"), units), ""),
    ]
    rows += [
        (
            f"good contours (APD < {t:g} mm)",
            percent_text(summary.get(f"good_contour_rate_{_suffix(t)}")),
            "",
        )
        for t in thresholds
    ]
    return rows + [
        ("detection rate", percent_text(summary.get("detection_rate")), ""),
        ("false-positive slices", number_text(summary.get("false_positive_slices")), ""),
    ]


def _good_contours_table(
    summary: Mapping[str, Any], thresholds: Sequence[float], units: str
) -> str:
    """The challenge's means over good contours only, one row per APD threshold."""
    if units == "px":
        return note(
            "Not defined: good contours are judged in mm, and this data has no pixel spacing."
        )
    rows = []
    for t in thresholds:
        good = summary.get(f"good_contours_{_suffix(t)}") or {}
        rows.append(
            (
                f"APD < {t:g} mm",
                number_text(good.get("slices")),
                number_text(good.get("dice_mean")),
                with_units(good.get("apd_mm_mean"), units),
                with_units(good.get("hd95_mm_mean"), units),
                with_units(good.get("assd_mm_mean"), units),
            )
        )
    header = ("good contours", "slices", "Dice mean")
    header += tuple(f"{name} mean ({units})" for name in ("APD", "HD95", "ASSD"))
    return table(header, rows, "good-contours")


def _summary(metrics: Mapping[str, Any], units: str) -> list[str]:
    summary = metrics.get("summary") or {}
    thresholds = _thresholds(metrics)
    return [
        "<h2>Summary (all slices)</h2>",
        table(
            ("measure", "value", "baseline"), _summary_rows(summary, thresholds, units), "summary"
        ),
        note(
            "Pixel accuracy is printed beside the accuracy of a model that predicts background "
            "everywhere: the LV covers only a few percent of the crop, so predicting nothing "
            "already scores about 98%; only the gap between the two says anything."
        ),
        note(
            "Distance means (HD95, ASSD, APD) are over the slices where both the reference and "
            "the prediction contain LV; the other slices are counted in the Dice, good-contour "
            "and detection rates (see Notes)."
        ),
        "<h3>Means over good contours only</h3>",
        _good_contours_table(summary, thresholds, units),
        note(
            "The Sunnybrook challenge averaged its measures over good contours only (APD below "
            "the threshold). That is the convention published figures use, and it flatters: the "
            "failed slices are left out. The all-slices means above are the honest numbers."
        ),
    ]


def _per_patient(metrics: Mapping[str, Any], units: str) -> list[str]:
    thresholds = _thresholds(metrics)
    header = [
        "patient",
        "group",
        "slices",
        "Dice mean",
        "Dice median",
        "IoU mean",
        f"HD95 mean ({units})",
        f"APD mean ({units})",
        *(f"good < {t:g} mm" for t in thresholds),
        "detection",
    ]
    rows = [
        (
            patient.get("patient_id"),
            number_text(patient.get("group")),
            number_text(patient.get("slices")),
            number_text(patient.get("dice_mean")),
            number_text(patient.get("dice_median")),
            number_text(patient.get("iou_mean")),
            number_text(patient.get("hd95_mm_mean"), 2),
            number_text(patient.get("apd_mm_mean"), 2),
            *(percent_text(patient.get(f"good_contour_rate_{_suffix(t)}")) for t in thresholds),
            percent_text(patient.get("detection_rate")),
        )
        for patient in metrics.get("patients") or []
    ]
    if not rows:
        return ["<h3>Per patient</h3>", note("No patient was evaluated.")]
    return ["<h3>Per patient</h3>", table(header, rows, "patients")]


BREAKDOWNS = (("position", "slice position"), ("phase", "cardiac phase"), ("group", "group"))


def _breakdowns(metrics: Mapping[str, Any], units: str) -> list[str]:
    first = _thresholds(metrics)[0]
    header = (
        "",
        "slices",
        "Dice mean ± SD",
        "Dice median",
        "IoU mean",
        f"HD95 mean ({units})",
        f"APD mean ({units})",
        f"good < {first:g} mm",
    )
    parts = []
    breakdowns = metrics.get("breakdowns") or {}
    for field, title in BREAKDOWNS:
        parts.append(f"<h3>By {html.escape(title)}</h3>")
        stats = breakdowns.get(field) or {}
        if not stats:
            parts.append(note(f"No {title} is known for these slices."))
            continue
        rows = []
        for name, values in stats.items():
            rows.append(
                (
                    name,
                    number_text(values.get("slices")),
                    _dice_with_sd(values),
                    number_text(values.get("dice_median")),
                    number_text(values.get("iou_mean")),
                    number_text(values.get("hd95_mm_mean"), 2),
                    number_text(values.get("apd_mm_mean"), 2),
                    percent_text(values.get(f"good_contour_rate_{_suffix(first)}")),
                )
            )
        parts.append(table((title, *header[1:]), rows, f"breakdown {field}"))
    return parts


def _distributions(
    metrics: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], figures: Path, units: str
) -> list[str]:
    parts = ["<h2>Where it does well and where it fails</h2>"]
    if plots.dice_per_patient(rows, figures / "dice_per_patient.png"):
        parts.append(
            figure(
                "dice_per_patient.png",
                "Dice per slice by patient",
                "Dice of every slice, one box per patient, sorted by the patient's median; "
                "points are coloured by patient group.",
            )
        )
    if plots.dice_by_position_phase(rows, figures / "dice_by_position_phase.png"):
        parts.append(
            figure(
                "dice_by_position_phase.png",
                "Dice per slice position and per phase",
                "Dice of every slice by position in the stack (basal, mid, apical) and by "
                "cardiac phase (ED, ES).",
            )
        )
    if not rows:
        parts.append(note("No per-slice rows were given, so there are no distribution plots."))
    return parts + _per_patient(metrics, units) + _breakdowns(metrics, units)


def _worst(worst: Sequence[SliceView], figures: Path, units: str) -> list[str]:
    parts = [f"<h2>Worst slices ({len(worst)})</h2>"]
    if not worst:
        return parts + [note("No slice to show.")]
    parts.append(note("Reference contour in green, predicted contour in red."))
    parts.append("<div class='grid'>")
    for index, view in enumerate(worst, start=1):
        name = f"worst_{index:02d}.png"
        plots.slice_overlay(view, units, figures / name)
        caption = (
            f"{view.title} · Dice {number_text(view.dice)} · APD {with_units(view.apd, units)}"
        )
        parts.append(figure(name, view.key, caption))
    parts.append("</div>")
    return parts


def _explanations(explanations: Mapping[str, Any]) -> list[str]:
    means = explanations.get("means") or {}
    names: list[str] = []  # every numeric measure, in first-seen order
    for values in means.values():
        for key, value in values.items():
            numeric = value is None or (is_finite_number(value) and not isinstance(value, bool))
            if numeric and key not in names:
                names.append(key)
    rows = [
        (label, *(number_text(values.get(n)) for n in names)) for label, values in means.items()
    ]
    parts = ["<h2>Explanations</h2>"]
    if explanations.get("source"):
        parts.append(note(f"Means from {explanations['source']}."))
    header = ("explanation", *(n.replace("_", " ") for n in names))
    return parts + [table(header, rows, "explanations") if rows else note("No means.")]


def _quality_studies(studies: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The report's lines on which ejection fractions quality control sends for review."""
    if not studies:
        return []
    return [
        ("patients with an EF (for review)", f"{studies['studies']} ({studies['review']})"),
        (
            "EF off by > 5 points: for review",
            f"{studies['ef_error_over_5_reviewed']} of {studies['ef_error_over_5']}",
        ),
        (
            "EF off by > 10 points: for review",
            f"{studies['ef_error_over_10_reviewed']} of {studies['ef_error_over_10']}",
        ),
        ("AUROC for EF off by > 5 points", number_text(studies.get("auroc_ef_error_over_5"))),
    ]


def _quality(
    quality: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], figures: Path
) -> list[str]:
    score = quality.get("score") or {}
    parts = [
        "<h2>Quality control</h2>",
        note(
            "Every slice's predicted Dice from the quality score (fitted on "
            f"{count(score.get('fitted_on'))} frames: {score.get('source') or 'source unknown'}), "
            "against its true Dice. Slices with no LV segmented are not scored; one between two "
            "segmented slices is flagged."
        ),
        facts(
            [
                ("slices (scored)", f"{quality['frames']} ({quality['scored_frames']})"),
                (f"true Dice < {quality['flag_below']:g}", count(quality["failures"])),
                ("AUROC for those", number_text(quality.get("auroc"))),
                ("AUROC, segmented slices only", number_text(quality.get("auroc_segmented"))),
                (
                    "failures with no LV segmented (flagged)",
                    f"{quality.get('empty_failures', 0)} "
                    f"({quality.get('empty_failures_flagged', 0)})",
                ),
                ("Spearman, predicted vs true", number_text(quality.get("spearman"))),
                ("mean absolute error", number_text(quality.get("mae"))),
                ("10-90% interval coverage", percent_text(quality.get("interval_coverage"))),
                ("failures flagged", percent_text(quality.get("failures_flagged"))),
                ("good slices flagged", percent_text(quality.get("good_flagged"))),
            ]
            + _quality_studies(quality.get("studies"))
        ),
    ]
    calibration = quality.get("calibration") or []
    if calibration:
        parts.append(
            table(
                ("predicted Dice", "slices", "mean predicted", "mean true"),
                [
                    (
                        f"{c['predicted_from']:g}-{c['predicted_to']:g}",
                        c["frames"],
                        number_text(c["mean_predicted"]),
                        number_text(c["mean_true"]),
                    )
                    for c in calibration
                ],
                "quality",
            )
        )
    if plots.quality_scatter(rows, quality["flag_below"], figures / "quality.png"):
        parts.append(
            figure(
                "quality.png",
                "Predicted against true Dice",
                "Each point a slice; orange: flagged for review.",
            )
        )
    return parts


def _notes(metrics: Mapping[str, Any], units: str) -> list[str]:
    thresholds = " or ".join(f"{t:g} {units}" for t in _thresholds(metrics))
    definitions = [
        ("Dice", "2|P ∩ R| / (|P| + |R|) of the predicted (P) and reference (R) LV masks."),
        ("IoU", "|P ∩ R| / |P ∪ R| (Jaccard index)."),
        ("Precision, recall", "|P ∩ R| / |P| and |P ∩ R| / |R|."),
        (
            "Pixel accuracy",
            "Share of the crop's pixels labelled correctly (LV or background). The all-background "
            "accuracy is the same measure for a model that predicts no LV at all.",
        ),
        (
            "HD95",
            "95th-percentile Hausdorff distance as MONAI computes it: the 95th percentile of the "
            "distances from each mask's boundary points to the other mask's boundary, in each "
            "direction, and the larger of the two.",
        ),
        (
            "ASSD",
            "Average symmetric surface distance: the mean of the boundary-to-boundary distances "
            "in both directions together.",
        ),
        (
            "APD",
            "Average perpendicular distance (Sunnybrook LV segmentation challenge): the mean "
            "distance from each point of the predicted contour to the reference contour.",
        ),
        ("Good contour", f"A slice whose APD is below the threshold ({thresholds})."),
        (
            "Detection rate",
            "Share of the slices with a reference LV where the model predicted some LV.",
        ),
        ("False-positive slices", "Slices without a reference LV where the model predicted LV."),
        (
            "Edge cases",
            "Both masks empty: Dice 1 and distances 0. One mask empty: Dice 0; the distances are "
            "undefined and left out of the distance means, and the slice counts as neither a good "
            "contour nor a detection.",
        ),
        ("Units", f"Distances are in {units}; a value that is not defined prints as '-'."),
        (
            "Clinical",
            "SV = EDV - ESV; EF = SV / EDV. Agreement is of predicted - reference over patients; "
            "limits of agreement are bias ± 1.96 SD.",
        ),
    ]
    items = "".join(
        f"<dt>{html.escape(term)}</dt><dd>{html.escape(text)}</dd>" for term, text in definitions
    )
    return ["<h2>Notes</h2>", f"<dl>{items}</dl>"]


def _raw_links(folder: Path) -> list[str]:
    """Links to the raw files when they already lie beside the page."""
    present = [name for name in ("metrics.json", "slices.csv") if (folder / name).is_file()]
    if not present:
        return []
    links = ", ".join(f"<a href='{name}'>{name}</a>" for name in present)
    return [f"<p class='note'>Raw numbers: {links}.</p>"]


def write_report(
    folder: str | Path,
    metrics: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    worst: Sequence[SliceView],
) -> Path:
    """Write ``folder/report.html`` and its figures under ``folder/figures/``; return the page.

    ``metrics`` is the ``metrics.json`` content, ``rows`` the per-slice rows (``slices.csv``),
    ``worst`` the slices to draw as overlays (``figures/worst_NN.png``, in the given order).
    """
    folder = Path(folder)
    figures = folder / FIGURES_FOLDER
    figures.mkdir(parents=True, exist_ok=True)
    units = _distance_units(metrics)
    body = _header(metrics) + _raw_links(folder) + _summary(metrics, units)
    body += _distributions(metrics, rows, figures, units)
    body += _worst(worst, figures, units)
    if metrics.get("clinical") is not None:
        body += clinical_section(metrics["clinical"], figures)
    if metrics.get("explanations"):
        body += _explanations(metrics["explanations"])
    if metrics.get("quality"):
        body += _quality(metrics["quality"], rows, figures)
    body += _notes(metrics, units)
    name = (metrics.get("model") or {}).get("name") or "model"
    path = folder / REPORT_FILE
    atomic.write_text(path, html_page(f"LV segmentation evaluation: {name}", body))
    return path
