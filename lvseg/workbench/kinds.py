"""What a job may run: lvseg's own verbs, each with a whitelist of options and their types.

A job never carries a program or a shell string: its kind names a verb, its arguments are
checked against that verb's whitelist, and the argv is built here, ``[python, -m, lvseg, verb,
--option=value, ...]``. A new verb (evaluate, select, export) is one more :class:`JobKind`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvseg.errors import InvalidInputError

Resolve = Callable[[str], Path]
"""Turns a path a user gave into a confined absolute one, or refuses it (the workspace's)."""

MAX_TEXT = 2000


@dataclass(frozen=True)
class Option:
    """One option a job may set: ``type`` is int, float, bool, text, choice, path or data (a
    dataset path, or one of ``choices`` such as 'phantom')."""

    name: str
    type: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, kind: str, value: Any, resolve: Resolve) -> Any:
        """``value`` as the job stores it (paths resolved), or a one-line refusal."""
        where = f"{kind} --{self.name.replace('_', '-')}"
        checked = _CHECKS[self.type](self, value, resolve)
        if checked is None:
            raise InvalidInputError(None, f"{where}: {_expected(self)}, not {_short(value)}")
        low, high = self.minimum, self.maximum
        if isinstance(checked, (int, float)) and not isinstance(checked, bool):
            if (low is not None and checked < low) or (high is not None and checked > high):
                raise InvalidInputError(None, f"{where}: {checked} is outside [{low}, {high}]")
        return checked

    def argv(self, value: Any) -> list[str]:
        if self.type == "bool":  # Typer's --x/--no-x
            return [self.flag if value else "--no-" + self.flag[2:]]
        # --name=value: a value that starts with '-' is never read as an option.
        return [f"{self.flag}={value!r}" if self.type == "float" else f"{self.flag}={value}"]


@dataclass(frozen=True)
class JobKind:
    """A verb a job may run, with the options it accepts. ``out``: the verb writes the job's
    run folder (given as ``--out``) and continues one with ``--resume``."""

    verb: str
    options: Mapping[str, Option] = field(default_factory=dict)
    out: bool = True

    def validate(self, args: Mapping[str, Any], resolve: Resolve) -> dict[str, Any]:
        """The arguments as the job stores them; an unknown option or a bad value is refused."""
        if not isinstance(args, Mapping):
            raise InvalidInputError(None, f"{self.verb}: arguments must be an object of options")
        checked = {}
        for name, value in args.items():
            option = self.options.get(name) if isinstance(name, str) else None
            if option is None:
                known = ", ".join(sorted(self.options))
                raise InvalidInputError(
                    None, f"{self.verb}: unknown option {_short(name)}; the options are {known}"
                )
            if value is not None:  # None: the option is not given (lvseg's default)
                checked[name] = option.check(self.verb, value, resolve)
        return checked

    def argv(self, args: Mapping[str, Any], run_dir: Path | None, *, resume: bool) -> list[str]:
        """The command line: the arguments checked again (a path is resolved anew), in the
        whitelist's order. A resumed run takes no option but ``--out``: it continues with its
        saved config (``lvseg train --resume`` refuses any other)."""
        argv = [sys.executable, "-m", "lvseg", self.verb]
        if self.out and run_dir is not None:
            argv.append(f"--out={run_dir}")
        if resume:
            return [*argv, "--resume"]
        for name, option in self.options.items():
            if name in args:
                argv += option.argv(args[name])
        return argv


def _int(option: Option, value: Any, resolve: Resolve) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(option: Option, value: Any, resolve: Resolve) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _bool(option: Option, value: Any, resolve: Resolve) -> bool | None:
    return value if isinstance(value, bool) else None


def _text(option: Option, value: Any, resolve: Resolve) -> str | None:
    ok = isinstance(value, str) and value.isprintable() and 0 < len(value) <= MAX_TEXT
    return value if ok else None


def _choice(option: Option, value: Any, resolve: Resolve) -> str | None:
    return value if isinstance(value, str) and value in option.choices else None


def _path(option: Option, value: Any, resolve: Resolve) -> str | None:
    if _text(option, value, resolve) is None:
        return None
    return str(resolve(value))  # refuses a path outside the roots, naming it


def _data(option: Option, value: Any, resolve: Resolve) -> str | None:
    return _choice(option, value, resolve) or _path(option, value, resolve)


_CHECKS = {
    "int": _int,
    "float": _float,
    "bool": _bool,
    "text": _text,
    "choice": _choice,
    "path": _path,
    "data": _data,
}


def _expected(option: Option) -> str:
    if option.type in ("choice", "data") and option.choices:
        names = ", ".join(option.choices)
        return f"one of {names}" + (" or a path" if option.type == "data" else "")
    nouns = {"int": "an integer", "float": "a number", "bool": "true or false"}
    return nouns.get(option.type, "a printable string")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _options(*options: Option) -> dict[str, Option]:
    return {option.name: option for option in options}


# The values ``lvseg train`` offers (tests/workbench/test_kinds.py checks them against its own
# parameters): written out, as their owners import torch (lvseg.config, through the lazy
# import that checks augment keys, too: the import contract counts it).
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
FORMATS = ("auto", "sunnybrook", "folders", "nifti", "phantom")
MODELS = ("lvnet", "unet", "dli-fcn")

TRAIN = JobKind(
    "train",
    _options(
        Option("data", "data", choices=("phantom",)),
        Option("format", "choice", choices=FORMATS),
        Option("model", "choice", choices=MODELS),
        Option("init", "path"),
        Option("config", "path"),
        Option("epochs", "int", minimum=1),
        Option("batch_size", "int", minimum=1),
        Option("lr", "float", minimum=0.0),
        Option("device", "choice", choices=DEVICES),
        Option("precision", "choice", choices=PRECISIONS),
        Option("folds", "int", minimum=2),
        Option("fold", "int", minimum=0),
        Option("val", "float", minimum=0.0, maximum=1.0),
        Option("exclude_patients", "text"),
        Option("pixel_spacing", "float", minimum=0.0),
        Option("seed", "int", minimum=0),
        Option("deterministic", "bool"),
        Option("compile", "bool"),
        Option("monitor", "bool"),
        Option("tensorboard", "bool"),
    ),
)
"""``lvseg train``: every option but those the queue owns (--out, --resume, --overwrite) and
the dashboard's (the workbench is the dashboard)."""

KINDS: dict[str, JobKind] = {TRAIN.verb: TRAIN}


def job_kind(name: Any) -> JobKind:
    """The kind named ``name``, or a one-line refusal."""
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise InvalidInputError(None, f"unknown job kind {_short(name)}; one of {', '.join(KINDS)}")
    return kind
