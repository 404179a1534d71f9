"""Shared fixtures: the real Sunnybrook data beside the repository, skipped cleanly where absent."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# The suite runs as two pytest-xdist workers on a 2-core machine: one torch thread per worker,
# or the workers' thread pools fight over the cores and small tensor operations slow down 100x.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("LVSEG_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SUNNYBROOK_PNG = SHARED_DATA / "sunnybrook-png"
SUNNYBROOK_DICOM = SHARED_DATA / "sunnybrook-dicom"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test's cache (phantom, preprocessed arrays) out of the user's home."""
    monkeypatch.setenv("LVSEG_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "lvseg-cache"))


def _shared(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(
            f"real Sunnybrook data not found at {path} (place ../shared/data beside the "
            "repository or set LVSEG_SHARED_DATA)"
        )
    return path


@pytest.fixture(scope="session")
def sunnybrook_png() -> Path:
    return _shared(SUNNYBROOK_PNG)


@pytest.fixture(scope="session")
def sunnybrook_dicom() -> Path:
    return _shared(SUNNYBROOK_DICOM)


@pytest.fixture(scope="session")
def png_dataset(sunnybrook_png):
    from lvseg.data.folders import read

    return read(sunnybrook_png)


@pytest.fixture(scope="session")
def dicom_dataset(sunnybrook_dicom):
    from lvseg.data.sunnybrook import read

    return read(sunnybrook_dicom)


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory) -> Path:
    """A tiny phantom (4 patients, 4x downscaled: 64 px crops) that trains in seconds."""
    from lvseg.data.phantom import write_phantom

    folder = tmp_path_factory.mktemp("tiny") / "phantom"
    write_phantom(folder, patients=4, seed=0, downscale=4)
    return folder


@pytest.fixture(scope="session")
def tiny_run(tiny_phantom, tmp_path_factory) -> Path:
    """A width-8 LVNet trained for 2 epochs on the tiny phantom (3 training patients, 1 held
    out): a real run directory, checkpoints and all, for the commands that take a MODEL."""
    from builders import train_tiny_lvnet

    return train_tiny_lvnet(tiny_phantom, tmp_path_factory.mktemp("tiny-run") / "run", epochs=2)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian chromium through Playwright (its own browser download does not run
    here); the test is skipped with a note where either is missing."""
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium browser: run scripts/install-browser.sh to run the browser tests")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()
