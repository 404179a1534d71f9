"""What a job may run: lvseg's own verbs, each with a whitelist of options and their types.

A job never carries a program or a shell string: its kind names a verb, its arguments are
checked against that verb's whitelist, and the argv is built here, ``[python, -m, lvseg, verb,
ARGUMENT..., --option=value, ..., OUTPUT]``. A new verb is one more :class:`JobKind`.
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
MAX_PATHS = 20


@dataclass(frozen=True)
class Option:
    """One option a job may set: ``type`` is int, float, bool, text, choice, path, paths (a
    list of 1 to :data:`MAX_PATHS` paths), pairs (a list of as many ``key=value`` texts, the
    option repeated) or data (a dataset path, or one of ``choices`` such as 'phantom')."""

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
        if self.type == "pairs":  # a repeated option: --model-option=width=8 ...
            return [f"{self.flag}={pair}" for pair in value]
        # --name=value: a value that starts with '-' is never read as an option.
        return [f"{self.flag}={value!r}" if self.type == "float" else f"{self.flag}={value}"]

    def arguments(self, value: Any) -> list[str]:
        """The value as the verb's positional argument(s): resolved paths and whitelisted
        names, none of which starts with '-' (a path is absolute, a choice a plain word)."""
        return [str(part) for part in value] if self.type == "paths" else [str(value)]


@dataclass(frozen=True)
class Output:
    """Where a job's verb writes: a folder (or a file, with ``suffix``) of its own, named
    ``PREFIX{id:04d}`` under the workspace's ``folder``, given as ``flag`` (None: as the
    verb's last argument, as ``lvseg data phantom OUT`` takes it)."""

    folder: str
    flag: str | None = "--out"
    prefix: str = "job-"
    suffix: str = ""

    def name(self, job_id: int) -> str:
        return f"{self.prefix}{job_id:04d}{self.suffix}"

    def argv(self, path: Path) -> list[str]:
        return [str(path)] if self.flag is None else [f"{self.flag}={path}"]


@dataclass(frozen=True)
class JobKind:
    """A verb a job may run: ``verb`` its words after ``lvseg``, ``arguments`` its positional
    arguments (required, in order), ``options`` the options it accepts, ``output`` where it
    writes (None: the verb writes beside its inputs, as ``select`` writes RUN/selected.json).
    ``resumable``: it continues its output with ``--resume`` (a training run)."""

    name: str
    verb: tuple[str, ...]
    options: Mapping[str, Option] = field(default_factory=dict)
    arguments: tuple[Option, ...] = ()
    output: Output | None = None
    resumable: bool = False

    def validate(self, args: Mapping[str, Any], resolve: Resolve) -> dict[str, Any]:
        """The arguments as the job stores them; an unknown option, a bad value or a missing
        argument is refused."""
        if not isinstance(args, Mapping):
            raise InvalidInputError(None, f"{self.name}: arguments must be an object of options")
        accepted = {option.name: option for option in self.arguments} | dict(self.options)
        checked = {}
        for name, value in args.items():
            option = accepted.get(name) if isinstance(name, str) else None
            if option is None:
                known = ", ".join(sorted(accepted))
                raise InvalidInputError(
                    None, f"{self.name}: unknown option {_short(name)}; the options are {known}"
                )
            if value is not None:  # None: the option is not given (lvseg's default)
                checked[name] = option.check(self.name, value, resolve)
        missing = [option.name for option in self.arguments if option.name not in checked]
        if missing:
            raise InvalidInputError(None, f"{self.name}: {missing[0]} is required")
        return checked

    def argv(self, args: Mapping[str, Any], output: Path | None, *, resume: bool) -> list[str]:
        """The command line: the arguments checked again (a path is resolved anew), in the
        whitelist's order. A resumed run takes no option but ``--out``: it continues with its
        saved config (``lvseg train --resume`` refuses any other)."""
        argv = [sys.executable, "-m", "lvseg", *self.verb]
        if resume:
            if not self.resumable or output is None or self.output is None:
                raise InvalidInputError(None, f"a {self.name} job cannot be resumed")
            return [*argv, *self.output.argv(output), "--resume"]
        for option in self.arguments:
            argv += option.arguments(args[option.name])
        for name, option in self.options.items():
            if name in args:
                argv += option.argv(args[name])
        if self.output is not None and output is not None:
            argv += self.output.argv(output)
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


def _pair(option: Option, value: Any, resolve: Resolve) -> str | None:
    """A ``key=value`` text; the verb reads it (``lvseg train`` knows its model's knobs)."""
    text = _text(option, value, resolve)
    return text if text is not None and "=" in text[1:] else None


def _list_of(check: Callable[[Option, Any, Resolve], Any]) -> Callable[..., list[Any] | None]:
    """The check of a list of 1 to :data:`MAX_PATHS` values, each passing ``check``."""

    def checked(option: Option, value: Any, resolve: Resolve) -> list[Any] | None:
        if not isinstance(value, list) or not 0 < len(value) <= MAX_PATHS:
            return None
        items = [check(option, item, resolve) for item in value]
        return None if None in items else items

    return checked


def _data(option: Option, value: Any, resolve: Resolve) -> str | None:
    return _choice(option, value, resolve) or _path(option, value, resolve)


