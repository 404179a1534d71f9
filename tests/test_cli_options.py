"""The command line's choices are the package's: those it writes out (their owners import torch,
or take long to import) agree with the tuples of the modules that own them. Its options set the
config keys they name."""

from __future__ import annotations

import doctest
import inspect
from functools import reduce
from importlib import import_module

import pytest

from lvseg.cli import choices, common
from lvseg.cli.train import TRAIN_CONFIG, train_command
from lvseg.config import TrainConfig


@pytest.mark.parametrize(
    ("offered", "owner"),
    [
        (choices.Device, "lvseg.config:DEVICES"),
        (choices.Precision, "lvseg.config:PRECISIONS"),
        (choices.PhantomFormat, "lvseg.data.phantom:FORMATS"),
        (choices.PhantomContrast, "lvseg.data.phantom:CONTRASTS"),
        (choices.Prefer, "lvseg.train.select:PREFERENCES"),
        (choices.ExplainMethod, "lvseg.explain.cam:METHODS"),
        (choices.EvaluateSplit, "lvseg.evaluate.run:SPLITS"),
        (choices.Crop, "lvseg.segment.segmenter:CROPS"),
        (choices.ExportFormat, "lvseg.deploy.export:FORMATS"),
    ],
)
def test_a_choice_is_its_owner_s_tuple(offered, owner):
    module, name = owner.split(":")
    assert tuple(c.value for c in offered) == tuple(getattr(import_module(module), name))


def test_the_formats_are_the_readers_and_the_models_the_registry_s():
    from lvseg.data.load import FORMATS
    from lvseg.model.registry import model_names

    # The same names; the command line lists the real formats first.
    assert sorted(c.value for c in choices.Format) == sorted(FORMATS)
    assert choices.MODEL_NAMES == tuple(model_names())


def test_every_train_option_in_the_table_sets_a_config_key():
    parameters = inspect.signature(train_command).parameters
    for option, key in TRAIN_CONFIG.items():
        assert option in parameters
        reduce(getattr, key.split("."), TrainConfig())  # an AttributeError names a wrong key


def test_given_options_nests_what_was_given():
    result = doctest.testmod(common)
    assert result.attempted and not result.failed
