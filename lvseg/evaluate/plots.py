"""The evaluation report's figures (``figures/*.png``): Dice per patient, per position and phase,
the worst slices as overlays, Bland-Altman plots, volume curves, quality control.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` (Agg), never through pyplot, and
written atomically. They read the ``metrics.json`` content and the per-slice rows, where any
value may be None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lvseg import atomic
from lvseg.evaluate.page import with_units
from lvseg.figures import PREDICTION_COLOUR, REFERENCE_COLOUR, display_range, draw_contour
from lvseg.formatting import is_finite_number, number_text

DPI = 100
POSITIONS = ("basal", "mid", "apical")
PHASES = ("ED", "ES")


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


def dice_per_patient(rows: Sequence[Mapping[str, Any]], path: Path) -> bool:
    """Dice of every slice per patient, patients sorted by median, points coloured by group."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    dice: dict[str, list[float]] = {}
    group: dict[str, str] = {}
    for row in rows:
        if is_finite_number(row.get("dice")):
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
        if name is not None and is_finite_number(row.get("dice")):
            values.setdefault(str(name), []).append(float(row["dice"]))
    order = [name for name in known if name in values]
    order += sorted(name for name in values if name not in known)
    return order, values


def dice_by_position_phase(rows: Sequence[Mapping[str, Any]], path: Path) -> bool:
    """Two panels: Dice per slice position (basal/mid/apical) and per phase (ED/ES)."""
    if not any(is_finite_number(row.get("dice")) for row in rows):
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


def slice_overlay(view: SliceView, units: str, path: Path) -> None:
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
        f"{view.key}\nDice {number_text(view.dice)} · APD {with_units(view.apd, units)}{missing}",
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
        if is_finite_number(reference) and is_finite_number(predicted):
            pairs.append((reference, predicted))
    values = np.array(pairs, dtype=float).reshape(-1, 2) * scale
    return values[:, 0], values[:, 1]


def bland_altman(clinical: Mapping[str, Any], path: Path) -> None:
    """EDV, ESV and EF: difference (predicted - reference) against the mean of the two, with the
    bias and the 95% limits of agreement (bias ± 1.96 SD) of the plotted patients."""
    volume = volume_units(clinical)
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


def volume_curves(clinical: Mapping[str, Any], path: Path) -> bool:
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
                areas = [a if is_finite_number(a) else np.nan for a in stack.get(field) or []]
                if areas and len(areas) == len(positions):
                    axis.plot(positions, areas, style, color=colour, marker=".", markersize=3)
        axis.set_title(str(patient.get("patient_id")), fontsize=8)
        axis.tick_params(labelsize=6)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    for axis in axes[len(patients) :]:
        axis.set_visible(False)
    area = "mm²" if volume_units(clinical) == "ml" else "px"
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


def volume_units(clinical: Mapping[str, Any]) -> str:
    return "ml" if clinical.get("volume_units") == "ml" else "relative"


def quality_scatter(rows: Sequence[Mapping[str, Any]], flag_below: float, path: Path) -> bool:
    """Predicted against true Dice per slice, the identity and the flag threshold."""
    pairs = [
        (float(r["predicted_dice"]), float(r["dice"]), bool(r.get("flagged")))
        for r in rows
        if is_finite_number(r.get("predicted_dice")) and is_finite_number(r.get("dice"))
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
