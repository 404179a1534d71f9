"""Running the dashboard as a server: in this process (:class:`DashboardServer`, what
``lvseg dashboard`` does) or in a subprocess (:func:`start_dashboard`, what
``lvseg train --dashboard`` does).

``lvseg dashboard RUNS`` serves one run directory, or every run in a folder (runs that appear later
included), at ``http://127.0.0.1:8765/``; ``lvseg train --dashboard`` takes the same ``--host``,
``--port`` and ``--token``. It binds 127.0.0.1 by default; any other address needs a token,
generated when none is given. A token given (``--token``, or ``$LVSEG_DASHBOARD_TOKEN`` for the
subprocess) must pass :func:`lvseg.dashboard.access.check_token`: at least 16 printable ASCII
characters, no spaces; an empty or short one is refused, never read as "no token". A port in use
is a one-line :class:`DashboardError` naming the port and ``--port``. The app itself is
:func:`lvseg.dashboard.server.create_app`.

Like the app, this module does not import torch: :func:`start_dashboard` runs the server in a
subprocess that starts fast and never takes the GIL or a GPU from the trainer.

Run as a program (what :func:`start_dashboard` starts)::

    python -m lvseg.dashboard.launch runs --port 8765
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import queue
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lvseg import layout
from lvseg.dashboard.access import check_token, is_loopback
from lvseg.dashboard.readers import Runs
from lvseg.dashboard.server import create_app
from lvseg.dashboard.stream import POLL_S
from lvseg.errors import InvalidInputError
from lvseg.runs.store import is_run

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
TOKEN_ENV = "LVSEG_DASHBOARD_TOKEN"
"""How :func:`start_dashboard` hands the token to its subprocess (not on the command line)."""


class DashboardError(InvalidInputError):
    """The dashboard cannot start: port in use, server did not answer, bad address.

    An :class:`InvalidInputError` without a path, so the CLI prints it as one line and exits 2.
    """

    def __init__(self, message: str) -> None:
        super().__init__(None, message)


# ------------------------------------------------------------------------------- serving


def check_target(target: str | Path) -> Path:
    """``target`` if it is a run or a folder holding runs, else :class:`InvalidInputError`."""
    target = Path(target)
    if not target.exists():
        raise InvalidInputError(target, "no such run or runs folder")
    if is_run(target):
        return target
    if not target.is_dir():
        raise InvalidInputError(target, "not a run folder nor a folder of runs")
    if not Runs(target).paths():
        raise InvalidInputError(
            target, f"no runs here (no {layout.RUN_DATABASE} in it or its folders)"
        )
    return target


def serving_token(host: str, token: str | None) -> str | None:
    """``token`` if :func:`~lvseg.dashboard.access.check_token` accepts it; without one, a
    generated token for a host other than loopback, None for loopback."""
    token = check_token(token)
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(18)
    return token


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one); DashboardError if it is taken
    or not a port number."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise DashboardError(
            f"port {port} is not a port number (0 to 65535); choose one with --port"
        )
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as error:
        raise DashboardError(f"cannot listen on {host}: {error}") from None
    listener = socket.socket(family, kind, protocol)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)
    except OSError as error:
        listener.close()
        if error.errno == errno.EADDRINUSE:
            raise DashboardError(
                f"port {port} on {host} is already in use; choose another with --port"
            ) from None
        raise DashboardError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    listener.set_inheritable(False)
    return listener


def server_url(host: str, port: int, token: str | None) -> str:
    """The URL to print for a server bound to ``host:port``, with its token if it has one."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    query = f"?token={quote(token, safe='')}" if token else ""
    return f"http://{host}:{port}/{query}"


def uvicorn_server(app: Any) -> Any:
    """The uvicorn server for ``app``: quiet, no lifespan, 1 s for open requests at shutdown.
    Its ``run(sockets=[listener])`` serves until Ctrl-C or SIGTERM, then raises that signal
    again in this process (uvicorn's way of passing it on)."""
    import uvicorn

    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
    )
    return uvicorn.Server(config)


class DashboardServer:
    """A dashboard bound to its address (so the URL is known) and ready to :meth:`run`.

    ``host`` other than a loopback address needs a token; one is generated when not given. A
    token given must pass :func:`~lvseg.dashboard.access.check_token` (InvalidInputError if not).
    """

    def __init__(
        self,
        target: str | Path,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        token: str | None = None,
        *,
        require_runs: bool = True,
        poll_s: float = POLL_S,
    ) -> None:
        self.token = serving_token(host, token)
        self.target = check_target(target) if require_runs else Path(target)
        self.host = host
        self.socket = bind(host, port)
        self.port = self.socket.getsockname()[1]
        self.app = create_app(self.target, self.token, poll_s=poll_s)
        self._server: Any = None

    @property
    def url(self) -> str:
        return server_url(self.host, self.port, self.token)

    def run(self) -> None:
        """Serve until Ctrl-C or SIGTERM (or :meth:`stop` from another thread)."""
        self._server = uvicorn_server(self.app)
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True


