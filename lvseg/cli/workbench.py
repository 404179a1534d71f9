"""``lvseg workbench``: serve the training system in the browser over a workspace folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lvseg.cli.common import clean_errors, console
from lvseg.cli.dashboard import DASHBOARD_HOST, DashboardHost, DashboardToken

WORKBENCH_PORT = 8766
"""lvseg.workbench.launch's default, here so the CLI loads without fastapi."""


@clean_errors
def workbench_command(
    root: Annotated[
        Path,
        typer.Argument(
            help="The workspace folder (made if missing): datasets, splits, runs, evaluations, "
            "exports, job logs and the job database. Default: ./workbench."
        ),
    ] = Path("workbench"),
    allow: Annotated[
        list[Path] | None,
        typer.Option(
            "--allow",
            metavar="DIR",
            help="A folder outside the workspace that datasets may be registered from "
            "(repeat for more).",
        ),
    ] = None,
    host: DashboardHost = DASHBOARD_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = (
        WORKBENCH_PORT
    ),
    token: DashboardToken = None,
) -> None:
    """Serve the workbench over a workspace folder until Ctrl-C: data, networks, training jobs,
    compare, select and export in the browser, each action an lvseg command run as a job (one
    at a time; one per GPU where there are several)."""
    from lvseg.workbench.launch import WorkbenchServer

    server = WorkbenchServer(root, allow or (), host=host, port=port, token=token)
    slots = len(server.runner.slots)
    at_once = f"{slots} jobs at once, one per GPU" if slots > 1 else "one job at a time"
    console.print(
        f"workbench of {server.workspace.root}: {server.url} ({at_once}; Ctrl-C to stop)",
        highlight=False,
        soft_wrap=True,
    )
    server.run()
