"""The report's clinical section: per-patient volumes, EF and mass, their agreement with the
reference (Bland-Altman), and the area along each stack; from ``metrics.json``'s ``clinical``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lvseg.evaluate import plots
from lvseg.evaluate.page import figure, note, table
from lvseg.evaluate.plots import volume_units
from lvseg.formatting import is_finite_number, number_text, percent_text

CLINICAL_MEASURES = (("edv", "EDV"), ("esv", "ESV"), ("sv", "SV"), ("ef", "EF"), ("mass_g", "mass"))


def _clinical_units(clinical: Mapping[str, Any], measure: str) -> str:
    if measure == "ef":
        return "%"
    if measure == "mass_g":
        return "g"
    return volume_units(clinical)


def _clinical_value(measure: str, value: Any) -> str:
    return percent_text(value) if measure == "ef" else number_text(value, 1)


def _patients_table(clinical: Mapping[str, Any]) -> str:
    """Every patient's reference and predicted measures, side by side."""
    header = ["patient", "slice spacing (mm)"]
    for measure, title in CLINICAL_MEASURES:
        units = _clinical_units(clinical, measure)
        header += [f"{title} ref ({units})", f"{title} pred ({units})"]
    rows = []
    for patient in clinical.get("patients") or []:
        reference = patient.get("reference") or {}
        predicted = patient.get("predicted") or {}
        row = [patient.get("patient_id"), number_text(patient.get("slice_spacing_mm"), 2)]
        for measure, _ in CLINICAL_MEASURES:
            row += [
                _clinical_value(measure, reference.get(measure)),
                _clinical_value(measure, predicted.get(measure)),
            ]
        rows.append(row)
    return table(header, rows, "clinical") if rows else note("None.")


def _agreement_table(clinical: Mapping[str, Any]) -> str:
    """Bias, SD, limits of agreement, Pearson r and mean |difference| of every measure."""
    agreement = clinical.get("agreement") or {}
    rows = []
    for measure, title in CLINICAL_MEASURES:
        values = agreement.get(measure) or {}
        # EF is a fraction: its differences are shown in percentage points
        scale = 100.0 if measure == "ef" else 1.0
        units = "% points" if measure == "ef" else _clinical_units(clinical, measure)
        differences = [
            number_text(values[key] * scale, 2) if is_finite_number(values.get(key)) else "-"
            for key in ("bias", "sd", "loa_low", "loa_high")
        ]
        mean_abs = values.get("mean_abs_diff")
        rows.append(
            (
                f"{title} ({units})",
                number_text(values.get("n")),
                *differences,
                number_text(values.get("pearson_r")),
                number_text(mean_abs * scale, 2) if is_finite_number(mean_abs) else "-",
            )
        )
    header = ("measure", "n", "bias", "SD", "LoA low", "LoA high", "Pearson r", "mean |diff|")
    return table(header, rows, "agreement")


def _figures(clinical: Mapping[str, Any], figures: Path) -> list[str]:
    """The Bland-Altman plots, and the volume curves where there are stacks to draw."""
    plots.bland_altman(clinical, figures / "bland_altman.png")
    parts = [
        figure(
            "bland_altman.png",
            "Bland-Altman plots of EDV, ESV and EF",
            "Bland-Altman: one point per patient, difference (predicted - reference) against "
            "the mean of the two; solid line the bias, dashed lines the limits of agreement.",
        )
    ]
    if plots.volume_curves(clinical, figures / "volume_curves.png"):
        parts.append(
            figure(
                "volume_curves.png",
                "LV area along the stack",
                "Volume curves: LV area of each slice along the stack at ED (solid) and ES "
                "(dashed), reference (green) and predicted (red); the volumes are sums of "
                "these areas.",
            )
        )
    return parts


def clinical_section(clinical: Mapping[str, Any], figures: Path) -> list[str]:
    """The section's HTML parts; its figures are written under ``figures``."""
    parts = ["<h2>Clinical measures</h2>"]
    if volume_units(clinical) == "relative":
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
    parts += ["<h3>Per patient</h3>", _patients_table(clinical)]
    parts += [
        "<h3>Agreement (predicted - reference)</h3>",
        _agreement_table(clinical),
        note("Limits of agreement (LoA) are bias ± 1.96 SD of the differences (Bland-Altman)."),
    ]
    parts += _figures(clinical, figures)
    skipped = clinical.get("skipped") or []
    if skipped:
        parts += [
            "<h3>Patients without clinical measures</h3>",
            table(("patient", "reason"), [(s.get("patient_id"), s.get("reason")) for s in skipped]),
        ]
    return parts
