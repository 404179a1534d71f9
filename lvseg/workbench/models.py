"""The workbench's network routes: the registered models, a model's architecture (JSON or its
picture) and two models side by side, each from ``lvseg model info`` run as a subprocess (the
workbench stays torch-free).

- ``GET /api/models``: ``{"models": [name, ...]}``
- ``GET /api/models/{name}/architecture?input_size=128&option=width=8``: the Architecture JSON
- ``GET /api/models/{name}/architecture.png`` (same query): its picture
- ``GET /api/models/compare?a=lvnet&b=unet&input_size=128``: ``{"input_size", "models": [row,
  row]}``, each row ``{"model", "parameters", "macs", "receptive_field", "layers", "cam_head"}``
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response
from starlette.exceptions import HTTPException

from lvseg.dashboard.responses import json_response
from lvseg.errors import InvalidInputError
from lvseg.workbench.commands import run_json
from lvseg.workbench.kinds import MODELS
from lvseg.workbench.workspace import Workspace

TIMEOUT = 60.0
MAX_OPTIONS = 8
MAX_CACHED = 64
CACHE_FOLDER = Path(".cache") / "architecture"
# What a request may pass to --option: a model's keyword and a plain number or word, nothing a
# shell or an option parser could read as more (the argv is a list, never a shell, anyway).
OPTION = re.compile(r"([a-z_][a-z0-9_]{0,31})=([A-Za-z0-9_.+-]{1,32})")

InputSize = Annotated[int, Query(ge=32, le=1024)]
Options = Annotated[list[str] | None, Query(alias="option")]


class ModelCommands:
    """``lvseg model info`` for the routes: its argv from checked arguments, its JSON kept per
    argv (a model's architecture is fixed, so the page never reruns torch for one it saw)."""

    def __init__(self, workspace: Workspace, timeout: float = TIMEOUT) -> None:
        self.workspace = workspace
        self.timeout = timeout
        self._json: dict[tuple[str, ...], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def argv(self, name: str, input_size: int, options: list[str]) -> list[str]:
        """The command line, or a refusal (404 for an unknown model, 400 for a bad option)."""
        if name not in MODELS:
            raise HTTPException(404, f"unknown model {name!r}; one of {', '.join(MODELS)}")
        if len(options) > MAX_OPTIONS:
            raise InvalidInputError(None, f"at most {MAX_OPTIONS} options")
        argv = [sys.executable, "-m", "lvseg", "model", "info", name]
        argv += ["--input-size", str(input_size), "--json"]
        for option in options:
            if OPTION.fullmatch(option) is None:
                shown = option if len(option) <= 60 and option.isprintable() else ascii(option)[:60]
                raise InvalidInputError(None, f"bad option {shown!r}: expected key=value")
            argv += ["--option", option]
        return argv

    def architecture(self, argv: list[str]) -> dict[str, Any]:
        key = tuple(argv)
        with self._lock:
            cached = self._json.get(key)
        return cached if cached is not None else self._run(argv, key)

    def figure(self, argv: list[str]) -> Path:
        """The picture's PNG in the workspace's cache, drawn once per argv."""
        folder = self.workspace.root / CACHE_FOLDER
        path = folder / (hashlib.sha1(json.dumps(argv).encode()).hexdigest() + ".png")
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            # Drawn under a name of its own, then renamed: a request never reads half a file.
            part = folder / f"{path.stem}.{uuid.uuid4().hex}.png"
            try:
                self._run([*argv, "--figure", str(part)], tuple(argv))
                os.replace(part, path)
            finally:
                part.unlink(missing_ok=True)
        return path

    def _run(self, argv: list[str], key: tuple[str, ...]) -> dict[str, Any]:
        """Run ``argv``; its JSON (kept under ``key``), or its error line as a 400."""
        value = run_json(argv, self.workspace.root, self.timeout, "lvseg model info")
        with self._lock:
            if len(self._json) >= MAX_CACHED:
                self._json.pop(next(iter(self._json)))  # the oldest
            self._json[key] = value
        return value


def summary_row(arch: dict[str, Any]) -> dict[str, Any]:
    """What the comparison shows of an architecture; ``layers``: those that ran."""
    ran = [layer for layer in arch["layers"] if layer.get("output_shape") is not None]
    return {
        "model": arch["model"],
        "parameters": arch["parameters"],
        "macs": arch["macs"],
        "receptive_field": arch["receptive_field"],
        "layers": len(ran),
        "cam_head": arch.get("cam_head"),
    }


def model_routes(workspace: Workspace) -> APIRouter:
    router = APIRouter()
    commands = ModelCommands(workspace)

    @router.get("/api/models")
    def model_list() -> Response:
        return json_response({"models": list(MODELS)})

    @router.get("/api/models/compare")
    def compare(a: str, b: str, input_size: InputSize = 128) -> Response:
        argvs = [commands.argv(name, input_size, []) for name in (a, b)]
        rows = [summary_row(commands.architecture(argv)) for argv in argvs]
        return json_response({"input_size": input_size, "models": rows})

    @router.get("/api/models/{name}/architecture")
    def architecture(name: str, input_size: InputSize = 128, option: Options = None) -> Response:
        argv = commands.argv(name, input_size, option or [])
        return json_response(commands.architecture(argv))

    @router.get("/api/models/{name}/architecture.png")
    def picture(name: str, input_size: InputSize = 128, option: Options = None) -> Response:
        path = commands.figure(commands.argv(name, input_size, option or []))
        return FileResponse(path, media_type="image/png")

    return router