# ------------------------------------------------------------------------------- in a subprocess


@dataclasses.dataclass
class Dashboard:
    """A dashboard server running in a subprocess, as :func:`start_dashboard` returns it."""

    url: str
    token: str | None
    port: int
    process: subprocess.Popen

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the server and wait for it (kill it if it does not stop in ``timeout_s``)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Wait until the server exits (Ctrl-C, :meth:`stop`); its exit code, None on timeout."""
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _Echo:
    """Prints a child's stderr lines as ``dashboard: LINE``, holding them back until
    :meth:`start`: a server that fails to start is reported in one line, not echoed as well."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: list[str] | None = []

    def __call__(self, line: str) -> None:
        with self._lock:
            if self._held is not None:
                self._held.append(line)
                return
        print(f"dashboard: {line}", file=sys.stderr, flush=True)

    def start(self) -> None:
        with self._lock:
            held, self._held = self._held or [], None
            for line in held:
                print(f"dashboard: {line}", file=sys.stderr, flush=True)


def _drain(stream: Any, lines: queue.Queue | None, tail: deque, echo: _Echo | None) -> None:
    """Read a child's pipe to its end so it never blocks on a full pipe."""
    try:
        for line in stream:
            if lines is not None:
                lines.put(line)
            tail.append(line.rstrip())
            if echo is not None:
                echo(line.rstrip())
    except (OSError, ValueError):
        pass
    finally:
        if lines is not None:
            lines.put(None)


def _server_command(target: Path, host: str, port: int, exit_with_parent: bool) -> list[str]:
    """``python -m lvseg.dashboard.launch`` for ``target``: it prints its URL as JSON once bound
    and serves a target that has no run yet."""
    command = [
        sys.executable,
        "-m",
        "lvseg.dashboard.launch",
        str(Path(target).resolve()),
        "--host",
        host,
        "--port",
        str(port),
        "--announce",
        "--allow-empty",
    ]
    if exit_with_parent:
        command.append("--exit-with-parent")
    return command


def _server_environment(token: str | None) -> dict[str, str]:
    """This process's environment with the token in it (never on the command line) and this
    lvseg first on the path, so that the child serves the same package."""
    environment = dict(os.environ)
    environment.pop(TOKEN_ENV, None)
    if token:
        environment[TOKEN_ENV] = token
    package_root = str(Path(__file__).resolve().parents[2])
    environment["PYTHONPATH"] = os.pathsep.join(
        [package_root, *filter(None, [environment.get("PYTHONPATH")])]
    )
    return environment


def _health_url(host: str, port: int) -> str:
    """Where this machine reaches a server bound to ``host`` (a wildcard address: by loopback)."""
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    probe_host = f"[{probe_host}]" if ":" in probe_host else probe_host
    return f"http://{probe_host}:{port}/api/health"


class _Starting:
    """A server subprocess until it answers: its stdout carries the announcement, the last lines
    of its stderr the reason it failed; its stderr is echoed once it is up."""

    def __init__(
        self, process: subprocess.Popen, target: Path, token: str | None, timeout_s: float
    ) -> None:
        self.process = process
        self.target = target
        self.token = token
        self.timeout_s = timeout_s
        self.lines: queue.Queue = queue.Queue()
        self.errors: deque = deque(maxlen=20)
        self.echo = _Echo()
        stdout = (process.stdout, self.lines, deque(maxlen=5), None)
        threading.Thread(target=_drain, args=stdout, daemon=True).start()
        stderr = (process.stderr, None, self.errors, self.echo)
        threading.Thread(target=_drain, args=stderr, daemon=True).start()
        self.deadline = time.monotonic() + timeout_s

    def failure(self, why: str) -> DashboardError:
        """Stop the server; the error to raise, with the server's last words."""
        Dashboard("", self.token, 0, self.process).stop(timeout_s=2)
        last = next((line for line in reversed(self.errors) if line.strip()), "")
        if self.process.returncode == 2 and last.startswith("error: "):
            # The server's own one-line reason (port in use, bad address): say just that.
            return DashboardError(last.removeprefix("error: "))
        detail = f": {last}" if last else ""
        return DashboardError(f"dashboard server for {self.target} {why}{detail}")

    def announcement(self) -> dict[str, Any]:
        """The ``{"url", "port"}`` that the server prints once it has bound its port."""
        while True:
            wait_s = max(0.0, min(0.5, self.deadline - time.monotonic()))
            try:
                line = self.lines.get(timeout=wait_s)
            except queue.Empty:
                line = ""
            if line is None or self.process.poll() is not None:
                time.sleep(0.1)  # let stderr's last line arrive
                raise self.failure(f"exited with code {self.process.poll()}")
            if line.startswith("{"):
                return json.loads(line)
            if time.monotonic() > self.deadline:
                raise self.failure(f"did not start within {self.timeout_s:g} s")

    def wait_until_answering(self, host: str, port: int, url: str) -> None:
        """Return once ``/api/health`` answers 200 (then echo the server's stderr)."""
        request = urllib.request.Request(_health_url(host, port))
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        while True:
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        self.echo.start()
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self.process.poll() is not None:
                raise self.failure(f"exited with code {self.process.poll()}")
            if time.monotonic() > self.deadline:
                raise self.failure(f"did not answer at {url} within {self.timeout_s:g} s")
            time.sleep(0.1)


