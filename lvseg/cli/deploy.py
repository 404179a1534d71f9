"""``lvseg export`` and ``predict``: a model for deployment, and studies segmented with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from lvseg import layout
from lvseg.cli.choices import ExportFormat
from lvseg.cli.common import (
    OverwriteOption,
    _number,
    clean_errors,
    console,
    error_console,
    slice_progress,
)

ModelsArgument = Annotated[
    list[Path],
    typer.Argument(
        help="A run directory (its selected model) or a .pt checkpoint; several of them "
        "(e.g. the fold runs of a cross-validation) export as one ensemble that averages "
        "their probabilities.",
        show_default=False,
    ),
]
OutOption = Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")]
ExportFormatOption = Annotated[
    ExportFormat,
    typer.Option(
        "--format",
        "-f",
        help="onnx (ONNX Runtime), ort (ONNX Runtime Mobile) or torchscript (PyTorch Mobile).",
    ),
]
Int8Option = Annotated[
    bool, typer.Option("--int8", help="Also write a statically quantised int8 model.")
]
CalibrationOption = Annotated[
    Path | None,
    typer.Option(
        help="Labelled data to calibrate int8 and check the export on (default: the "
        "model's training data, its validation patients for the checks)."
    ),
]
ExportTtaOption = Annotated[
    bool,
    typer.Option(
        "--tta",
        help="Mark the export for test-time augmentation (predict averages the 8 flips and "
        "quarter turns of each crop); the card gives its Dice and cost.",
    ),
]
EmbeddedQualityOption = Annotated[
    Path | None,
    typer.Option(
        help="A quality-control score to embed (benchmarks/quality_control.py --save) "
        "instead of the one lvseg ships (the file's plain score, and its score for "
        "test-time augmentation where it has one).",
    ),
]
EvaluationOption = Annotated[
    Path | None,
    typer.Option(
        help="An lvseg evaluate output folder of this model for its model card (default: the "
        "run's own evaluation folder, where it scored the checkpoint exported).",
    ),
]


@clean_errors
def export_command(
    model: ModelsArgument,
    out: OutOption,
    format: ExportFormatOption = ExportFormat.onnx,
    int8: Int8Option = False,
    calibration: CalibrationOption = None,
    overwrite: OverwriteOption = False,
    tta: ExportTtaOption = False,
    quality: EmbeddedQualityOption = None,
    evaluation: EvaluationOption = None,
) -> None:
    """Export a model for deployment, check it against PyTorch, write its model card."""
    from lvseg.deploy.export import export

    def stage(text: str) -> None:
        error_console.print(f"export: {text}", highlight=False, soft_wrap=True)

    found = export(
        model,
        out,
        format=format.value,
        int8=int8,
        calibration=calibration,
        overwrite=overwrite,
        progress=stage,
        tta=tta,
        quality=quality,
        evaluation=evaluation,
    )
    _print_export_checks(found)
    console.print(f"  model card: {Path(found.out) / layout.CARD_MARKDOWN}", highlight=False)


def _print_export_checks(found: dict[str, Any]) -> None:
    """Each exported file against PyTorch: size, logits, masks, validation Dice and latency."""
    from lvseg.deploy.export import INT8_AIM_DROP

    checks = found.export_checks
    console.print(
        f"{found.model.name} checked on {checks.check_slices} slices ({checks.checks})",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"  pytorch: validation Dice {_number(checks.validation_dice['pytorch'])}, "
        f"{checks.latency_ms_1_thread['pytorch']:.2f} ms per slice on 1 thread",
        highlight=False,
    )
    for label, file in checks.files.items():
        parity = checks.parity[label]
        latency = checks.latency_ms_1_thread.get(label)
        timing = f", {latency:.2f} ms per slice on 1 thread" if latency is not None else ""
        console.print(
            f"  {label}: {file['file']} {file['bytes'] / 1e6:.3f} MB, largest logit difference "
            f"{parity['max_abs_logit_difference']:.2g}, mask Dice vs PyTorch "
            f"{parity['mask_dice']:.4f}, validation Dice "
            f"{_number(checks.validation_dice[label])}{timing}",
            highlight=False,
            soft_wrap=True,
        )
    if "onnx int8" in checks.validation_dice:
        drop = checks.validation_dice["pytorch"] - checks.validation_dice["onnx int8"]
        verdict = "within" if drop <= INT8_AIM_DROP else "beyond"
        console.print(
            f"  int8 Dice drop {drop:+.4f} ({verdict} the {INT8_AIM_DROP} aim)", highlight=False
        )


ExportedModelArgument = Annotated[
    Path,
    typer.Argument(help="An exported model: .onnx / .ort file, or an 'lvseg export' folder."),
]
InputArgument = Annotated[
    Path,
    typer.Argument(
        help="A DICOM folder (a cine series, a study, or several studies), a NIfTI file, "
        "or image files."
    ),
]
ThreadsOption = Annotated[
    int | None, typer.Option(help="CPU threads for ONNX Runtime (default: all).", min=1)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the per-study summaries as JSON.")]
SkipOption = Annotated[
    bool,
    typer.Option(
        "--skip-invalid",
        help="Leave out unreadable files (and studies with no usable cine) and list them.",
    ),
]
PredictTtaOption = Annotated[
    bool | None,
    typer.Option(
        "--tta/--no-tta",
        help="Test-time augmentation: average the LV probability over the 8 flips and "
        "quarter turns of each crop (8x the network's time). Default: as exported.",
    ),
]
ReviewBelowOption = Annotated[
    float | None,
    typer.Option(
        help="Flag frames whose predicted Dice is under this (default 0.7) and write "
        "review.html with only those.",
        min=0.0,
        max=1.0,
    ),
]


@clean_errors
def predict_command(
    model: ExportedModelArgument,
    input: InputArgument,
    out: OutOption,
    threads: ThreadsOption = None,
    json_output: JsonOption = False,
    overwrite: OverwriteOption = False,
    skip_invalid: SkipOption = False,
    tta: PredictTtaOption = None,
    review_below: ReviewBelowOption = None,
) -> None:
    """Segment the LV in every frame of a study with an exported model; write masks (NIfTI),
    overlays, contours, the volume curve, EDV, ESV and EF, and flag the frames quality control
    doubts. Needs no PyTorch."""
    from lvseg.deploy.predict import predict

    with slice_progress("predict") as progress:
        found = predict(
            model,
            input,
            out,
            overwrite=overwrite,
            skip_invalid=skip_invalid,
            threads=threads,
            progress=progress,
            tta=tta,
            review_below=review_below,
        )
    if json_output:
        print(json.dumps(found.studies_json(), indent=2))
        return
    for study in found.studies:
        console.print(_study_line(study), highlight=False, soft_wrap=True, markup=False)
        for note in [*study.study.notes, *study.notes]:
            console.print(f"  {note}", highlight=False, soft_wrap=True, markup=False)
    for item in found.skipped:
        console.print(
            f"skipped {item.path}: {item.reason}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    console.print(f"written: {found.out}", highlight=False, soft_wrap=True, markup=False)


def _study_line(study: dict[str, Any]) -> str:
    """One study in a line: its shape, volumes and EF (or why none), and what QC flagged."""
    shape = study.study.shape
    line = f"{study.study.name}: {shape[0]} slices x {shape[1]} phases"
    if study.ef is not None:
        line += (
            f"; EDV {study.edv_ml:.1f} ml (phase {study.ed_phase}), ESV "
            f"{study.esv_ml:.1f} ml (phase {study.es_phase}), SV {study.sv_ml:.1f} "
            f"ml, EF {100 * study.ef:.1f}%"
        )
    elif study.volume_note:
        line += f"; {study.volume_note}"
    quality = study.quality
    if quality is not None:
        flagged = len(quality.flagged_frames)
        line += f"; quality: {flagged} frame{'s' if flagged != 1 else ''} flagged"
        if quality.verdict:
            line += f" ({quality.verdict})"
    return line
