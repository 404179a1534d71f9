"""The ``lvseg`` command line: one thin function per verb, each calling one package function.

Bad input never shows a traceback: :class:`~lvseg.errors.InvalidInputError` (and a few
file-system errors) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import sqlite3
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lvseg import __version__, layout
from lvseg.errors import InvalidInputError

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


class PhantomContrast(str, Enum):
    ssfp = "ssfp"
    random = "random"


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one error line on stderr and give the exit to raise."""
    from rich.markup import escape

    # escape: messages quote user text, and "[optim]" must not be read as rich markup
    error_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


EXTRA_OF = {
    "torch": "train",
    "kornia": "train",
    "fastapi": "train",
    "uvicorn": "train",
    "plotly": "train",
    "onnx": "train",
    "onnxscript": "train",
    "onnxruntime": "infer",
}
"""The optional packages (see pyproject.toml) and the extra that installs each: the core install
reads data and, with ``lvseg[infer]``, predicts; everything else needs ``lvseg[train]``."""


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
"""A full disk and a full quota read alike: the write stopped, the temporary file was removed."""


def _disk_full(error: BaseException | None) -> OSError | None:
    """The full-disk OSError behind ``error``: itself, or one it was raised from (pydicom, for
    one, re-raises a failed write as a new OSError without the errno)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            return error
        error = error.__cause__ or error.__context__
        seen += 1
    return None


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
        except OSError as error:
            full = _disk_full(error)
            if full is None:
                raise
            where = f"{full.filename}: " if full.filename else ""
            raise fail(f"{where}no space left on the device; free some and run it again") from None
        except sqlite3.OperationalError as error:
            # SQLite says "database or disk is full" where the OS says ENOSPC (the run store).
            if "is full" not in str(error):
                raise
            raise fail("no space left on the device for the run database") from None
        except ModuleNotFoundError as error:
            missing = (error.name or "").split(".")[0]
            extra = EXTRA_OF.get(missing)
            if extra is None:
                raise
            raise fail(
                f"this command needs {missing}, which is not installed: "
                f"pip install 'lvseg[{extra}]'"
            ) from None

    return wrapper


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    """lvseg: a lightweight, interpretable LV segmentation system you can watch learn."""
    from lvseg import progress

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
    from lvseg.data.inspect import summarise, write_montage

    dataset = load(path, format, skip_invalid, **read_options(name_pattern, labels))
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
    from lvseg import atomic
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


# --------------------------------------------------------------------------------------------
# Models, training, runs, selection


model_app = typer.Typer(help="The networks: sizes and costs.", no_args_is_help=True)
runs_app = typer.Typer(help="Training runs: list them, show one.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(runs_app, name="runs")


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Prefer(str, Enum):
    smallest = "smallest"
    fastest = "fastest"
    dice = "dice"


@model_app.command("info")
@clean_errors
def model_info(
    name: Annotated[str, typer.Argument(help="Registered model name (lvnet, unet, dli-fcn).")],
    input_size: Annotated[int, typer.Option(help="Square input side for the MAC count.")] = 128,
) -> None:
    """Print a model's parameters, fp32 size and multiply-accumulates per image."""
    from lvseg.model.registry import model_names, size_report

    if name not in model_names():
        raise fail(f"unknown model {name!r}; choose one of {', '.join(model_names())}")
    report = size_report(name, input_size=input_size)
    table = Table(title=name, show_header=False)
    for label, value in report.rows():
        table.add_row(label, value)
    console.print(table)


DASHBOARD_HOST = "127.0.0.1"
DASHBOARD_PORT = 8765
"""The dashboard's defaults (lvseg.monitor.launch's), here so the CLI loads without fastapi."""
DashboardHost = Annotated[
    str, typer.Option(help="Address to listen on; any but 127.0.0.1 needs a token.")
]
DashboardPort = Annotated[int, typer.Option(help="Port to listen on (0: any free port).")]
DashboardToken = Annotated[
    str | None,
    typer.Option(
        help="Access token every request must carry (16+ printable characters, no spaces); "
        "generated for a non-local host."
    ),
]


