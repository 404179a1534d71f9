"""``lvseg data``: inspect datasets, write the phantom, make splits, plan preprocessing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lvseg.cli.choices import Format, PhantomContrast, PhantomFormat
from lvseg.cli.common import FormatOption, clean_errors, console

data_app = typer.Typer(
    help="Data management: inspect datasets, write the phantom, make splits, plan preprocessing.",
    no_args_is_help=True,
)


PathArgument = Annotated[
    Path, typer.Argument(help="Dataset folder or file, or 'phantom' for the embedded phantom.")
]
SkipOption = Annotated[
    bool, typer.Option("--skip-invalid", help="Skip unreadable files and list them.")
]
PatternOption = Annotated[
    str | None,
    typer.Option(
        "--name-pattern",
        help="Folders format: regex with a (?P<patient>...) group, optionally (?P<instance>...), "
        "(?P<slice>...), (?P<phase>...).",
    ),
]
LabelsOption = Annotated[
    str | None,
    typer.Option(
        "--labels",
        help="NIfTI format: preset (acdc, mnms) or mapping like 'lv=3,myocardium=2,rv=1'.",
    ),
]


def load(
    path: Path, format: Format, skip_invalid: bool, name_pattern: str | None, labels: str | None
):
    """The dataset at ``path``, read with the reader options the user actually gave."""
    from lvseg.data.load import load_dataset

    options: dict[str, Any] = {}
    if name_pattern is not None:
        options["name_pattern"] = name_pattern
    if labels is not None:
        options["labels"] = labels
    return load_dataset(path, format.value, skip_invalid=skip_invalid, **options)


@data_app.command("inspect")
@clean_errors
def data_inspect(
    path: PathArgument,
    format: FormatOption = Format.auto,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write a montage PNG of slices + contours.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    skip_invalid: SkipOption = False,
    name_pattern: PatternOption = None,
    labels: LabelsOption = None,
) -> None:
    """Summarise a dataset: patients, slices, structures, phases, spacing, intensities."""
    from lvseg.data.inspect import summarise, write_montage

    dataset = load(path, format, skip_invalid, name_pattern, labels)
    summary = summarise(dataset)
    if out is not None:
        summary["montage"] = str(write_montage(dataset, out))
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    print_summary(summary)


def print_summary(summary: dict[str, Any]) -> None:
    structures = ", ".join(f"{k} {v}" for k, v in summary["slices_per_structure"].items())
    phases = summary["phases"]
    spacing = summary["pixel_spacing_mm"]
    intensity = summary["intensity"]
    table = Table(title=f"{summary['root']} ({summary['format']})", show_header=False)
    table.add_row("patients", str(summary["patients"]))
    table.add_row("slices", str(summary["slices"]))
    table.add_row("slices per structure", structures or "none")
    table.add_row("phases", f"ED {phases['ED']}, ES {phases['ES']}, unknown {phases['unknown']}")
    table.add_row("groups", ", ".join(f"{k} {v}" for k, v in summary["groups"].items()))
    table.add_row("image sizes", ", ".join(f"{k} ({v})" for k, v in summary["image_sizes"].items()))
    table.add_row(
        "pixel spacing (mm)",
        "unknown"
        if spacing["median"] is None
        else f"{spacing['min']}-{spacing['max']} (median {spacing['median']})"
        + (f", unknown on {spacing['unknown']}" if spacing["unknown"] else ""),
    )
    thickness = summary["slice_thickness_mm"]
    if thickness["median"] is not None:
        table.add_row("slice thickness (mm)", f"{thickness['min']}-{thickness['max']}")
    table.add_row(
        "intensity",
        f"min {intensity['min']}, p1 {intensity['p1']}, median {intensity['median']}, "
        f"p99 {intensity['p99']}, max {intensity['max']}",
    )
    table.add_row("skipped files", str(len(summary["skipped"])))
    if "montage" in summary:
        table.add_row("montage", summary["montage"])
    console.print(table)
    for skipped in summary["skipped"]:
        console.print(f"  skipped {skipped['path']}: {skipped['reason']}", highlight=False)


@data_app.command("phantom")
@clean_errors
def data_phantom(
    out: Annotated[Path, typer.Argument(help="Folder to create.")],
    patients: Annotated[int, typer.Option(help="Number of synthetic patients.", min=1)] = 8,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 0,
    format: Annotated[
        PhantomFormat, typer.Option("--format", "-f", help="Sunnybrook DICOM + contours, or NIfTI.")
    ] = PhantomFormat.dicom,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
    contrast: Annotated[
        PhantomContrast,
        typer.Option(
            help="ssfp: cine SSFP contrast; random: every tissue's value drawn anew per patient "
            "(domain randomisation, as SynthSeg)."
        ),
    ] = PhantomContrast.ssfp,
) -> None:
    """Write the synthetic cine-MRI phantom in a real format (DICOM + contours, or NIfTI)."""
    from lvseg.data.phantom import write_phantom

    write_phantom(
        out,
        patients=patients,
        seed=seed,
        format=format.value,
        overwrite=overwrite,
        contrast=contrast.value,
    )
    console.print(
        f"wrote {patients} phantom patients ({format.value}, seed {seed}, {contrast.value} "
        f"contrast) to {out}"
    )


@data_app.command("phantom-truth")
@clean_errors
def data_phantom_truth(
    phantom: Annotated[Path, typer.Argument(help="The phantom folder the studies came from.")],
    prediction: Annotated[Path, typer.Argument(help="An lvseg predict output folder.")],
    run: Annotated[
        Path | None,
        typer.Option(help="The run the model came from: marks the studies it trained on."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Set every predicted study of a phantom beside the phantom's true volumes and EF."""
    from dataclasses import asdict

    from rich import box
    from rich.table import Table

    from lvseg.deploy.truth import EF_CLOSE_POINTS, phantom_truth

    rows = phantom_truth(phantom, prediction, run)
    if as_json:
        print(json.dumps([asdict(r) | {"error_points": r.error_points} for r in rows], indent=2))
        return

    def pair(true: float | None, predicted: float | None, scale: float = 1.0) -> str:
        shown = ("-" if v is None else f"{scale * v:.0f}" for v in (true, predicted))
        return "/".join(shown)

    table = Table(
        title=f"true/predicted, phantom {phantom}", box=box.SIMPLE_HEAD, title_justify="left"
    )
    columns = ["study", "group", "EDV ml", "ESV ml", "EF %", "error", "QC"]
    for column in columns + (["model"] if run else []):
        table.add_column(column, no_wrap=True)
    for row in rows:
        error = "-" if row.error_points is None else f"{row.error_points:+.1f}"
        qc = {True: "trusted", False: "review", None: "-"}[row.trusted]
        cells = [
            row.study,
            row.group,
            pair(row.true_edv_ml, row.predicted_edv_ml),
            pair(row.true_esv_ml, row.predicted_esv_ml),
            pair(row.true_ef, row.predicted_ef, 100.0),
            error,
            qc,
        ]
        if run:
            cells.append("held out" if row.held_out else "trained")
        table.add_row(*cells)
    console.print(table)
    groups = [("", rows)]
    if run:
        groups = [
            (" the model never saw", [r for r in rows if r.held_out]),
            (" it trained on", [r for r in rows if not r.held_out]),
        ]
    for label, chosen in groups:
        if not chosen:
            continue
        errors = [abs(r.error_points) for r in chosen if r.error_points is not None]
        close = sum(e <= EF_CLOSE_POINTS for e in errors)
        mean = sum(errors) / len(errors) if errors else float("nan")
        console.print(
            f"{close} of {len(chosen)} studies{label} within {EF_CLOSE_POINTS:g} points of the "
            f"true EF; mean absolute error {mean:.1f} points",
            highlight=False,
        )


