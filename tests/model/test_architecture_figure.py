"""The picture of an architecture: a real PNG or SVG, one network or two side by side."""

from __future__ import annotations

import doctest

import pytest

from lvseg.model import architecture_figure, build_model
from lvseg.model.architecture import describe
from lvseg.model.architecture_figure import draw_architecture, draw_comparison

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_lvnet():
    return describe(build_model("lvnet", width=4), 64)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_the_picture_is_a_valid_png_of_nonzero_size(small_lvnet, tmp_path):
    written = draw_architecture(small_lvnet, tmp_path / "lvnet.png")
    width, height = _png_size(written.read_bytes())
    assert width > 0 and height > 0 and written.stat().st_size > 1000


def test_the_picture_can_be_an_svg(small_lvnet, tmp_path):
    text = draw_architecture(small_lvnet, tmp_path / "lvnet.svg").read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text


def test_an_unknown_suffix_is_refused_before_drawing(small_lvnet, tmp_path):
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        draw_architecture(small_lvnet, tmp_path / "lvnet.jpg")
    assert not list(tmp_path.iterdir())


def test_two_networks_side_by_side(small_lvnet, tmp_path):
    other = describe(build_model("unet", width=4, depth=2), 64)
    written = draw_comparison(small_lvnet, other, tmp_path / "both.png")
    width, height = _png_size(written.read_bytes())
    assert height > width / 4  # a table and two rows of blocks


def test_docstring_examples_run():
    result = doctest.testmod(architecture_figure)
    assert result.attempted > 0 and result.failed == 0
