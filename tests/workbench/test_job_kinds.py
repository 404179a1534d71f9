"""A job's options: only the whitelist, each of its type, built into an argv that ``lvseg
train`` itself parses to the same values."""

from __future__ import annotations

import enum
import sys
import types
import typing
from pathlib import Path

import pytest
import typer.main

from lvseg.cli import app
from lvseg.cli.choices import MODEL_NAMES
from lvseg.cli.train import TRAIN_CONFIG, train_command
from lvseg.errors import InvalidInputError
from lvseg.workbench.kinds import TRAIN, job_kind
from lvseg.workbench.workspace import Workspace

# The options the queue sets itself, and the dashboard's (the workbench is the dashboard).
OWNED = {"out", "resume", "overwrite", "dashboard", "host", "port", "token"}
PYTHON_TYPES = {
    "int": int,
    "float": float,
    "bool": bool,
    "text": str,
    "data": str,
    "path": Path,
    "choice": str,  # --model: a str the registry checks
    "pairs": list[str],  # --model-option, repeated
}


@pytest.fixture
def space(tmp_path):
    return Workspace.open(tmp_path / "ws")


def _base_type(hint):
    """``Annotated[int | None, ...]`` as int; an enum as itself."""
    hint = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return hint


def test_the_whitelist_is_train_commands_options_but_those_the_queue_owns():
    hints = typing.get_type_hints(train_command.__wrapped__, include_extras=True)
    assert set(TRAIN.options) == set(hints) - OWNED - {"return"}
    assert set(TRAIN_CONFIG) <= set(TRAIN.options)  # every config-setting option
    for name, option in TRAIN.options.items():
        hint = _base_type(hints[name])
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            assert option.type == "choice", name
            assert option.choices == tuple(member.value for member in hint), name
        else:
            assert PYTHON_TYPES[option.type] == hint, name
    assert TRAIN.options["model"].choices == MODEL_NAMES


def _parse(argv):
    """``lvseg train``'s own parsing of argv (types and choices checked), without running it."""
    assert argv[:4] == [sys.executable, "-m", "lvseg", "train"]
    command = typer.main.get_command(app).commands["train"]
    return command.make_context("train", argv[4:]).params


def test_a_train_argv_is_what_lvseg_train_parses(space):
    (space.datasets / "acdc").mkdir()
    (space.runs / "old").mkdir()
    args = {
        "data": "datasets/acdc",
        "format": "folders",
        "model": "unet",
        "model_option": ["width=4", "depth=3"],
        "init": "runs/old",
        "config": "datasets/acdc/train.toml",
        "epochs": 3,
        "batch_size": 8,
        "lr": 1e-5,
        "device": "cpu",
        "precision": "fp32",
        "split": "splits/split-0002.json",
        "folds": 5,
        "fold": 1,
        "val": 0.25,
        "exclude_patients": "-p1, p2",  # a leading '-' stays a value: --name=value
        "pixel_spacing": 1.33,
        "seed": 7,
        "deterministic": True,
        "compile": False,
        "monitor": False,
        "tensorboard": True,
    }
    assert set(args) == set(TRAIN.options)
    checked = TRAIN.validate(args, space.resolve)
    run = space.runs / "job-0001"
    params = _parse(TRAIN.argv(checked, run, resume=False))
    assert params["out"] == run and params["resume"] is False
    for name, value in checked.items():
        parsed = params[name]
        parsed = parsed.value if isinstance(parsed, enum.Enum) else parsed
        parsed = str(parsed) if isinstance(parsed, Path) else parsed
        assert parsed == value, name
    assert checked["data"] == str(space.datasets / "acdc")  # stored resolved


def test_a_resume_argv_names_only_the_run(space):
    run = space.runs / "job-0001"
    argv = TRAIN.argv({"epochs": 3}, run, resume=True)
    assert argv[4:] == [f"--out={run}", "--resume"]
    params = _parse(argv)
    assert params["resume"] is True and params["epochs"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"shell": "rm -rf /"}, "train: unknown option 'shell'; the options are batch_size, "),
        ({"out": "/tmp/x"}, "train: unknown option 'out'"),
        ({"epochs": "2"}, "train --epochs: an integer, not '2'"),
        ({"epochs": True}, "train --epochs: an integer, not True"),
        ({"epochs": 0}, "train --epochs: 0 is outside [1, None]"),
        ({"lr": float("nan")}, "train --lr: a number, not nan"),
        ({"val": 2}, "train --val: 2.0 is outside [0.0, 1.0]"),
        ({"device": "tpu"}, "train --device: one of auto, cpu, cuda, mps, not 'tpu'"),
        ({"deterministic": "yes"}, "train --deterministic: true or false, not 'yes'"),
        ({"model_option": "width=8"}, "train --model-option: a list of 1 to 20 key=value texts"),
        ({"model_option": ["width"]}, "train --model-option: a list of 1 to 20 key=value"),
        ({"model_option": ["=8"]}, "train --model-option: a list of 1 to 20 key=value"),
        ({"exclude_patients": "a\nb"}, "train --exclude-patients: a printable string"),
        ({"data": 3}, "train --data: one of phantom or a path, not 3"),
        ({"data": "../elsewhere"}, "../elsewhere: outside the workspace"),
        ({"config": "/etc/passwd"}, "/etc/passwd: outside the workspace"),
    ],
)
def test_a_bad_option_is_refused_in_one_line(space, args, message):
    with pytest.raises(InvalidInputError) as error:
        TRAIN.validate(args, space.resolve)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_none_means_not_given(space):
    assert TRAIN.validate({"epochs": None, "lr": 0.1}, space.resolve) == {"lr": 0.1}