def start_dashboard(
    target: Path,
    host: str = DEFAULT_HOST,
    port: int = 0,
    token: str | None = None,
    *,
    timeout_s: float = 30.0,
    exit_with_parent: bool = True,
    focus: str | None = None,
) -> Dashboard:
    """Serve the dashboard of ``target`` from a subprocess and return once it answers.

    The server runs as ``python -m lvseg.dashboard.launch`` so it never competes with training for
    the GIL and never imports torch. ``port=0`` picks a free port. A host other than a loopback
    address gets a generated token when none is given. The run need not exist yet: the page shows
    it when it appears. The server runs in its own session (a Ctrl-C in the terminal does not
    reach it): :meth:`Dashboard.stop` ends it, and with ``exit_with_parent`` so does the death
    of this process. ``focus`` names the run the page shows first (``?run=NAME`` in the URL),
    waiting for it if it does not exist yet. Raises :class:`DashboardError` when the server
    exits (its own one-line reason, such as a port in use) or does not answer within
    ``timeout_s``, and InvalidInputError for a token :func:`~lvseg.dashboard.access.check_token`
    refuses.
    """
    token = serving_token(host, token)
    process = subprocess.Popen(
        _server_command(target, host, port, exit_with_parent),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_server_environment(token),
        # Its own session: a Ctrl-C meant for the trainer does not stop it; stop() does.
        start_new_session=True,
    )
    starting = _Starting(process, target, token, timeout_s)
    announced = starting.announcement()
    url = announced["url"]
    if focus:
        url += f"{'&' if '?' in url else '?'}run={quote(focus, safe='')}"
    dashboard = Dashboard(url, token, int(announced["port"]), process)
    starting.wait_until_answering(host, dashboard.port, dashboard.url)
    return dashboard


def _exit_with_parent(server: DashboardServer) -> None:
    parent = os.getppid()
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            server.stop()
            return


def main(argv: list[str] | None = None) -> int:
    """``python -m lvseg.dashboard.launch TARGET [--host H] [--port P]``: serve until stopped."""
    parser = argparse.ArgumentParser(
        prog="python -m lvseg.dashboard.launch", description="Serve the lvseg training dashboard."
    )
    parser.add_argument("target", type=Path, help="a run directory, or a folder of runs")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0: any free port")
    parser.add_argument("--token", default=None, help=f"access token (or ${TOKEN_ENV})")
    parser.add_argument("--announce", action="store_true", help="print {url, port} as JSON")
    parser.add_argument("--allow-empty", action="store_true", help="serve a target with no runs")
    parser.add_argument("--exit-with-parent", action="store_true")
    arguments = parser.parse_args(argv)
    # An empty --token or $LVSEG_DASHBOARD_TOKEN is refused by check_token, never read as "none".
    token = arguments.token if arguments.token is not None else os.environ.get(TOKEN_ENV)
    try:
        server = DashboardServer(
            arguments.target,
            arguments.host,
            arguments.port,
            token,
            require_runs=not arguments.allow_empty,
        )
    except InvalidInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if arguments.announce:
        print(json.dumps({"url": server.url, "port": server.port}), flush=True)
    else:
        print(f"lvseg dashboard of {server.target}: {server.url}", flush=True)
    if arguments.exit_with_parent:
        threading.Thread(target=_exit_with_parent, args=(server,), daemon=True).start()
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
