"""A tiny phantom (4 patients, 4x downscaled) that trains in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from lvseg.data.phantom import write_phantom


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "phantom"
    write_phantom(folder, patients=4, seed=0, downscale=4)
    return folder
