"""``lvseg evaluate``: score a model on the patients it did not train on, or compare evaluations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from lvseg.cli.choices import Crop, EvaluateSplit, Format
from lvseg.cli.common import (
    FormatOption,
    OverwriteOption,
    _number,
    _rate,
    clean_errors,
    console,
    error_console,
    fail,
    slice_progress,
)

TargetsArgument = Annotated[
    list[Path],
    typer.Argument(
        help="MODEL DATA: a run directory, a .pt checkpoint or an exported model (folder or "
        ".onnx, run by ONNX Runtime as predict runs it), and a dataset. With --compare: "
        "evaluation folders (or runs evaluated into RUN/evaluation) to put side by side.",
        show_default=False,
    ),
]
OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", help="Folder to write (default: RUN/evaluation, else ./evaluation)."
    ),
]
SplitOption = Annotated[
    EvaluateSplit,
    typer.Option(help="held-out: leave out the patients the model trained on; all: score all."),
]
CropOption = Annotated[
    Crop,
    typer.Option(
        help="located: crop on the heart located in each patient's stack, as predict does; "
        "centre: crop at the image centre."
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the summary and per-patient rows as JSON.")
]
CompareOption = Annotated[
    bool, typer.Option("--compare", help="Compare finished evaluations in one table.")
]
ExplanationsOption = Annotated[
    Path | None,
    typer.Option(help="Add the measures of an 'lvseg explain --metrics' output to the report."),
]
LimitOption = Annotated[int | None, typer.Option(help="Score the first N slices.", min=1)]
TtaOption = Annotated[
    bool,
    typer.Option(
        "--tta",
        help="Test-time augmentation: average the LV probability over the 8 flips and "
        "quarter turns of each crop (8x the network's time).",
    ),
]
QualityOption = Annotated[
    Path | None,
    typer.Option(
        help="A quality-control score to judge the slices with (default: the model's, or "
        "the one lvseg ships; with --tta, its score for test-time augmentation); the report "
        "says how well it predicted their Dice.",
    ),
]


@clean_errors
def evaluate_command(
    targets: TargetsArgument,
    out: OutOption = None,
    format: FormatOption = Format.auto,
    split: SplitOption = EvaluateSplit.held_out,
    crop: CropOption = Crop.located,
    json_output: JsonOption = False,
    compare: CompareOption = False,
    explanations: ExplanationsOption = None,
    limit: LimitOption = None,
    tta: TtaOption = False,
    quality: QualityOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Score a model per slice and per patient (Dice, distances, Sunnybrook measures, volumes
    and EF) on the patients it did not train on; write metrics.json, slices.csv, report.html."""
    from lvseg.evaluate.run import compare as compare_evaluations
    from lvseg.evaluate.run import evaluate
    from lvseg.jsonsafe import json_safe

    if compare:
        found = compare_evaluations(targets, out)
        if json_output:
            print(json.dumps(found.rows, indent=2))
        else:
            console.print(found.markdown, highlight=False, soft_wrap=True, markup=False)
        if found.out:
            error_console.print(f"written: {found.out}", highlight=False, soft_wrap=True)
        return
    if len(targets) != 2:
        raise fail(f"evaluate takes MODEL DATA (got {len(targets)} paths); see lvseg evaluate -h")
    model, data = targets
    choices = {"format": format.value, "split": split.value, "crop": crop.value, "tta": tta}
    with slice_progress("evaluate") as progress:
        found = evaluate(
            model, data, out, explanations=explanations, limit=limit, progress=progress,
            overwrite=overwrite, quality=quality, **choices,
        )  # fmt: skip
    if json_output:
        summary = {**json_safe(found.summary), "per_patient": json_safe(found.patients)}
        print(json.dumps(summary, indent=2))
        return
    _print_scores(found)
    _print_clinical_and_quality(found)
    console.print(f"  report: {Path(found.out) / 'report.html'}", highlight=False)


def _print_scores(found: dict[str, Any]) -> None:
    """What was scored, where the crop went, and the segmentation measures."""
    from lvseg.evaluate.report import placement_text

    summary = found.summary
    units = found.data.distance_units
    console.print(
        f"{found.model.name} on {summary.slices} slices of {summary.patients} "
        f"patients ({found.data.split_note})",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"  crop: {placement_text(found.settings.placement)}", highlight=False)
    console.print(
        f"  Dice {_number(summary.dice_mean)} (median {_number(summary.dice_median)}), "
        f"IoU {_number(summary.iou_mean)}, pixel accuracy "
        f"{_rate(summary.pixel_accuracy)} (all-background: "
        f"{_rate(summary.background_only_accuracy)})",
        highlight=False,
    )
    console.print(
        f"  HD95 {_number(summary.hd95_mm_mean, 2)} {units}, APD "
        f"{_number(summary.apd_mm_mean, 2)} {units}, good contours "
        f"{_rate(summary.good_contour_rate_5mm)} (5 mm) "
        f"{_rate(summary.good_contour_rate_4mm)} (4 mm), detected "
        f"{_rate(summary.detection_rate)}",
        highlight=False,
    )


def _print_clinical_and_quality(found: dict[str, Any]) -> None:
    """EF agreement, and how well quality control told the bad slices and EFs apart."""
    clinical = found.clinical
    if clinical and clinical.agreement.ef:
        ef = clinical.agreement.ef
        console.print(
            f"  EF of {ef.n} patients: bias {100 * ef.bias:+.1f} points, limits of "
            f"agreement {100 * ef.loa_low:+.1f} to {100 * ef.loa_high:+.1f}",
            highlight=False,
        )
    judged = found.quality
    if judged:
        console.print(
            f"  quality control: {judged.flagged} slices flagged; AUROC "
            f"{_number(judged.auroc)} for Dice < {judged.flag_below:g}, Spearman "
            f"{_number(judged.spearman)}, predicted Dice off by {_number(judged.mae)}",
            highlight=False,
        )
        studies = judged.studies
        if studies:
            console.print(
                f"  EFs for review: {studies.review} of {studies.studies} (of those off by "
                f"more than 5 points: {studies.ef_error_over_5_reviewed} of "
                f"{studies.ef_error_over_5})",
                highlight=False,
            )
