"""Fixtures of the dashboard tests: runs written through the store API, an app, a live server.

``live_run`` is the one place that decides what "a run being trained" is: today a thread writing
synthetic rows (:class:`synthetic_run.LiveWriter`); a short real training subprocess can take its
place by offering the same ``run_dir``, ``start()``, ``stop()`` and ``steps_written``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from synthetic_run import LiveWriter, write_run

from lvseg.dashboard.server import create_app


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    """A runs folder: "alpha" finished (3 epochs, selected), "beta" still running (1 epoch)."""
    root = tmp_path / "runs"
    write_run(root / "alpha", epochs=3, steps_per_epoch=20)
    write_run(root / "beta", epochs=1, steps_per_epoch=10, finished=False, alerts=False)
    return root


@pytest.fixture
def client(runs_root: Path) -> Iterator[TestClient]:
    # base_url: without a token the server answers requests addressed to localhost only
    with TestClient(create_app(runs_root), base_url="http://127.0.0.1") as test_client:
        yield test_client


@contextmanager
def serve_in_thread(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1 in a thread; yields the base URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


@pytest.fixture
def live_run(tmp_path: Path) -> Iterator[LiveWriter]:
    """A run that is being written while the test runs (a step every 0.2 s), stopped after."""
    writer = LiveWriter(tmp_path / "runs" / "live", interval_s=0.2).start()
    try:
        yield writer
    finally:
        writer.stop()
