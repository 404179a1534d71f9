"""An lvseg command the workbench runs at once for its JSON (``lvseg data inspect --json``,
``lvseg model info --json``): a subprocess in the workspace, so the server stays torch-free,
with a time limit, and lvseg's own one-line error where it fails."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException

from lvseg.errors import InvalidInputError

Run = Callable[..., subprocess.CompletedProcess]


def run_json(
    argv: list[str], cwd: Path, timeout: float, what: str, run: Run | None = None
) -> dict[str, Any]:
    """The JSON object ``argv`` prints; its error line as a 400, a time-out as a 504.
    ``what`` names the command in a message (``lvseg data inspect``); ``run`` is
    :func:`subprocess.run`, looked up at the call (a test counts or refuses its calls)."""
    try:
        done = (run or subprocess.run)(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise HTTPException(504, f"{what} took over {timeout:g} s") from None
    if done.returncode != 0:
        raise InvalidInputError(None, error_line(done.stderr, done.returncode, what))
    try:
        value = json.loads(done.stdout)
    except ValueError:
        raise InvalidInputError(None, f"{what} printed no JSON") from None
    if not isinstance(value, dict):
        raise InvalidInputError(None, f"{what} printed no JSON object")
    return value


def error_line(stderr: str, code: int, what: str) -> str:
    """The command's own error: its stderr's last line, without the ``error: `` prefix."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return f"{what} failed (exit code {code})"
    return lines[-1].removeprefix("error:").strip()
