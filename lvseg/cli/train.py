"""``lvseg train``, ``select`` and ``runs``: train a network, pick the model to deploy, look at
runs (``lvseg model`` is :mod:`lvseg.cli.model`)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from lvseg.cli.choices import MODEL_NAMES, Device, Format, Precision, Prefer
from lvseg.cli.common import clean_errors, console, error_console, fail, given_options
from lvseg.cli.dashboard import (
    DASHBOARD_HOST,
    DASHBOARD_PORT,
    DashboardHost,
    DashboardPort,
    DashboardToken,
)
from lvseg.config import TrainConfig

MODEL_LIST = ", ".join(MODEL_NAMES)

runs_app = typer.Typer(help="Training runs: list them, show one.", no_args_is_help=True)


DataOption = Annotated[
    str | None, typer.Option(help="Dataset folder, or 'phantom' (default: the phantom).")
]
TrainFormatOption = Annotated[Format | None, typer.Option("--format", "-f", help="Input format.")]
ModelOption = Annotated[str | None, typer.Option(help=f"Model name ({MODEL_LIST}).")]
ModelOptionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--model-option",
        help="A size knob of the model as key=value (e.g. width=8; lvseg model info shows the "
        "network it makes); repeat for several. Over the config's model.options.",
    ),
]
InitOption = Annotated[
    Path | None,
    typer.Option(
        help="Start from the weights of another run or .pt checkpoint of the same model and "
        "options (fine-tuning, e.g. from a phantom run) instead of from scratch."
    ),
]
EpochsOption = Annotated[int | None, typer.Option(help="Epochs to train.")]
BatchSizeOption = Annotated[int | None, typer.Option(help="Slices per batch (per process).")]
LrOption = Annotated[float | None, typer.Option(help="Peak learning rate.")]
ConfigOption = Annotated[
    Path | None, typer.Option(help="TOML or JSON config (e.g. a run's config.json).")
]
RunOption = Annotated[
    Path | None, typer.Option("--out", "-o", help="Run directory (default runs/MODEL-TIME).")
]
ResumeOption = Annotated[
    bool,
    typer.Option(
        help="Continue the run in --out from its last checkpoint, with its saved config (a "
        "run with no checkpoint yet starts again from scratch; a damaged run.db is kept "
        "aside as run.db.damaged-TIME and rebuilt from the checkpoint)."
    ),
]
OverwriteOption = Annotated[
    bool,
    typer.Option(
        help="Replace the run in --out: only a run lvseg wrote (nothing else in the "
        "folder) that no trainer is writing."
    ),
]
DeviceOption = Annotated[Device | None, typer.Option(help="Where to train.")]
PrecisionOption = Annotated[
    Precision | None, typer.Option(help="auto: bf16/fp16 autocast on CUDA, fp32 elsewhere.")
]
SplitOption = Annotated[
    Path | None,
    typer.Option(
        help="A patient split file (train, val and test lists, as lvseg data split writes): "
        "its train patients train, its val patients validate, every other patient is held "
        "out. Instead of --val, --folds and --fold."
    ),
]
FoldsOption = Annotated[int | None, typer.Option(help="K for a K-fold patient split.")]
FoldOption = Annotated[int | None, typer.Option(help="Which fold to train (0..K-1).")]
ValOption = Annotated[float | None, typer.Option(help="Share of patients for validation.")]
ExcludeOption = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated patient ids kept out of training and validation entirely "
        "(e.g. the patients of an external test)."
    ),
]
PixelSpacingOption = Annotated[
    float | None,
    typer.Option(
        help="In-plane spacing in mm of images that store none (PNG folders); saved in the "
        "plan, so the model works in mm (Sunnybrook exports get 1.33 mm by name)."
    ),
]
SeedOption = Annotated[int | None, typer.Option(help="Random seed.")]
DeterministicOption = Annotated[
    bool | None, typer.Option(help="Deterministic algorithms (exact resume).")
]
CompileOption = Annotated[bool | None, typer.Option(help="torch.compile the model.")]
MonitorOption = Annotated[
    bool | None,
    typer.Option(help="Per-layer probes, alerts and watch slices (on by default)."),
]
TensorboardOption = Annotated[
    bool | None, typer.Option(help="Also write TensorBoard event files to RUN/tensorboard.")
]
DashboardOption = Annotated[
    bool, typer.Option(help="Serve the live dashboard beside training and print its URL.")
]

TRAIN_CONFIG = {
    "data": "data.path",
    "format": "data.format",
    "folds": "data.folds",
    "fold": "data.fold",
    "val": "data.val_fraction",
    "pixel_spacing": "data.pixel_spacing_mm",
    "exclude_patients": "data.exclude_patients",
    "model": "model.name",
    "init": "model.init",
    "epochs": "optim.epochs",
    "batch_size": "optim.batch_size",
    "lr": "optim.lr",
    "device": "runtime.device",
    "precision": "runtime.precision",
    "deterministic": "runtime.deterministic",
    "compile": "runtime.compile",
    "monitor": "monitor.enabled",
    "tensorboard": "monitor.tensorboard",
    "seed": "seed",
}
"""The options of ``lvseg train`` that set a config value, each with the dotted key it sets."""


@clean_errors
def train_command(
    data: DataOption = None,
    format: TrainFormatOption = None,
    model: ModelOption = None,
    model_option: ModelOptionOption = None,
    init: InitOption = None,
    epochs: EpochsOption = None,
    batch_size: BatchSizeOption = None,
    lr: LrOption = None,
    config: ConfigOption = None,
    out: RunOption = None,
    resume: ResumeOption = False,
    overwrite: OverwriteOption = False,
    device: DeviceOption = None,
    precision: PrecisionOption = None,
    split: SplitOption = None,
    folds: FoldsOption = None,
    fold: FoldOption = None,
    val: ValOption = None,
    exclude_patients: ExcludeOption = None,
    pixel_spacing: PixelSpacingOption = None,
    seed: SeedOption = None,
    deterministic: DeterministicOption = None,
    compile: CompileOption = None,
    monitor: MonitorOption = None,
    tensorboard: TensorboardOption = None,
    dashboard: DashboardOption = False,
    host: DashboardHost = DASHBOARD_HOST,
    port: DashboardPort = DASHBOARD_PORT,
    token: DashboardToken = None,
) -> None:
    """Train a model from scratch (or, with --init, from another run's weights); without
    --data, on the embedded phantom."""
    options = dict(locals())  # every option by its name, as TRAIN_CONFIG names them
    if not dashboard and (host != DASHBOARD_HOST or port != DASHBOARD_PORT or token is not None):
        raise fail("--host, --port and --token are options of --dashboard; add --dashboard")
    from lvseg.train.console import ConsoleProgress
    from lvseg.train.engine import train

    options["exclude_patients"] = _comma_separated(exclude_patients)
    overrides = given_options(options, TRAIN_CONFIG)
    if split is not None:
        overrides = _with_split(overrides, split, resume=resume)
    run_config = _run_config(overrides, config, resume=resume, overwrite=overwrite, out=out)
    run_config = _with_model_options(run_config, model_option, resume=resume)
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{run_config.model.name}-{stamp}"
    rank = int(os.environ.get("RANK", "0"))
    server = _start_dashboard(out, host, port, token) if dashboard and rank == 0 else None
    reporter = ConsoleProgress(error_console, rank=rank)
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
    if rank == 0:
        _print_training(result)
    if server is not None:
        _serve_until_interrupted(server)


def _comma_separated(text: str | None) -> list[str] | None:
    """``"a, b,,c"`` as ``["a", "b", "c"]``; None stays None (the option was not given)."""
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def _run_config(
    overrides: dict[str, Any],
    config: Path | None,
    *,
    resume: bool,
    overwrite: bool,
    out: Path | None,
) -> TrainConfig:
    """The config to train with: a config file (or the defaults) with the options over it; on
    --resume the defaults, as the engine continues with the run's saved config."""
    if resume and overwrite:
        raise fail("--resume continues a run and --overwrite replaces it: give one of them")
    if not resume:
        base = TrainConfig.load(config) if config is not None else TrainConfig()
        return base.merged(overrides, source="command line")
    if out is None:
        raise fail("--resume needs --out RUN_DIRECTORY")
    if overrides or config is not None:
        given = ", ".join(sorted(f"{k}" for k in overrides) + (["config"] if config else []))
        raise fail(f"--resume continues with the run's saved config; drop: {given}")
    return TrainConfig()


def _with_split(overrides: dict[str, Any], path: Path, *, resume: bool) -> dict[str, Any]:
    """The options with a split file's patients as the fixed split (data.split_train and
    data.split_val, folds off): the run's config.json holds the lists, not the file's path."""
    from lvseg.data.splits import Split

    if resume:
        raise fail("--resume continues with the run's saved config; drop: split")
    given = [key for key in ("val_fraction", "folds", "fold") if key in overrides.get("data", {})]
    if given:
        flags = {"val_fraction": "--val", "folds": "--folds", "fold": "--fold"}
        raise fail(f"--split fixes the patients: drop {', '.join(flags[k] for k in given)}")
    fixed = Split.load(path)
    if not fixed.train:
        raise fail(f"{path}: the split has no training patients")
    data = {**overrides.get("data", {}), "folds": 0, "fold": 0}
    data |= {"split_train": list(fixed.train), "split_val": list(fixed.val)}
    return {**overrides, "data": data}


def _with_model_options(
    config: TrainConfig, pairs: list[str] | None, *, resume: bool
) -> TrainConfig:
    """``config`` with the --model-option knobs (``width=8``) over its model's options, each
    read as that model's field type: an unknown knob or a bad value is a one-line error."""
    if not pairs:
        return config
    if resume:
        raise fail("--resume continues with the run's saved config; drop: model_option")
    from lvseg.model.registry import parse_options

    try:
        options = parse_options(config.model.name, pairs)
    except ValueError as error:
        raise fail(f"--model-option: {error}") from None
    return config.merged({"model": {"options": options}}, source="command line")


def _start_dashboard(out: Path, host: str, port: int, token: str | None):
    """The live dashboard of the folder of runs: the new run appears there once it starts."""
    from lvseg.dashboard.launch import start_dashboard

    out.parent.mkdir(parents=True, exist_ok=True)
    server = start_dashboard(out.parent, host=host, port=port, token=token, focus=out.name)
    error_console.print(f"dashboard: {server.url}", highlight=False, soft_wrap=True)
    return server


def _print_training(result) -> None:
    best = "-" if result.best_dice is None else f"{result.best_dice:.4f}"
    console.print(
        f"{result.status}: {result.epochs} epochs, {result.steps} steps in "
        f"{result.seconds:.0f} s; best val Dice {best} (epoch {result.best_epoch}); "
        f"run {result.run_dir}",
        highlight=False,
        soft_wrap=True,
    )


def _serve_until_interrupted(server) -> None:
    """Keep the dashboard serving after training, until Ctrl-C."""
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
