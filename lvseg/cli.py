"""The ``lvseg`` command line: one thin function per verb, each calling one package function.

Bad input never shows a traceback: :class:`~lvseg.data.errors.InvalidInputError` (and a few
file-system errors) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lvseg import __version__
from lvseg.data.errors import InvalidInputError

app = typer.Typer(
    help="Train a small, interpretable CNN to segment the left ventricle in cardiac MRI.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Data management: inspect datasets, write the phantom, make splits, plan preprocessing.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")

console = Console()
error_console = Console(stderr=True)


class Format(str, Enum):
    auto = "auto"
    sunnybrook = "sunnybrook"
    folders = "folders"
    nifti = "nifti"
    phantom = "phantom"


class PhantomFormat(str, Enum):
    dicom = "dicom"
    nifti = "nifti"


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one error line on stderr and give the exit to raise."""
    error_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def clean_errors(function):
    """Turn expected failures into one line and exit code 2, never a traceback."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except InvalidInputError as error:
            raise fail(str(error)) from None
        except FileExistsError as error:
            raise fail(f"{error.args[0]} (use --overwrite to replace it)") from None
        except PermissionError as error:
            raise fail(f"{error.filename}: permission denied") from None
        except KeyboardInterrupt:
            raise fail("interrupted", code=130) from None

    return wrapper


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    """lvseg: a lightweight, interpretable LV segmentation system you can watch learn."""
    from lvseg.data import progress

    progress.enable()
    if version:
        console.print(f"lvseg {__version__}")
        raise typer.Exit(0)


PathArgument = Annotated[
    Path, typer.Argument(help="Dataset folder or file, or 'phantom' for the embedded phantom.")
]
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Input format.")]
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


def read_options(name_pattern: str | None, labels: str | None) -> dict[str, Any]:
    """The reader-specific options the user actually gave."""
    options: dict[str, Any] = {}
    if name_pattern is not None:
        options["name_pattern"] = name_pattern
    if labels is not None:
        options["labels"] = labels
    return options


def load(path: Path, format: Format, skip_invalid: bool, **options: Any):
    from lvseg.data.load import load_dataset

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
    from lvseg.data.inspect import summarize, write_montage

    dataset = load(path, format, skip_invalid, **read_options(name_pattern, labels))
    summary = summarize(dataset)
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
) -> None:
    """Write the synthetic cine-MRI phantom in a real format (DICOM + contours, or NIfTI)."""
    from lvseg.data.phantom import write_phantom

    write_phantom(out, patients=patients, seed=seed, format=format.value, overwrite=overwrite)
    console.print(f"wrote {patients} phantom patients ({format.value}, seed {seed}) to {out}")


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

    dataset = load(path, format, skip_invalid, **read_options(name_pattern, labels))
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
    from lvseg.data import atomic
    from lvseg.data.preprocess import fingerprint, plan_preprocessing

    dataset = load(path, format, skip_invalid, **read_options(name_pattern, labels))
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
