"""``lvseg dashboard``: serve the live training dashboard of a run or a folder of runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lvseg.cli.common import clean_errors, console

# The options of the dashboard, which train --dashboard shares.

DASHBOARD_HOST = "127.0.0.1"
DASHBOARD_PORT = 8765
"""The dashboard's defaults (lvseg.dashboard.launch's), here so the CLI loads without fastapi."""
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
