"""``lvseg explain``: CAM and Grad-CAM panels of a model's LV segmentation, and their measures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from lvseg.cli.choices import ExplainMethod, Format
from lvseg.cli.common import FormatOption, clean_errors, console, slice_progress


@clean_errors
def explain_command(
    model: Annotated[Path, typer.Argument(help="A run directory or a .pt checkpoint.")],
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Datasets, studies or NIfTI files, single 2-D image or DICOM files, or 'phantom'."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write: panels/, index.html, metrics.json")
    ],
    method: Annotated[
        list[ExplainMethod] | None,
        typer.Option(
            "--method",
            "-m",
            help="Repeatable. Default: both where the model has a CAM head, else gradcam.",
        ),
    ] = None,
    layers: Annotated[
        list[str] | None,
        typer.Option("--layers", "--layer", help="Repeatable: Grad-CAM layers (default: last)."),
    ] = None,
    gallery: Annotated[
        str | None, typer.Option(help="Add the strongest activation maps of this layer.")
    ] = None,
    gallery_k: Annotated[int, typer.Option(help="Maps in the gallery.", min=1)] = 8,
    format: FormatOption = Format.auto,
    metrics: Annotated[
        bool,
        typer.Option(help="Measure localisation, deletion/insertion and the sanity check."),
    ] = False,
    limit: Annotated[int | None, typer.Option(help="Explain the first N slices.", min=1)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out folder.")] = False,
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
    console.print(
        f"explained {summary['slices']} slices ({', '.join(summary['explanations'])}): "
        f"{summary['index']}",
        highlight=False,
        soft_wrap=True,
    )
    means = summary["means"]
    if means.get("dice") is not None:
        console.print(
            f"  mean Dice {means['dice']:.4f} on {means['slices_with_reference']} slices "
            "with a reference LV",
            highlight=False,
        )
    if summary["metrics"] is not None:
        console.print(f"  measures: {summary['metrics']}", highlight=False, soft_wrap=True)

        def number(row: dict[str, Any], name: str) -> str:
            return "-" if row.get(name) is None else f"{row[name]:.3f}"

        for label, row in means["explanations"].items():
            console.print(
                f"  {label} ({int(row.get('slices', 0))} slices): energy in LV "
                f"{number(row, 'energy_inside')}, pointing {number(row, 'pointing_accuracy')}, "
                f"deletion AUC {number(row, 'deletion_auc')} (random "
                f"{number(row, 'random_deletion_auc')}), insertion AUC "
                f"{number(row, 'insertion_auc')} (random {number(row, 'random_insertion_auc')})",
                highlight=False,
                soft_wrap=True,
            )
