"""``lvseg dashboard``: serve the live training dashboard of a run or a folder of runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lvseg.cli.common import (
    DASHBOARD_HOST,
    DASHBOARD_PORT,
    DashboardHost,
    DashboardPort,
    DashboardToken,
    clean_errors,
    console,
)


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
    from lvseg.dashboard.launch import DashboardServer

    server = DashboardServer(target, host=host, port=port, token=token)
    console.print(
        f"dashboard of {target}: {server.url} (Ctrl-C to stop)", highlight=False, soft_wrap=True
    )
    server.run()
