"""The evaluation report: ``report.html`` and its figures (``figures/*.png``) from metrics.json.

The page reads top to bottom the way a reviewer asks questions: what was evaluated (model, data,
split), how good it is overall (all slices, then the challenge's good-contours-only means, which
flatter), where it fails (per patient, slice position, phase and group; the worst slices as
overlays), whether the clinical numbers agree (volumes, EF, Bland-Altman, area along the stack),
and what every measure means, edge cases included.

Pixel accuracy is always printed beside the accuracy of a model that predicts background
everywhere: the LV covers a few percent of a crop, so ~98% is what predicting nothing scores.

The page is self-contained (inline CSS, no scripts, no external resources) and links its figures
by relative paths, so the folder can be moved or zipped. Figures are drawn on a bare
:class:`matplotlib.figure.Figure` (Agg), never through pyplot; every file is written atomically.
The input is the ``metrics`` dict that ``lvseg.evaluate.run`` writes to ``metrics.json`` and its
per-slice ``rows`` (``slices.csv``); any value may be None and prints as "-".
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lvseg import atomic
from lvseg.figures import PREDICTION_COLOUR, REFERENCE_COLOUR, display_range, draw_contour

REPORT_FILE = "report.html"
FIGURES_FOLDER = "figures"
DPI = 100
POSITIONS = ("basal", "mid", "apical")
PHASES = ("ED", "ES")
DEFAULT_GOOD_CONTOUR_THRESHOLDS = (5.0, 4.0)


@dataclass
class SliceView:
    """One slice drawn as an overlay (the worst slices): the image crop (H, W), any range, and the
    reference and predicted LV masks (H, W, bool) on the same grid."""

    key: str
    title: str
    image: np.ndarray
    reference: np.ndarray
    predicted: np.ndarray
    dice: float
    apd: float | None


# ------------------------------------------------------------------------------ HTML helpers

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em; color: #1c1c1e; background: #fafafa; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.6em; } h3 { font-size: 1em; }
p.note { color: #555; font-size: 0.9em; max-width: 60em; }
p.warning { color: #8a4b00; background: #fff4e0; padding: 0.4em 0.6em; max-width: 60em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eee; }
table.facts th { text-align: left; font-weight: normal; background: #f3f3f3; }
table.facts td { text-align: left; max-width: 60em; }
tr.published td { font-style: italic; color: #555; }
.grid { display: flex; flex-wrap: wrap; gap: 0.8em; }
figure { margin: 0 0 1em; background: white; border: 1px solid #ddd; padding: 0.5em;
         width: fit-content; max-width: 100%; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 0.85em; margin-top: 0.3em; max-width: 40em; }
dl { max-width: 60em; font-size: 0.9em; } dt { font-weight: bold; margin-top: 0.5em; }
"""
"""Inline CSS shared by the report and the comparison page (same look as the explain index)."""


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)


def number(value: Any, digits: int = 3) -> str:
    """A value as text: None (and NaN) as "-", floats with ``digits`` decimals."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}f}" if math.isfinite(value) else "-"
    return str(value)


def percent(value: Any, digits: int = 1) -> str:
    """A fraction (0..1) as a percentage; None as "-"."""
    return f"{100.0 * float(value):.{digits}f}%" if _finite(value) else "-"


def with_units(value: Any, units: str, digits: int = 2) -> str:
    """A distance or volume with its units; None as "-" (no units on a missing value)."""
    text = number(value, digits)
    return text if text == "-" else f"{text} {units}"


def count(value: Any) -> str:
    """An integer with thousands separators (parameters)."""
    return f"{int(value):,}" if _finite(value) else "-"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], css_class: str = "") -> str:
    """An HTML table of plain-text cells (escaped here)."""
    head = "".join(f"<th>{html.escape(str(title))}</th>" for title in header)
    body = [
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    ]
    attribute = f" class='{html.escape(css_class, quote=True)}'" if css_class else ""
    return f"<table{attribute}><tr>{head}</tr>" + "".join(body) + "</table>"


def facts(pairs: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of (name, value) facts, values printed with :func:`number`."""
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(number(value))}</td></tr>"
        for name, value in pairs
    )
    return f"<table class='facts'>{rows}</table>"


