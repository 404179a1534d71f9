"""Fixtures for deployment: the tiny trained model exported once."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def exported_tiny(tiny_run, tmp_path_factory) -> Path:
    """The tiny run exported to ONNX fp32 + int8 and ORT, checked on its validation patient."""
    from lvseg.deploy.export import export

    out = tmp_path_factory.mktemp("export") / "tiny"
    export(tiny_run, out, format="ort", int8=True)
    return out