@app.command("train")
@clean_errors
def train_command(
    data: Annotated[
        str | None, typer.Option(help="Dataset folder, or 'phantom' (default: the phantom).")
    ] = None,
    format: Annotated[Format | None, typer.Option("--format", "-f", help="Input format.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (lvnet, unet, dli-fcn).")] = None,
    init: Annotated[
        Path | None,
        typer.Option(
            help="Start from the weights of another run or .pt checkpoint of the same model and "
            "options (fine-tuning, e.g. from a phantom run) instead of from scratch."
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs to train.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Slices per batch (per process).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML or JSON config (e.g. a run's config.json).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory (default runs/MODEL-TIME).")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue the run in --out from its last checkpoint, with its saved config (a "
            "run with no checkpoint yet starts again from scratch; a damaged run.db is kept "
            "aside as run.db.damaged-TIME and rebuilt from the checkpoint)."
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace the run in --out: only a run lvseg wrote (nothing else in the "
            "folder) that no trainer is writing."
        ),
    ] = False,
    device: Annotated[Device | None, typer.Option(help="Where to train.")] = None,
    precision: Annotated[
        Precision | None, typer.Option(help="auto: bf16/fp16 autocast on CUDA, fp32 elsewhere.")
    ] = None,
    folds: Annotated[int | None, typer.Option(help="K for a K-fold patient split.")] = None,
    fold: Annotated[int | None, typer.Option(help="Which fold to train (0..K-1).")] = None,
    val: Annotated[float | None, typer.Option(help="Share of patients for validation.")] = None,
    exclude_patients: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated patient ids kept out of training and validation entirely "
            "(e.g. the patients of an external test)."
        ),
    ] = None,
    pixel_spacing: Annotated[
        float | None,
        typer.Option(
            help="In-plane spacing in mm of images that store none (PNG folders); saved in the "
            "plan, so the model works in mm (Sunnybrook exports get 1.33 mm by name)."
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    deterministic: Annotated[
        bool | None, typer.Option(help="Deterministic algorithms (exact resume).")
    ] = None,
    compile: Annotated[bool | None, typer.Option(help="torch.compile the model.")] = None,
    monitor: Annotated[
        bool | None,
        typer.Option(help="Per-layer probes, alerts and watch slices (on by default)."),
    ] = None,
    tensorboard: Annotated[
        bool | None, typer.Option(help="Also write TensorBoard event files to RUN/tensorboard.")
    ] = None,
    dashboard: Annotated[
        bool, typer.Option(help="Serve the live dashboard beside training and print its URL.")
    ] = False,
    host: DashboardHost = DASHBOARD_HOST,
    port: DashboardPort = DASHBOARD_PORT,
    token: DashboardToken = None,
) -> None:
    """Train a model from scratch (or, with --init, from another run's weights); without
    --data, on the embedded phantom."""
    if not dashboard and (host != DASHBOARD_HOST or port != DASHBOARD_PORT or token is not None):
        raise fail("--host, --port and --token are options of --dashboard; add --dashboard")
    from lvseg.config import TrainConfig
    from lvseg.train.console import ConsoleProgress
    from lvseg.train.engine import train

    overrides: dict[str, Any] = {}

    def put(section: str | None, key: str, value: Any) -> None:
        if value is None:
            return
        value = value.value if isinstance(value, Enum) else value
        target = overrides if section is None else overrides.setdefault(section, {})
        target[key] = str(value) if isinstance(value, Path) else value

    put("data", "path", data)
    put("data", "format", format)
    put("data", "folds", folds)
    put("data", "fold", fold)
    put("data", "val_fraction", val)
    put("data", "pixel_spacing_mm", pixel_spacing)
    if exclude_patients is not None:
        put(
            "data",
            "exclude_patients",
            [p.strip() for p in exclude_patients.split(",") if p.strip()],
        )
    put("model", "name", model)
    put("model", "init", init)
    put("optim", "epochs", epochs)
    put("optim", "batch_size", batch_size)
    put("optim", "lr", lr)
    put("runtime", "device", device)
    put("runtime", "precision", precision)
    put("runtime", "deterministic", deterministic)
    put("runtime", "compile", compile)
    put("monitor", "enabled", monitor)
    put("monitor", "tensorboard", tensorboard)
    put(None, "seed", seed)
    if resume and overwrite:
        raise fail("--resume continues a run and --overwrite replaces it: give one of them")
    if resume:
        if out is None:
            raise fail("--resume needs --out RUN_DIRECTORY")
        if overrides or config is not None:
            given = ", ".join(sorted(f"{k}" for k in overrides) + (["config"] if config else []))
            raise fail(f"--resume continues with the run's saved config; drop: {given}")
        run_config = TrainConfig()
    else:
        base = TrainConfig.load(config) if config is not None else TrainConfig()
        run_config = base.merged(overrides, source="command line")
    if out is None:
        from datetime import datetime

        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{run_config.model.name}-{stamp}"
    import os

    main_rank = int(os.environ.get("RANK", "0")) == 0
    server = None
    if dashboard and main_rank:
        from lvseg.monitor.launch import start_dashboard

        # The dashboard watches the folder of runs: the new run appears there once it starts.
        out.parent.mkdir(parents=True, exist_ok=True)
        server = start_dashboard(out.parent, host=host, port=port, token=token, focus=out.name)
        error_console.print(f"dashboard: {server.url}", highlight=False, soft_wrap=True)
    reporter = ConsoleProgress(error_console, rank=int(os.environ.get("RANK", "0")))
    try:
        result = train(
            run_config, out, resume=resume, overwrite=overwrite, progress=reporter.hooks()
        )
    except BaseException:
        if server is not None:
            server.stop()
        raise
    finally:
        reporter.stop()
    if main_rank:
        best = "-" if result.best_dice is None else f"{result.best_dice:.4f}"
        console.print(
            f"{result.status}: {result.epochs} epochs, {result.steps} steps in "
            f"{result.seconds:.0f} s; best val Dice {best} (epoch {result.best_epoch}); "
            f"run {result.run_dir}",
            highlight=False,
            soft_wrap=True,
        )
    if server is not None:
        # The line is printed inside the try: a Ctrl-C that follows it, however fast, stops the
        # dashboard and exits 0 (CI once sent one before the process reached the wait).
        try:
            error_console.print(
                f"dashboard still serving at {server.url}; press Ctrl-C to stop it",
                highlight=False,
                soft_wrap=True,
            )
            server.wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()


@app.command("select")
@clean_errors
def select_command(
    runs: Annotated[list[Path], typer.Argument(help="Run directories to choose from.")],
    max_dice_drop: Annotated[
        float, typer.Option(help="Allowed drop below the best validation Dice.")
    ] = 0.005,
    prefer: Annotated[
        Prefer, typer.Option(help="Within the drop: fewest parameters, fewest MACs, or best Dice.")
    ] = Prefer.smallest,
) -> None:
    """Pick the deployment model across epochs and runs; write selected.json.

    A run whose run.db is damaged or locked is one error line naming it (exit 2).
    """
    from lvseg.train.select import select

    selection = select(runs, max_dice_drop=max_dice_drop, prefer=prefer.value)
    chosen = selection.chosen
    console.print(f"selected {chosen.checkpoint}", highlight=False)
    console.print(f"  model {chosen.model}, epoch {chosen.epoch}, val Dice {chosen.val_dice:.4f}")
    console.print(f"  why: {selection.reason}", highlight=False)
    console.print(f"  written: {selection.written}", highlight=False)
    for line in selection.rejected:
        console.print(f"  left out: {line}", highlight=False)


@runs_app.command("list")
@clean_errors
def runs_list(
    root: Annotated[Path, typer.Argument(help="Folder holding run directories.")] = Path("runs"),
) -> None:
    """List the runs under a folder: status, model, epochs, best validation Dice.

    A run that cannot be read is listed as "corrupt" or "locked", with the reason below the
    table; the other runs are listed as usual.
    """
    from lvseg.runs.report import format_run_errors, format_runs_table
    from lvseg.runs.store import list_runs

    summaries = list_runs(root)
    console.print(format_runs_table(summaries))
    for line in format_run_errors(summaries):
        console.print(line, highlight=False, soft_wrap=True, markup=False)


@runs_app.command("show")
@clean_errors
def runs_show(run: Annotated[Path, typer.Argument(help="A run directory.")]) -> None:
    """Show one run: config, epochs, checkpoints, events.

    A damaged or locked run.db is one error line naming it (exit 2).
    """
    from lvseg.runs.report import format_run_detail
    from lvseg.runs.store import RunStore

    with RunStore.open(run, readonly=True) as store:
        for renderable in format_run_detail(store):
            console.print(renderable)


@contextlib.contextmanager
def slice_progress(label: str):
    """A progress callback ``(done, total)`` drawing a bar on a terminal's stderr (None elsewhere).

    The bar starts on the first report, so it never overlaps the data readers' own bars.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    if not error_console.is_terminal:
        yield None
        return
    bar = Progress(
        label, BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=error_console, transient=True,
    )  # fmt: skip
    task = None

    def progress(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task(label, total=total)
        bar.update(task, completed=done)

    try:
        yield progress
    finally:
        bar.stop()


class ExplainMethod(str, Enum):
    cam = "cam"
    gradcam = "gradcam"


@app.command("explain")
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


class EvaluateSplit(str, Enum):
    held_out = "held-out"
    all = "all"


class Crop(str, Enum):
    """Mirrors :data:`lvseg.segment.segmenter.CROPS` (a test checks that they agree)."""

    located = "located"
    centre = "centre"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@app.command("evaluate")
@clean_errors
def evaluate_command(
    targets: Annotated[
        list[Path],
        typer.Argument(
            help="MODEL DATA: a run directory, a .pt checkpoint or an exported model (folder or "
            ".onnx, run by ONNX Runtime as predict runs it), and a dataset. With --compare: "
            "evaluation folders (or runs evaluated into RUN/evaluation) to put side by side.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder to write (default: RUN/evaluation, else ./evaluation)."
        ),
    ] = None,
    format: FormatOption = Format.auto,
    split: Annotated[
        EvaluateSplit,
        typer.Option(help="held-out: leave out the patients the model trained on; all: score all."),
    ] = EvaluateSplit.held_out,
    crop: Annotated[
        Crop,
        typer.Option(
            help="located: crop on the heart located in each patient's stack, as predict does; "
            "centre: crop at the image centre."
        ),
    ] = Crop.located,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the summary and per-patient rows as JSON.")
    ] = False,
    compare: Annotated[
        bool, typer.Option("--compare", help="Compare finished evaluations in one table.")
    ] = False,
    explanations: Annotated[
        Path | None,
        typer.Option(help="Add the measures of an 'lvseg explain --metrics' output to the report."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Score the first N slices.", min=1)] = None,
    tta: Annotated[
        bool,
        typer.Option(
            "--tta",
            help="Test-time augmentation: average the LV probability over the 8 flips and "
            "quarter turns of each crop (8x the network's time).",
        ),
    ] = False,
    quality: Annotated[
        Path | None,
        typer.Option(
            help="A quality-control score to judge the slices with (default: the model's, or "
            "the one lvseg ships; with --tta, its score for test-time augmentation); the report "
            "says how well it predicted their Dice.",
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out folder.")] = False,
) -> None:
    """Score a model per slice and per patient (Dice, distances, Sunnybrook measures, volumes
    and EF) on the patients it did not train on; write metrics.json, slices.csv, report.html."""
    from lvseg.evaluate.report import placement_text
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
    summary = found.summary
    if json_output:
        print(
            json.dumps({**json_safe(summary), "per_patient": json_safe(found.patients)}, indent=2)
        )
        return
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
    console.print(f"  report: {Path(found.out) / 'report.html'}", highlight=False)


class ExportFormat(str, Enum):
    onnx = "onnx"
    ort = "ort"
    torchscript = "torchscript"


@app.command("export")
@clean_errors
def export_command(
    model: Annotated[
        list[Path],
        typer.Argument(
            help="A run directory (its selected model) or a .pt checkpoint; several of them "
            "(e.g. the fold runs of a cross-validation) export as one ensemble that averages "
            "their probabilities.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")],
    format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            "-f",
            help="onnx (ONNX Runtime), ort (ONNX Runtime Mobile) or torchscript (PyTorch Mobile).",
        ),
    ] = ExportFormat.onnx,
    int8: Annotated[
        bool, typer.Option("--int8", help="Also write a statically quantised int8 model.")
    ] = False,
    calibration: Annotated[
        Path | None,
        typer.Option(
            help="Labelled data to calibrate int8 and check the export on (default: the "
            "model's training data, its validation patients for the checks)."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out folder.")] = False,
    tta: Annotated[
        bool,
        typer.Option(
            "--tta",
            help="Mark the export for test-time augmentation (predict averages the 8 flips and "
            "quarter turns of each crop); the card gives its Dice and cost.",
        ),
    ] = False,
    quality: Annotated[
        Path | None,
        typer.Option(
            help="A quality-control score to embed (benchmarks/quality_control.py --save) "
            "instead of the one lvseg ships (the file's plain score, and its score for "
            "test-time augmentation where it has one).",
        ),
    ] = None,
) -> None:
    """Export a model for deployment, check it against PyTorch, write its model card."""
    from lvseg.deploy.export import INT8_AIM_DROP, export

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
    )
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
    console.print(f"  model card: {Path(found.out) / layout.CARD_MARKDOWN}", highlight=False)


@app.command("predict")
@clean_errors
def predict_command(
    model: Annotated[
        Path,
        typer.Argument(help="An exported model: .onnx / .ort file, or an 'lvseg export' folder."),
    ],
    input: Annotated[
        Path,
        typer.Argument(
            help="A DICOM folder (a cine series, a study, or several studies), a NIfTI file, "
            "or image files."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")],
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for ONNX Runtime (default: all).", min=1)
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the per-study summaries as JSON.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out folder.")] = False,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="Leave out unreadable files (and studies with no usable cine) and list them.",
        ),
    ] = False,
    tta: Annotated[
        bool | None,
        typer.Option(
            "--tta/--no-tta",
            help="Test-time augmentation: average the LV probability over the 8 flips and "
            "quarter turns of each crop (8x the network's time). Default: as exported.",
        ),
    ] = None,
    review_below: Annotated[
        float | None,
        typer.Option(
            help="Flag frames whose predicted Dice is under this (default 0.7) and write "
            "review.html with only those.",
            min=0.0,
            max=1.0,
        ),
    ] = None,
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
        console.print(line, highlight=False, soft_wrap=True, markup=False)
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


@app.command("dashboard")
@clean_errors
def dashboard_command(
    target: Annotated[
        Path, typer.Argument(help="A run directory, or a folder of runs (new runs show up too).")
    ] = Path("runs"),
    host: DashboardHost = DASHBOARD_HOST,
    port: DashboardPort = DASHBOARD_PORT,
    token: DashboardToken = None,
) -> None:
    """Serve the live training dashboard of a run, or of the runs in a folder, until Ctrl-C."""
    from lvseg.monitor.launch import DashboardServer

    server = DashboardServer(target, host=host, port=port, token=token)
    console.print(
        f"dashboard of {target}: {server.url} (Ctrl-C to stop)", highlight=False, soft_wrap=True
    )
    server.run()