def test_only_lvseg_verbs_are_kinds():
    assert job_kind("train") is TRAIN
    for name in ("bash", "python", "", None, "TRAIN"):
        with pytest.raises(InvalidInputError, match="unknown job kind"):
            job_kind(name)


def _command(verb):
    """The click command lvseg runs for ``verb`` (its words after ``lvseg``)."""
    command = typer.main.get_command(app)
    for word in verb:
        command = command.commands[word]
    return command


def _plain(value):
    value = value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return str(value) if isinstance(value, Path) else value


# One full set of arguments per kind but train (tested above), with what the verb's own parser
# must read for its positional arguments (a name: the arguments' order, as the verb takes them).
OTHER_KINDS = {
    "data-phantom": (
        {"patients": 3, "seed": 2, "format": "nifti", "contrast": "random"},
        {"out": "OUTPUT"},
    ),
    "data-split": (
        {
            "data": "datasets/acdc",
            "format": "nifti",
            "skip_invalid": True,
            "name_pattern": "(?P<patient>p\\d+)",
            "labels": "acdc",
            "val": 0.25,
            "test": 0.1,
            "folds": 5,
            "seed": 4,
        },
        {"path": "datasets/acdc", "out": "OUTPUT"},
    ),
    "evaluate": (
        {
            "model": "runs/old",
            "data": "datasets/acdc",
            "format": "folders",
            "split": "all",
            "crop": "centre",
            "limit": 9,
            "tta": True,
        },
        {"targets": ["runs/old", "datasets/acdc"], "out": "OUTPUT"},
    ),
    "select": (
        {"runs": ["runs/old", "runs/new"], "max_dice_drop": 0.01, "prefer": "dice"},
        {"runs": ["runs/old", "runs/new"]},
    ),
    "export": (
        {
            "model": ["runs/old"],
            "format": "torchscript",
            "int8": True,
            "calibration": "datasets/acdc",
            "tta": True,
            "evaluation": "evaluations/job-0007",
        },
        {"model": ["runs/old"], "out": "OUTPUT"},
    ),
}


@pytest.mark.parametrize("name", sorted(OTHER_KINDS))
def test_each_kinds_argv_is_what_its_verb_parses(space, name):
    for folder in ("datasets/acdc", "runs/old", "runs/new"):
        (space.root / folder).mkdir(parents=True, exist_ok=True)
    kind = job_kind(name)
    args, positional = OTHER_KINDS[name]
    assert set(args) == set(kind.options) | {option.name for option in kind.arguments}
    checked = kind.validate(args, space.resolve)
    output = space.root / kind.output.folder / kind.output.name(7) if kind.output else None
    argv = kind.argv(checked, output, resume=False)
    assert argv[:3] == [sys.executable, "-m", "lvseg"]
    assert tuple(argv[3 : 3 + len(kind.verb)]) == kind.verb
    params = _command(kind.verb).make_context(name, argv[3 + len(kind.verb) :]).params
    for option in kind.options:
        assert _plain(params[option]) == checked[option], option

    def expected(value):
        if value == "OUTPUT":
            return str(output)
        return (
            [expected(item) for item in value]
            if isinstance(value, list)
            else str(space.root / value)
        )

    for parameter, value in positional.items():
        assert _plain(params[parameter]) == expected(value), parameter


def test_outputs_are_named_by_the_job_in_their_own_folders():
    names = {name: (kind.output.folder, kind.output.name(12)) for name, kind in
             ((n, job_kind(n)) for n in OTHER_KINDS) if kind.output}  # fmt: skip
    assert names == {
        "data-phantom": ("datasets", "phantom-0012"),
        "data-split": ("splits", "split-0012.json"),
        "evaluate": ("evaluations", "job-0012"),
        "export": ("exports", "job-0012"),
    }
    assert job_kind("select").output is None  # it writes RUN/selected.json
    assert [name for name in OTHER_KINDS if job_kind(name).resumable] == []


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("evaluate", {"model": "runs/old"}, "evaluate: data is required"),
        ("select", {"runs": []}, "select --runs: a list of 1 to 20 paths, not []"),
        ("select", {"runs": "runs/old"}, "select --runs: a list of 1 to 20 paths"),
        ("select", {"runs": ["runs/old", "/etc"]}, "/etc: outside the workspace"),
        ("export", {"model": ["runs/old"], "out": "/tmp/x"}, "export: unknown option 'out'"),
        ("export", {"model": ["runs/old"], "overwrite": True}, "export: unknown option"),
        ("data-phantom", {"patients": 0}, "data-phantom --patients: 0 is outside [1, 500]"),
        ("data-split", {"data": "../elsewhere"}, "../elsewhere: outside the workspace"),
    ],
)
def test_other_kinds_refuse_bad_arguments_in_one_line(space, name, args, message):
    (space.runs / "old").mkdir()
    with pytest.raises(InvalidInputError) as error:
        job_kind(name).validate(args, space.resolve)
    assert message in str(error.value) and "\n" not in str(error.value)
