"""The workbench's network routes through FastAPI's TestClient. The real ``lvseg model info``
runs four times in this file (it imports torch): the client is shared, so its cache serves the
rest, and the refusals prove they run nothing."""

from __future__ import annotations

import subprocess

import pytest
from fastapi.testclient import TestClient

from lvseg.workbench.api import create_workbench_app
from lvseg.workbench.queue import JobQueue
from lvseg.workbench.workspace import Workspace

BASE = "http://127.0.0.1:8765"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    space = Workspace.open(tmp_path_factory.mktemp("models") / "ws")
    with JobQueue.open(space) as queue:
        yield TestClient(create_workbench_app(space, queue), base_url=BASE)


@pytest.fixture
def nothing_runs(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"subprocess.run called: {args}")

    monkeypatch.setattr(subprocess, "run", refuse)


def test_the_registered_models_are_listed(http):
    answer = http.get("/api/models")
    assert answer.status_code == 200
    assert answer.json() == {"models": ["lvnet", "unet", "dli-fcn"]}


def test_the_architecture_is_lvseg_model_info(http, monkeypatch):
    answer = http.get("/api/models/lvnet/architecture?input_size=128")
    assert answer.status_code == 200, answer.text
    arch = answer.json()
    assert arch["model"] == "lvnet" and arch["input_size"] == 128
    assert arch["parameters"] == 231_716
    assert arch["cam_head"] == "head"
    assert "head" in [layer["name"] for layer in arch["layers"]]
    # Asked again: from the cache, nothing run.
    monkeypatch.setattr(subprocess, "run", None)
    assert http.get("/api/models/lvnet/architecture").json() == arch


def test_the_picture_is_a_png_drawn_once(http, monkeypatch):
    answer = http.get("/api/models/lvnet/architecture.png?option=width=8")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    assert answer.content.startswith(PNG)
    # The drawing run filled the JSON cache too, and the PNG is kept in the workspace's cache.
    monkeypatch.setattr(subprocess, "run", None)
    again = http.get("/api/models/lvnet/architecture.png?option=width=8")
    assert again.content == answer.content
    small = http.get("/api/models/lvnet/architecture?option=width=8").json()
    assert small["config"]["width"] == 8 and small["parameters"] < 231_716


def test_compare_gives_both_rows(http):
    answer = http.get("/api/models/compare?a=lvnet&b=unet&input_size=128")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["input_size"] == 128
    first, second = body["models"]
    assert first["model"] == "lvnet" and second["model"] == "unet"
    assert first["parameters"] == 231_716 and first["cam_head"] == "head"
    for row in (first, second):
        assert set(row) == {"model", "parameters", "macs", "receptive_field", "layers", "cam_head"}
        assert row["macs"] > 0 and row["receptive_field"] > 0 and row["layers"] > 0


def test_an_option_the_model_rejects_is_its_one_line_error(http):
    answer = http.get("/api/models/unet/architecture?option=bogus=3")
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert "bogus" in error and "\n" not in error and not error.startswith("error")


@pytest.mark.parametrize(
    "url",
    [
        "/api/models/resnet/architecture",
        "/api/models/resnet/architecture.png",
        "/api/models/compare?a=lvnet&b=resnet",
        "/api/models/lvnet/architecture?option=width=8;rm",
        "/api/models/lvnet/architecture?option=width=$(id)",
        "/api/models/lvnet/architecture?option=Width=8",
        "/api/models/lvnet/architecture?option=width",
        "/api/models/lvnet/architecture?option=--figure=/tmp/x.png",
        "/api/models/lvnet/architecture.png?option=width=8%0Arm",
        "/api/models/lvnet/architecture?" + "&".join(["option=width=8"] * 9),
        "/api/models/lvnet/architecture?input_size=31",
        "/api/models/lvnet/architecture?input_size=1025",
        "/api/models/lvnet/architecture?input_size=abc",
        "/api/models/compare?a=lvnet",
    ],
)
def test_a_bad_request_runs_nothing(http, nothing_runs, url):
    answer = http.get(url)
    assert answer.status_code in (400, 404), answer.text
    assert "\n" not in answer.json()["error"]