_CHECKS = {
    "int": _int,
    "float": _float,
    "bool": _bool,
    "text": _text,
    "choice": _choice,
    "path": _path,
    "paths": _list_of(_path),
    "pairs": _list_of(_pair),
    "data": _data,
}


def _expected(option: Option) -> str:
    if option.type in ("choice", "data") and option.choices:
        names = ", ".join(option.choices)
        return f"one of {names}" + (" or a path" if option.type == "data" else "")
    nouns = {
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "paths": f"a list of 1 to {MAX_PATHS} paths",
        "pairs": f"a list of 1 to {MAX_PATHS} key=value texts",
    }
    return nouns.get(option.type, "a printable string")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _options(*options: Option) -> dict[str, Option]:
    return {option.name: option for option in options}


# The values the verbs offer (tests/workbench/test_job_kinds.py checks them against its own
# parameters): written out, as their owners import torch (lvseg.config, through the lazy
# import that checks augment keys, too: the import contract counts it).
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
FORMATS = ("auto", "sunnybrook", "folders", "nifti", "phantom")
MODELS = ("lvnet", "unet", "dli-fcn")
PHANTOM_FORMATS = ("dicom", "nifti")
CONTRASTS = ("ssfp", "random")
EVALUATE_SPLITS = ("held-out", "all")
CROPS = ("located", "centre")
PREFERENCES = ("smallest", "fastest", "dice")
EXPORT_FORMATS = ("onnx", "ort", "torchscript")

TRAIN = JobKind(
    "train",
    ("train",),
    _options(
        Option("data", "data", choices=("phantom",)),
        Option("format", "choice", choices=FORMATS),
        Option("model", "choice", choices=MODELS),
        Option("model_option", "pairs"),
        Option("init", "path"),
        Option("config", "path"),
        Option("epochs", "int", minimum=1),
        Option("batch_size", "int", minimum=1),
        Option("lr", "float", minimum=0.0),
        Option("device", "choice", choices=DEVICES),
        Option("precision", "choice", choices=PRECISIONS),
        Option("split", "path"),
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
    output=Output("runs"),
    resumable=True,
)
"""``lvseg train``: every option but those the queue owns (--out, --resume, --overwrite) and
the dashboard's (the workbench is the dashboard)."""

_READER = (
    Option("format", "choice", choices=FORMATS),
    Option("skip_invalid", "bool"),
    Option("name_pattern", "text"),
    Option("labels", "text"),
)

PHANTOM = JobKind(
    "data-phantom",
    ("data", "phantom"),
    _options(
        Option("patients", "int", minimum=1, maximum=500),
        Option("seed", "int", minimum=0),
        Option("format", "choice", choices=PHANTOM_FORMATS),
        Option("contrast", "choice", choices=CONTRASTS),
    ),
    output=Output("datasets", flag=None, prefix="phantom-"),
)
"""``lvseg data phantom``: a synthetic dataset written into the workspace's datasets/."""

SPLIT = JobKind(
    "data-split",
    ("data", "split"),
    _options(
        *_READER,
        Option("val", "float", minimum=0.0, maximum=1.0),
        Option("test", "float", minimum=0.0, maximum=1.0),
        Option("folds", "int", minimum=2),
        Option("seed", "int", minimum=0),
    ),
    arguments=(Option("data", "path"),),
    output=Output("splits", prefix="split-", suffix=".json"),
)
"""``lvseg data split``: a patient-level split (or K folds) as JSON in the workspace's splits/."""

EVALUATE = JobKind(
    "evaluate",
    ("evaluate",),
    _options(
        Option("format", "choice", choices=FORMATS),
        Option("split", "choice", choices=EVALUATE_SPLITS),
        Option("crop", "choice", choices=CROPS),
        Option("limit", "int", minimum=1),
        Option("tta", "bool"),
    ),
    arguments=(Option("model", "path"), Option("data", "path")),
    output=Output("evaluations"),
)
"""``lvseg evaluate MODEL DATA``: metrics.json, slices.csv and report.html in evaluations/."""

SELECT = JobKind(
    "select",
    ("select",),
    _options(
        Option("max_dice_drop", "float", minimum=0.0, maximum=1.0),
        Option("prefer", "choice", choices=PREFERENCES),
    ),
    arguments=(Option("runs", "paths"),),
)
"""``lvseg select RUN...``: writes selected.json into the chosen run."""

EXPORT = JobKind(
    "export",
    ("export",),
    _options(
        Option("format", "choice", choices=EXPORT_FORMATS),
        Option("int8", "bool"),
        Option("calibration", "path"),
        Option("tta", "bool"),
        Option("evaluation", "path"),
    ),
    arguments=(Option("model", "paths"),),
    output=Output("exports"),
)
"""``lvseg export MODEL...``: the deployable model and its card in the workspace's exports/."""

KINDS: dict[str, JobKind] = {
    kind.name: kind for kind in (TRAIN, PHANTOM, SPLIT, EVALUATE, SELECT, EXPORT)
}


def job_kind(name: Any) -> JobKind:
    """The kind named ``name``, or a one-line refusal."""
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise InvalidInputError(None, f"unknown job kind {_short(name)}; one of {', '.join(KINDS)}")
    return kind
