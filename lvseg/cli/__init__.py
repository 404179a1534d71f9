"""The ``lvseg`` command line: one thin function per verb, each calling one package function.

One module per verb group (:mod:`~lvseg.cli.data`, :mod:`~lvseg.cli.train`, ...); this one builds
the Typer app from them, in the order ``lvseg --help`` lists the verbs.
"""

from __future__ import annotations

from typing import Annotated

import typer

from lvseg import __version__
from lvseg.cli import dashboard, data, deploy, evaluate, explain, model, train, workbench
from lvseg.cli.common import console

app = typer.Typer(
    help="Train a small, interpretable CNN to segment the left ventricle in cardiac MRI.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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


app.command("train")(train.train_command)
app.command("select")(train.select_command)
app.command("explain")(explain.explain_command)
app.command("evaluate")(evaluate.evaluate_command)
app.command("export")(deploy.export_command)
app.command("predict")(deploy.predict_command)
app.command("dashboard")(dashboard.dashboard_command)
app.command("workbench")(workbench.workbench_command)
app.add_typer(data.data_app, name="data")
app.add_typer(model.model_app, name="model")
app.add_typer(train.runs_app, name="runs")