@data_app.command("split")
@clean_errors
def data_split(
    path: PathArgument,
    out: Annotated[Path, typer.Option("--out", "-o", help="Split JSON to write.")],
    format: FormatOption = Format.auto,
    val: Annotated[float, typer.Option(help="Fraction of patients for validation.")] = 0.2,
    test: Annotated[float, typer.Option(help="Fraction of patients held out for test.")] = 0.0,
    folds: Annotated[
        int | None, typer.Option(help="Write K cross-validation folds instead (split_K.json).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    skip_invalid: SkipOption = False,
    name_pattern: PatternOption = None,
    labels: LabelsOption = None,
) -> None:
    """Make a patient-level split (or k folds), stratified by pathology group."""
    from lvseg.data.splits import kfold, patient_groups, split_patients

    dataset = load(path, format, skip_invalid, name_pattern, labels)
    groups = patient_groups(dataset)
    if folds is None:
        splits = {out: split_patients(groups, val_fraction=val, test_fraction=test, seed=seed)}
    else:
        held_out = split_patients(groups, val_fraction=0, test_fraction=test, seed=seed).test
        splits = {
            out.with_name(f"{out.stem}_{i}{out.suffix or '.json'}"): split
            for i, split in enumerate(kfold(groups, folds, seed=seed, test=held_out))
        }
    table = Table("file", "train", "val", "test", title=f"{len(groups)} patients")
    for file, split in splits.items():
        split.save(file)
        table.add_row(str(file), *(str(len(getattr(split, s))) for s in ("train", "val", "test")))
    console.print(table)


@data_app.command("plan")
@clean_errors
def data_plan(
    path: PathArgument,
    format: FormatOption = Format.auto,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write fingerprint and plan as JSON.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print fingerprint and plan.")] = False,
    skip_invalid: SkipOption = False,
    name_pattern: PatternOption = None,
    labels: LabelsOption = None,
) -> None:
    """Fingerprint a dataset and propose its preprocessing (target spacing, crop, jitter)."""
    from lvseg import atomic
    from lvseg.data.preprocess import fingerprint, plan_preprocessing

    dataset = load(path, format, skip_invalid, name_pattern, labels)
    print_ = fingerprint(dataset.records)
    plan = plan_preprocessing(print_)
    result = {"fingerprint": print_.to_dict(), "plan": plan.to_dict()}
    if out is not None:
        atomic.write_text(out, json.dumps(result, indent=2) + "\n")
    if as_json:
        print(json.dumps(result, indent=2))
        return
    spacing = plan.target_spacing_mm
    table = Table(title=f"preprocessing plan for {path}", show_header=False)
    table.add_row(
        "target spacing (mm)", "keep the pixel grid" if spacing is None else f"{spacing[0]:.3f}"
    )
    table.add_row("crop size (px)", str(plan.crop_size))
    table.add_row("training jitter (px)", str(plan.jitter_px))
    table.add_row("intensity", f"{plan.normalisation}, clip {plan.clip_percentiles}")
    console.print(table)
    for note in plan.notes:
        console.print(f"  - {note}", highlight=False)
