"""The live training monitor inside the workbench: the dashboard
(:func:`lvseg.dashboard.server.create_app`) over the workspace's ``runs/`` folder, mounted at
``/monitor/`` with the workbench's token.

Its page, modules, JSON API and live stream answer under the prefix as they do alone (the page
asks for them by relative URLs); ``/monitor`` redirects to ``/monitor/``, the query kept. The
workbench's guards still come first, and the dashboard's own guard checks the same token again.
The job's page and the Runs panel show it in an iframe, so it may be framed by its own origin.
"""

from __future__ import annotations

from fastapi import FastAPI

from lvseg.dashboard.server import create_app
from lvseg.workbench.workspace import Workspace

PREFIX = "/monitor"
FRAME_ANCESTORS = "'self'"
"""Who may show the workbench's pages in a frame: the workbench's own page only."""
POLL_S = 1.0
"""How often the monitor's stream looks for new rows: twice the dashboard's wait, as a job's
page beside training on the same cores costs it less (benchmarks/workbench.py)."""


def mount_monitor(api: FastAPI, workspace: Workspace, token: str | None) -> None:
    """Serve the dashboard of ``workspace.runs`` at ``/monitor/`` of ``api``."""
    dashboard = create_app(workspace.runs, token, poll_s=POLL_S, frame_ancestors=FRAME_ANCESTORS)
    # Starlette's router answers "/monitor" with a redirect to "/monitor/" (query kept).
    api.mount(PREFIX, dashboard, name="monitor")
