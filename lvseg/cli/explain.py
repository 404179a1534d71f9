"""``lvseg explain``: CAM and Grad-CAM panels of a model's LV segmentation, and their measures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from lvseg.cli.choices import ExplainMethod, Format
from lvseg.cli.common import (
    FormatOption,
    OverwriteOption,
    _row_number,
    clean_errors,
    console,
    slice_progress,
)

ModelArgument = Annotated[Path, typer.Argument(help="A run directory or a .pt checkpoint.")]
InputsArgument = Annotated[
    list[Path],
    typer.Argument(
        help="Datasets, studies or NIfTI files, single 2-D image or DICOM files, or 'phantom'."
    ),
]
OutOption = Annotated[
    Path, typer.Option("--out", "-o", help="Folder to write: panels/, index.html, metrics.json")
]
MethodOption = Annotated[
    list[ExplainMethod] | None,
    typer.Option(
        "--method",
        "-m",
        help="Repeatable. Default: both where the model has a CAM head, else gradcam.",
    ),
]
LayersOption = Annotated[
    list[str] | None,
    typer.Option("--layers", "--layer", help="Repeatable: Grad-CAM layers (default: last)."),
]
GalleryOption = Annotated[
    str | None, typer.Option(help="Add the strongest activation maps of this layer.")
]
GalleryKOption = Annotated[int, typer.Option(help="Maps in the gallery.", min=1)]
MetricsOption = Annotated[
    bool,
    typer.Option(help="Measure localisation, deletion/insertion and the sanity check."),
]
LimitOption = Annotated[int | None, typer.Option(help="Explain the first N slices.", min=1)]

MEASURES = (
    "energy_inside",
    "pointing_accuracy",
    "deletion_auc",
    "random_deletion_auc",
    "insertion_auc",
    "random_insertion_auc",
)
"""The faithfulness measures printed for each explanation method, in the order printed."""


@clean_errors
def explain_command(
    model: ModelArgument,
    inputs: InputsArgument,
    out: OutOption,
    method: MethodOption = None,
    layers: LayersOption = None,
    gallery: GalleryOption = None,
    gallery_k: GalleryKOption = 8,
    format: FormatOption = Format.auto,
    metrics: MetricsOption = False,
    limit: LimitOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Explain a model's LV segmentation, slice by slice: CAM, Grad-CAM, an HTML index."""
    from lvseg.explain.run import explain

    with slice_progress("explain") as progress:
        summary = explain(
            model,
            inputs,
            out,
            methods=[m.value for m in method or ()],
            layers=layers or [],
            format=format.value,
            metrics=metrics,
            gallery_k=gallery_k,
            progress=progress,
            gallery=gallery,
            limit=limit,
            overwrite=overwrite,
        )
    _print_explanation(summary)


def _print_explanation(summary: dict[str, Any]) -> None:
    """What was explained, the mean Dice, and each method's faithfulness measures."""
    console.print(
        f"explained {summary.slices} slices ({', '.join(summary.explanations)}): {summary.index}",
        highlight=False,
        soft_wrap=True,
    )
    means = summary.means
    if means.get("dice") is not None:
        console.print(
            f"  mean Dice {means['dice']:.4f} on {means['slices_with_reference']} slices "
            "with a reference LV",
            highlight=False,
        )
    if summary.metrics is not None:
        console.print(f"  measures: {summary.metrics}", highlight=False, soft_wrap=True)
        for label, row in means["explanations"].items():
            measures = {name: _row_number(row, name) for name in MEASURES}
            console.print(
                f"  {label} ({int(row.get('slices', 0))} slices): energy in LV "
                f"{measures['energy_inside']}, pointing {measures['pointing_accuracy']}, "
                f"deletion AUC {measures['deletion_auc']} (random "
                f"{measures['random_deletion_auc']}), insertion AUC "
                f"{measures['insertion_auc']} (random {measures['random_insertion_auc']})",
                highlight=False,
                soft_wrap=True,
            )
