"""The workbench tests' workspace and job queue, in the test's own temporary folder."""

from __future__ import annotations

import pytest

from lvseg.workbench.queue import JobQueue
from lvseg.workbench.workspace import Workspace


@pytest.fixture
def space(tmp_path):
    return Workspace.open(tmp_path / "ws")


@pytest.fixture
def queue(space):
    with JobQueue.open(space) as queue:
        yield queue