def note(text: str, css_class: str = "note") -> str:
    return f"<p class='{css_class}'>{html.escape(text)}</p>"


def html_page(title: str, body: Sequence[str]) -> str:
    """A complete self-contained page: inline CSS, no scripts."""
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _figure(name: str, alt: str, caption: str) -> str:
    link = html.escape(f"{FIGURES_FOLDER}/{name}", quote=True)
    return (
        f"<figure><a href='{link}'><img src='{link}' alt='{html.escape(alt, quote=True)}'></a>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


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


# ------------------------------------------------------------------------------ figures


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(figure, path: Path) -> None:
    atomic.write_with(path, lambda temporary: figure.savefig(temporary, format="png", dpi=DPI))


def _strip(axis, positions: Sequence[float], groups: Sequence[list[float]], colours) -> None:
    """Box plots with every value drawn over them (jittered), so small groups stay honest."""
    axis.boxplot(
        groups,
        positions=positions,
        widths=0.6,
        showfliers=False,
        medianprops={"color": "black"},
    )
    jitter = np.random.default_rng(0)
    for x, values, colour in zip(positions, groups, colours, strict=True):
        offsets = jitter.uniform(-0.15, 0.15, len(values))
        axis.scatter(x + offsets, values, s=8, color=colour, alpha=0.8, zorder=3, linewidths=0)
    axis.set_ylim(-0.03, 1.03)
    axis.grid(axis="y", alpha=0.3)


def _dice_per_patient_figure(rows: Sequence[Mapping[str, Any]], path: Path) -> bool:
    """Dice of every slice per patient, patients sorted by median, points coloured by group."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    dice: dict[str, list[float]] = {}
    group: dict[str, str] = {}
    for row in rows:
        if _finite(row.get("dice")):
            patient = str(row.get("patient_id"))
            dice.setdefault(patient, []).append(float(row["dice"]))
            group.setdefault(patient, str(row.get("group") or "unknown"))
    if not dice:
        return False
    order = sorted(dice, key=lambda patient: (float(np.median(dice[patient])), patient))
    palette = colormaps["tab10"]
    colours = {name: palette(i % 10) for i, name in enumerate(sorted(set(group.values())))}

    figure = _new_figure(max(4.5, 0.38 * len(order) + 2.0), 3.4)
    axis = figure.add_subplot()
    positions = list(range(1, len(order) + 1))
    _strip(axis, positions, [dice[p] for p in order], [colours[group[p]] for p in order])
    axis.set_xticks(positions)
    axis.set_xticklabels(order, rotation=60, ha="right", fontsize=7)
    axis.set_ylabel("Dice per slice", fontsize=8)
    axis.tick_params(axis="y", labelsize=7)
    axis.set_title("Dice per slice by patient (sorted by median)", fontsize=9)
    handles = [
        Line2D([], [], marker="o", linestyle="", color=colour, label=name)
        for name, colour in colours.items()
    ]
    axis.legend(handles=handles, fontsize=6, loc="lower right", framealpha=0.8, title_fontsize=6)
    _save(figure, path)
    return True


def _categories(rows: Sequence[Mapping[str, Any]], field: str, known: Sequence[str]):
    """Dice values per category of ``field``: the known order first, then any others sorted."""
    values: dict[str, list[float]] = {}
    for row in rows:
        name = row.get(field)
        if name is not None and _finite(row.get("dice")):
            values.setdefault(str(name), []).append(float(row["dice"]))
    order = [name for name in known if name in values]
    order += sorted(name for name in values if name not in known)
    return order, values


def _dice_by_position_phase_figure(rows: Sequence[Mapping[str, Any]], path: Path) -> bool:
    """Two panels: Dice per slice position (basal/mid/apical) and per phase (ED/ES)."""
    if not any(_finite(row.get("dice")) for row in rows):
        return False
    figure = _new_figure(7.0, 3.0)
    panels = (("position", POSITIONS, "slice position"), ("phase", PHASES, "cardiac phase"))
    for axis, (field, known, title) in zip(figure.subplots(1, 2), panels, strict=True):
        order, values = _categories(rows, field, known)
        if order:
            positions = list(range(1, len(order) + 1))
            _strip(axis, positions, [values[n] for n in order], ["#0a84ff"] * len(order))
            axis.set_xticks(positions)
            axis.set_xticklabels([f"{n}\n(n={len(values[n])})" for n in order], fontsize=7)
        else:
            axis.text(0.5, 0.5, f"no {title} known", ha="center", va="center", fontsize=8,
                      transform=axis.transAxes)  # fmt: skip
            axis.set_xticks([])
        axis.set_title(f"Dice per {title}", fontsize=9)
        axis.tick_params(axis="y", labelsize=7)
    _save(figure, path)
    return True


def _slice_figure(view: SliceView, units: str, path: Path) -> None:
    """The image (1st-99th percentile window) with the reference (green) and predicted (red)
    contours."""
    from matplotlib.lines import Line2D

    image = np.nan_to_num(np.asarray(view.image, np.float32))
    figure = _new_figure(3.0, 3.3)
    axis = figure.add_subplot()
    low, high = display_range(image)
    axis.imshow(image, cmap="gray", vmin=low, vmax=high)
    draw_contour(axis, np.asarray(view.reference, bool), REFERENCE_COLOUR)
    draw_contour(axis, np.asarray(view.predicted, bool), PREDICTION_COLOUR)
    handles = [
        Line2D([], [], color=REFERENCE_COLOUR, label="reference"),
        Line2D([], [], color=PREDICTION_COLOUR, label="predicted"),
    ]
    axis.legend(handles=handles, loc="lower left", fontsize=6, framealpha=0.7)
    axis.set_xticks([])
    axis.set_yticks([])
    missing = "" if np.asarray(view.predicted).any() else " (no LV predicted)"
    axis.set_title(
        f"{view.key}\nDice {number(view.dice)} · APD {with_units(view.apd, units)}{missing}",
        fontsize=8,
    )
    _save(figure, path)


BLAND_ALTMAN = (("edv", "EDV"), ("esv", "ESV"), ("ef", "EF"))


def _clinical_pairs(clinical: Mapping[str, Any], measure: str) -> tuple[np.ndarray, np.ndarray]:
    """(reference, predicted) of one measure over the patients where both are known; EF in %."""
    scale = 100.0 if measure == "ef" else 1.0
    pairs = []
    for patient in clinical.get("patients") or []:
        reference = (patient.get("reference") or {}).get(measure)
        predicted = (patient.get("predicted") or {}).get(measure)
        if _finite(reference) and _finite(predicted):
            pairs.append((reference, predicted))
    values = np.array(pairs, dtype=float).reshape(-1, 2) * scale
    return values[:, 0], values[:, 1]


def _bland_altman_figure(clinical: Mapping[str, Any], path: Path) -> None:
    """EDV, ESV and EF: difference (predicted - reference) against the mean of the two, with the
    bias and the 95% limits of agreement (bias ± 1.96 SD) of the plotted patients."""
    volume = _volume_units(clinical)
    figure = _new_figure(10.0, 3.2)
    for axis, (measure, title) in zip(figure.subplots(1, 3), BLAND_ALTMAN, strict=True):
        units = "%" if measure == "ef" else volume
        reference, predicted = _clinical_pairs(clinical, measure)
        axis.set_title(f"{title} ({units})", fontsize=9)
        axis.set_xlabel(f"mean of reference and predicted ({units})", fontsize=7)
        axis.set_ylabel(f"predicted - reference ({units})", fontsize=7)
        axis.tick_params(labelsize=7)
        if not len(reference):
            axis.text(0.5, 0.5, "no patient with both values", ha="center", va="center",
                      fontsize=8, transform=axis.transAxes)  # fmt: skip
            continue
        difference = predicted - reference
        axis.scatter((predicted + reference) / 2, difference, s=14, color="#0a84ff", zorder=3)
        axis.axhline(0.0, color="#999", linewidth=0.6)
        bias = float(difference.mean())
        axis.axhline(bias, color="black", linewidth=1.0, label=f"bias {bias:.2f}")
        if len(difference) > 1:
            spread = 1.96 * float(difference.std(ddof=1))
            for limit in (bias - spread, bias + spread):
                axis.axhline(limit, color="black", linewidth=0.8, linestyle="--")
            axis.plot([], [], "k--", linewidth=0.8, label=f"bias ± 1.96 SD (± {spread:.2f})")
        axis.legend(fontsize=6, loc="best", framealpha=0.8)
    _save(figure, path)


PHASE_STYLES = {"ED": "-", "ES": "--"}


def _volume_curves_figure(clinical: Mapping[str, Any], path: Path) -> bool:
    """Small multiples, one per patient: LV area along the stack at ED (solid) and ES (dashed),
    reference (green) and predicted (red)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    patients = [p for p in clinical.get("patients") or [] if p.get("stack")]
    if not patients:
        return False
    columns = min(4, len(patients))
    lines = math.ceil(len(patients) / columns)
    figure = _new_figure(2.6 * columns, 2.1 * lines + 0.6)
    axes = list(figure.subplots(lines, columns, squeeze=False).flat)
    for axis, patient in zip(axes, patients, strict=False):
        for phase, stack in patient["stack"].items():
            style = PHASE_STYLES.get(phase, ":")
            positions = stack.get("positions") or []
            for field, colour in (
                ("reference_area", REFERENCE_COLOUR),
                ("predicted_area", PREDICTION_COLOUR),
            ):
                areas = [a if _finite(a) else np.nan for a in stack.get(field) or []]
                if areas and len(areas) == len(positions):
                    axis.plot(positions, areas, style, color=colour, marker=".", markersize=3)
        axis.set_title(str(patient.get("patient_id")), fontsize=8)
        axis.tick_params(labelsize=6)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    for axis in axes[len(patients) :]:
        axis.set_visible(False)
    area = "mm²" if _volume_units(clinical) == "ml" else "px"
    figure.supxlabel("slice position in the stack", fontsize=8)
    figure.supylabel(f"LV area ({area})", fontsize=8)
    handles = [
        Line2D([], [], color=colour, linestyle=style, label=f"{who} {phase}")
        for phase, style in PHASE_STYLES.items()
        for who, colour in (("reference", REFERENCE_COLOUR), ("predicted", PREDICTION_COLOUR))
    ]
    figure.legend(handles=handles, loc="outside upper center", ncols=4, fontsize=7)
    _save(figure, path)
    return True


# ------------------------------------------------------------------------------ sections


def placement_text(settings: Mapping[str, Any]) -> str:
    """The crop rule and how many slices each placement got."""
    placement = settings.get("placement") or {}
    counts = placement.get("slices_by_placement") or {}
    words = {
        "stack": "located in the patient's stack",
        "slice": "located on the single frame",
        "image": "centred on the image",
    }
    parts = [f"{n} {words.get(k, k)}" for k, n in counts.items() if n]
    rule = settings.get("crop", "centre")
    return rule + (f" (slices: {', '.join(parts)})" if parts else "")


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
                ("size (fp32)", "-" if not _finite(size) else f"{size:.2f} MB"),
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
                ("crop", placement_text(settings)),
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


def _summary(metrics: Mapping[str, Any], units: str) -> list[str]:
    summary = metrics.get("summary") or {}
    thresholds = _thresholds(metrics)
    dice = number(summary.get("dice_mean"))
    if _finite(summary.get("dice_std")):
        dice += f" ± {number(summary.get('dice_std'))}"
    rows = [
        ("slices", number(summary.get("slices")), ""),
        ("patients", number(summary.get("patients")), ""),
        ("Dice mean ± SD", dice, ""),
        ("Dice median", number(summary.get("dice_median")), ""),
        ("IoU mean", number(summary.get("iou_mean")), ""),
        ("precision mean", number(summary.get("precision_mean")), ""),
        ("recall mean", number(summary.get("recall_mean")), ""),
        (
            "pixel accuracy",
            percent(summary.get("pixel_accuracy"), 2),
            f"all-background: {percent(summary.get('background_only_accuracy'), 2)}",
        ),
        (f"HD95 mean ({units})", with_units(summary.get("hd95_mm_mean"), units), ""),
        (f"ASSD mean ({units})", with_units(summary.get("assd_mm_mean"), units), ""),
        (f"APD mean ({units})", with_units(summary.get("apd_mm_mean"), units), ""),
    ]
    rows += [
        (
            f"good contours (APD < {t:g} mm)",
            percent(summary.get(f"good_contour_rate_{_suffix(t)}")),
            "",
        )
        for t in thresholds
    ]
    rows += [
        ("detection rate", percent(summary.get("detection_rate")), ""),
        ("false-positive slices", number(summary.get("false_positive_slices")), ""),
    ]
    good_rows = []
    for t in thresholds:
        good = summary.get(f"good_contours_{_suffix(t)}") or {}
        good_rows.append(
            (
                f"APD < {t:g} mm",
                number(good.get("slices")),
                number(good.get("dice_mean")),
                with_units(good.get("apd_mm_mean"), units),
                with_units(good.get("hd95_mm_mean"), units),
                with_units(good.get("assd_mm_mean"), units),
            )
        )
    return [
        "<h2>Summary (all slices)</h2>",
        table(("measure", "value", "baseline"), rows, "summary"),
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
        note("Not defined: good contours are judged in mm, and this data has no pixel spacing.")
        if units == "px"
        else table(
            (
                "good contours",
                "slices",
                "Dice mean",
                f"APD mean ({units})",
                f"HD95 mean ({units})",
                f"ASSD mean ({units})",
            ),
            good_rows,
            "good-contours",
        ),
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
            number(patient.get("group")),
            number(patient.get("slices")),
            number(patient.get("dice_mean")),
            number(patient.get("dice_median")),
            number(patient.get("iou_mean")),
            number(patient.get("hd95_mm_mean"), 2),
            number(patient.get("apd_mm_mean"), 2),
            *(percent(patient.get(f"good_contour_rate_{_suffix(t)}")) for t in thresholds),
            percent(patient.get("detection_rate")),
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
            dice = number(values.get("dice_mean"))
            if _finite(values.get("dice_std")):
                dice += f" ± {number(values.get('dice_std'))}"
            rows.append(
                (
                    name,
                    number(values.get("slices")),
                    dice,
                    number(values.get("dice_median")),
                    number(values.get("iou_mean")),
                    number(values.get("hd95_mm_mean"), 2),
                    number(values.get("apd_mm_mean"), 2),
                    percent(values.get(f"good_contour_rate_{_suffix(first)}")),
                )
            )
        parts.append(table((title, *header[1:]), rows, f"breakdown {field}"))
    return parts


def _distributions(
    metrics: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], figures: Path, units: str
) -> list[str]:
    parts = ["<h2>Where it does well and where it fails</h2>"]
    if _dice_per_patient_figure(rows, figures / "dice_per_patient.png"):
        parts.append(
            _figure(
                "dice_per_patient.png",
                "Dice per slice by patient",
                "Dice of every slice, one box per patient, sorted by the patient's median; "
                "points are coloured by patient group.",
            )
        )
    if _dice_by_position_phase_figure(rows, figures / "dice_by_position_phase.png"):
        parts.append(
            _figure(
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
        _slice_figure(view, units, figures / name)
        caption = f"{view.title} · Dice {number(view.dice)} · APD {with_units(view.apd, units)}"
        parts.append(_figure(name, view.key, caption))
    parts.append("</div>")
    return parts


CLINICAL_MEASURES = (("edv", "EDV"), ("esv", "ESV"), ("sv", "SV"), ("ef", "EF"), ("mass_g", "mass"))


def _volume_units(clinical: Mapping[str, Any]) -> str:
    return "ml" if clinical.get("volume_units") == "ml" else "relative"


def _clinical_units(clinical: Mapping[str, Any], measure: str) -> str:
    if measure == "ef":
        return "%"
    if measure == "mass_g":
        return "g"
    return _volume_units(clinical)


def _clinical_value(measure: str, value: Any) -> str:
    return percent(value) if measure == "ef" else number(value, 1)


def _clinical(clinical: Mapping[str, Any], figures: Path) -> list[str]:
    relative = _volume_units(clinical) == "relative"
    parts = ["<h2>Clinical measures</h2>"]
    if relative:
        parts.append(
            note(
                "Volumes are relative (pixel × slice units): no pixel spacing is known, so EDV, "
                "ESV, SV and mass cannot be given in ml or g. Only the ejection fraction, a "
                "ratio of volumes, is meaningful.",
                "warning",
            )
        )
    if clinical.get("note"):
        parts.append(note(str(clinical["note"])))

    header = ["patient", "slice spacing (mm)"]
    for measure, title in CLINICAL_MEASURES:
        units = _clinical_units(clinical, measure)
        header += [f"{title} ref ({units})", f"{title} pred ({units})"]
    rows = []
    for patient in clinical.get("patients") or []:
        reference = patient.get("reference") or {}
        predicted = patient.get("predicted") or {}
        row = [patient.get("patient_id"), number(patient.get("slice_spacing_mm"), 2)]
        for measure, _ in CLINICAL_MEASURES:
            row += [
                _clinical_value(measure, reference.get(measure)),
                _clinical_value(measure, predicted.get(measure)),
            ]
        rows.append(row)
    parts += ["<h3>Per patient</h3>", table(header, rows, "clinical") if rows else note("None.")]

    agreement = clinical.get("agreement") or {}
    agreement_rows = []
    for measure, title in CLINICAL_MEASURES:
        values = agreement.get(measure) or {}
        # EF is a fraction: its differences are shown in percentage points
        scale = 100.0 if measure == "ef" else 1.0
        units = "% points" if measure == "ef" else _clinical_units(clinical, measure)
        differences = [
            number(values[key] * scale, 2) if _finite(values.get(key)) else "-"
            for key in ("bias", "sd", "loa_low", "loa_high")
        ]
        mean_abs = values.get("mean_abs_diff")
        agreement_rows.append(
            (
                f"{title} ({units})",
                number(values.get("n")),
                *differences,
                number(values.get("pearson_r")),
                number(mean_abs * scale, 2) if _finite(mean_abs) else "-",
            )
        )
    parts += [
        "<h3>Agreement (predicted - reference)</h3>",
        table(
            ("measure", "n", "bias", "SD", "LoA low", "LoA high", "Pearson r", "mean |diff|"),
            agreement_rows,
            "agreement",
        ),
        note("Limits of agreement (LoA) are bias ± 1.96 SD of the differences (Bland-Altman)."),
    ]
    _bland_altman_figure(clinical, figures / "bland_altman.png")
    parts.append(
        _figure(
            "bland_altman.png",
            "Bland-Altman plots of EDV, ESV and EF",
            "Bland-Altman: one point per patient, difference (predicted - reference) against "
            "the mean of the two; solid line the bias, dashed lines the limits of agreement.",
        )
    )
    if _volume_curves_figure(clinical, figures / "volume_curves.png"):
        parts.append(
            _figure(
                "volume_curves.png",
                "LV area along the stack",
                "Volume curves: LV area of each slice along the stack at ED (solid) and ES "
                "(dashed), reference (green) and predicted (red); the volumes are sums of "
                "these areas.",
            )
        )
    skipped = clinical.get("skipped") or []
    if skipped:
        parts += [
            "<h3>Patients without clinical measures</h3>",
            table(("patient", "reason"), [(s.get("patient_id"), s.get("reason")) for s in skipped]),
        ]
    return parts


def _explanations(explanations: Mapping[str, Any]) -> list[str]:
    means = explanations.get("means") or {}
    names: list[str] = []  # every numeric measure, in first-seen order
    for values in means.values():
        for key, value in values.items():
            numeric = value is None or (_finite(value) and not isinstance(value, bool))
            if numeric and key not in names:
                names.append(key)
    rows = [(label, *(number(values.get(n)) for n in names)) for label, values in means.items()]
    parts = ["<h2>Explanations</h2>"]
    if explanations.get("source"):
        parts.append(note(f"Means from {explanations['source']}."))
    header = ("explanation", *(n.replace("_", " ") for n in names))
    return parts + [table(header, rows, "explanations") if rows else note("No means.")]


def _quality_figure(rows: Sequence[Mapping[str, Any]], flag_below: float, path: Path) -> bool:
    """Predicted against true Dice per slice, the identity and the flag threshold."""
    pairs = [
        (float(r["predicted_dice"]), float(r["dice"]), bool(r.get("flagged")))
        for r in rows
        if _finite(r.get("predicted_dice")) and _finite(r.get("dice"))
    ]
    if not pairs:
        return False
    predicted, true, flagged = (np.array(v) for v in zip(*pairs, strict=True))
    figure = _new_figure(3.8, 3.6)
    axis = figure.add_subplot()
    axis.plot([0, 1], [0, 1], color="#999999", lw=0.8, label="predicted = true")
    axis.axvline(flag_below, color="#ff8c00", lw=0.8, ls="--", label=f"flag below {flag_below:g}")
    axis.scatter(predicted[~flagged], true[~flagged], s=7, alpha=0.6, label="not flagged")
    axis.scatter(predicted[flagged], true[flagged], s=9, color="#ff8c00", label="flagged")
    axis.set_xlim(0, 1.02)
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel("predicted Dice (quality score)", fontsize=8)
    axis.set_ylabel("true Dice", fontsize=8)
    axis.tick_params(labelsize=7)
    axis.legend(fontsize=6, loc="lower right")
    axis.set_title("Quality control: predicted against true Dice", fontsize=9)
    _save(figure, path)
    return True


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
        ("AUROC for EF off by > 5 points", number(studies.get("auroc_ef_error_over_5"))),
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
                ("AUROC for those", number(quality.get("auroc"))),
                ("AUROC, segmented slices only", number(quality.get("auroc_segmented"))),
                (
                    "failures with no LV segmented (flagged)",
                    f"{quality.get('empty_failures', 0)} "
                    f"({quality.get('empty_failures_flagged', 0)})",
                ),
                ("Spearman, predicted vs true", number(quality.get("spearman"))),
                ("mean absolute error", number(quality.get("mae"))),
                ("10-90% interval coverage", percent(quality.get("interval_coverage"))),
                ("failures flagged", percent(quality.get("failures_flagged"))),
                ("good slices flagged", percent(quality.get("good_flagged"))),
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
                        number(c["mean_predicted"]),
                        number(c["mean_true"]),
                    )
                    for c in calibration
                ],
                "quality",
            )
        )
    if _quality_figure(rows, quality["flag_below"], figures / "quality.png"):
        parts.append(
            _figure(
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
        body += _clinical(metrics["clinical"], figures)
    if metrics.get("explanations"):
        body += _explanations(metrics["explanations"])
    if metrics.get("quality"):
        body += _quality(metrics["quality"], rows, figures)
    body += _notes(metrics, units)
    name = (metrics.get("model") or {}).get("name") or "model"
    path = folder / REPORT_FILE
    atomic.write_text(path, html_page(f"LV segmentation evaluation: {name}", body))
    return path
