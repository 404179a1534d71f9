"""``lvseg model info`` with --layers, --json, --figure and --option; ``lvseg model compare``."""

from __future__ import annotations

import json

import pytest

from lvseg.model.architecture import Architecture
from tests.builders import invoke

WIDE = {"COLUMNS": "120"}


def test_info_without_new_flags_prints_only_the_size_table():
    result = invoke("model", "info", "lvnet")
    assert result.exit_code == 0
    assert "231,716" in result.output and "MACs @128x128" in result.output
    assert "layers at" not in result.output and "written" not in result.output


def test_layers_prints_every_layer_and_the_totals():
    result = invoke("model", "info", "lvnet", "--layers", env=WIDE)
    assert result.exit_code == 0, result.output
    for text in ("layers at 128x128", "encoder.3.1.pointwise", "head (CAM head)", "155 px"):
        assert text in result.output
    assert "231,716" in result.output.split("total")[-1]  # the total row
    assert "109,453,312" in result.output


def test_json_is_the_architecture_and_nothing_else():
    result = invoke("model", "info", "lvnet", "--json", "--input-size", "64")
    assert result.exit_code == 0, result.output
    arch = Architecture.from_json(json.loads(result.output))
    assert arch.parameters == 231_716 and arch.input_size == 64 and arch.cam_head == "head"


def test_options_set_the_model_s_size_knobs():
    result = invoke(
        "model", "info", "lvnet", "--option", "width=8", "--option", "depth=3", "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["config"]["width"], data["config"]["depth"]) == (8, 3)
    assert data["parameters"] < 231_716


def test_figure_writes_a_png(tmp_path):
    path = tmp_path / "lvnet.png"
    result = invoke("model", "info", "lvnet", "--option", "width=4", "--figure", path)
    assert result.exit_code == 0, result.output
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 0
    assert "written" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--option", "widht=8"], "unknown option 'widht' for model 'lvnet'"),
        (["--option", "width=wide"], "takes an integer, got 'wide'"),
        (["--option", "width"], "is not key=value"),
        (["--option", "width=0"], "width must be an integer >= 1"),
        (["--figure", "{tmp}/lvnet.jpg"], "written as .png or .svg"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(arguments, message, tmp_path):
    result = invoke("model", "info", "lvnet", *(a.format(tmp=tmp_path) for a in arguments))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert not list(tmp_path.iterdir())


def test_compare_prints_both_and_draws_both(tmp_path):
    path = tmp_path / "both.svg"
    result = invoke("model", "compare", "lvnet", "dli-fcn", "--input-size", "64", "--figure", path,
                    env=WIDE)  # fmt: skip
    assert result.exit_code == 0, result.output
    for text in ("lvnet", "dli-fcn", "231,716", "1,857,850", "receptive field", "CAM head"):
        assert text in result.output
    assert "<svg" in path.read_text()


def test_compare_refuses_an_unknown_model():
    result = invoke("model", "compare", "lvnet", "resnet")
    assert result.exit_code == 2 and "unknown model 'resnet'" in result.output
