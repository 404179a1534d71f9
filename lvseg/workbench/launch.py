"""Serving the workbench over a workspace folder (:class:`WorkbenchServer`, what
``lvseg workbench`` runs).

The dashboard's rules of address and token (:mod:`lvseg.dashboard.launch`): 127.0.0.1 by
default, a token for any other address (generated when none is given). The server starts the
job runner, and on Ctrl-C or SIGTERM stops the job it runs (Ctrl-C first, so the job ends
``interrupted`` and can be resumed) and closes the queue.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lvseg.dashboard.launch import DEFAULT_HOST, bind, server_url, serving_token, uvicorn_server
from lvseg.workbench.api import create_workbench_app
from lvseg.workbench.queue import JobQueue
from lvseg.workbench.runner import Runner, gpu_slots
from lvseg.workbench.workspace import Workspace

DEFAULT_ROOT = Path("workbench")
DEFAULT_PORT = 8766  # the dashboard's + 1: both can run on one machine
RUNNER_POLL_S = 1.0


class WorkbenchServer:
    """The workbench over the workspace at ``root``, bound to its address (so the URL is known)
    and ready to :meth:`run`. ``allowed``: folders outside the workspace that a dataset may be
    registered from. A bad root, allowed folder, token or port is an InvalidInputError."""

    def __init__(
        self,
        root: str | Path = DEFAULT_ROOT,
        allowed: Iterable[str | Path] = (),
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        token: str | None = None,
    ) -> None:
        self.token = serving_token(host, token)
        self.workspace = Workspace.open(root, allowed)
        self.host = host
        self.socket = bind(host, port)
        self.port = self.socket.getsockname()[1]
        try:
            self.queue = JobQueue.open(self.workspace)
        except BaseException:
            self.socket.close()
            raise
        # One job per GPU, else one. A tick a second: a submit or a stop wakes it at once, and
        # a job's end waits a second at most; each wake-up takes a core from the training.
        self.runner = Runner(self.queue, slots=gpu_slots(), poll_s=RUNNER_POLL_S)
        self.app = create_workbench_app(
            self.workspace, self.queue, self.runner, self.token, port=self.port
        )
        self._server = uvicorn_server(self.app)

    @property
    def url(self) -> str:
        return server_url(self.host, self.port, self.token)

    def run(self) -> None:
        """Run the queue's jobs and serve until Ctrl-C or SIGTERM (or :meth:`stop`), then
        :meth:`close`."""
        self.runner.start()
        try:
            with _sigterm_as_ctrl_c():
                self._server.run(sockets=[self.socket])
        except KeyboardInterrupt:
            pass  # uvicorn raises the signal it stopped on again once it has: a clean stop
        finally:
            self.socket.close()
            self.close()

    def stop(self) -> None:
        """Ask :meth:`run` to end (from another thread)."""
        self._server.should_exit = True

    def close(self) -> None:
        """Stop the runner (its running job ends ``interrupted``, resumable), close the queue."""
        for job in self.queue.list_jobs("running"):
            print(f"workbench: stopping job {job.id}; resume it later", file=sys.stderr, flush=True)
        self.runner.close()
        self.queue.close()


@contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile, as Ctrl-C does, so that a ``kill`` (a
    service manager's stop) closes the runner too rather than ending the process at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
