"""What every command shares: the consoles, one-line errors with exit codes, a progress bar and
the number formats of the printed summaries.

No traceback for what lvseg knows went wrong: an :class:`~lvseg.errors.LvsegError` (bad input,
or a run that failed) and a few file-system errors become one line on stderr and exit code 2.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import sqlite3
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from lvseg.cli.choices import Format
from lvseg.errors import LvsegError

console = Console()
error_console = Console(stderr=True)


# Options several commands share

FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Input format.")]
OverwriteOption = Annotated[bool, typer.Option(help="Replace a non-empty --out folder.")]


def given_options(options: Mapping[str, Any], keys: Mapping[str, str]) -> dict[str, Any]:
    """The settings of the options the user gave, nested by their dotted keys.

    ``keys`` maps an option's name to the key it sets (``"lr"`` to ``"optim.lr"``); an option
    left at None was not given and sets nothing. Enums give their value, paths their text.

    >>> given_options({"lr": 0.1, "seed": None}, {"lr": "optim.lr", "seed": "seed"})
    {'optim': {'lr': 0.1}}
    """
    settings: dict[str, Any] = {}
    for option, key in keys.items():
        value = options[option]
        if value is None:
            continue
        *sections, name = key.split(".")
        target = settings
        for section in sections:
            target = target.setdefault(section, {})
        value = value.value if isinstance(value, Enum) else value
        target[name] = str(value) if isinstance(value, Path) else value
    return settings


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one error line on stderr and give the exit to raise."""
    from rich.markup import escape

    # escape: messages quote user text, and "[optim]" must not be read as rich markup
    error_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


EXTRA_OF = {
    "torch": "train",
    "kornia": "train",
    "fastapi": "train",
    "uvicorn": "train",
    "plotly": "train",
    "onnx": "train",
    "onnxscript": "train",
    "onnxruntime": "infer",
}
"""The optional packages (see pyproject.toml) and the extra that installs each: the core install
reads data and, with ``lvseg[infer]``, predicts; everything else needs ``lvseg[train]``."""


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
"""A full disk and a full quota read alike: the write stopped, the temporary file was removed."""


def _disk_full(error: BaseException | None) -> OSError | None:
    """The full-disk OSError behind ``error``: itself, or one it was raised from (pydicom, for
    one, re-raises a failed write as a new OSError without the errno)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            return error
        error = error.__cause__ or error.__context__
        seen += 1
    return None


def clean_errors(function):
    """Turn expected failures into one line and exit code 2, never a traceback."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except LvsegError as error:
            raise fail(str(error)) from None
        except FileExistsError as error:
            raise fail(f"{error.args[0]} (use --overwrite to replace it)") from None
        except PermissionError as error:
            raise fail(f"{error.filename}: permission denied") from None
        except KeyboardInterrupt:
            raise fail("interrupted", code=130) from None
        except OSError as error:
            full = _disk_full(error)
            if full is None:
                raise
            where = f"{full.filename}: " if full.filename else ""
            raise fail(f"{where}no space left on the device; free some and run it again") from None
        except sqlite3.OperationalError as error:
            # SQLite says "database or disk is full" where the OS says ENOSPC (the run store).
            if "is full" not in str(error):
                raise
            raise fail("no space left on the device for the run database") from None
        except ModuleNotFoundError as error:
            missing = (error.name or "").split(".")[0]
            extra = EXTRA_OF.get(missing)
            if extra is None:
                raise
            raise fail(
                f"this command needs {missing}, which is not installed: "
                f"pip install 'lvseg[{extra}]'"
            ) from None

    return wrapper


@contextlib.contextmanager
def slice_progress(label: str):
    """A progress callback ``(done, total)`` drawing a bar on a terminal's stderr (None elsewhere).

    The bar starts on the first report, so it never overlaps the data readers' own bars.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    if not error_console.is_terminal:
        yield None
        return
    bar = Progress(
        label, BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=error_console, transient=True,
    )  # fmt: skip
    task = None

    def progress(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task(label, total=total)
        bar.update(task, completed=done)

    try:
        yield progress
    finally:
        bar.stop()


# The number formats of the printed summaries, kept apart until one shared formatting helper
# takes them over.


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _row_number(row: dict[str, Any], name: str) -> str:
    return "-" if row.get(name) is None else f"{row[name]:.3f}"
