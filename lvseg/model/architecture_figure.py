"""The picture of an :class:`~lvseg.model.architecture.Architecture`: its blocks left to right
in forward order, each a box as tall as its maps' side (relative to the input) and as wide as
the log of its channels, labelled with its output shape, parameters and MACs; the CAM head in
orange. One network (:func:`draw_architecture`) or two, one above the other under a table that
compares them (:func:`draw_comparison`). PNG or SVG, by the file's suffix.

>>> from lvseg.model.architecture import describe
>>> from lvseg.model.registry import build_model
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "lvnet.png"
>>> draw_architecture(describe(build_model("lvnet", width=4), 64), path).read_bytes()[:4]
b'\\x89PNG'
"""

from __future__ import annotations

import math
from pathlib import Path

from lvseg import atomic

from .architecture import CAM_HEAD, PRESENCE_HEAD, Architecture, Block, comparison_rows

FORMATS = ("png", "svg")
DPI = 130
BLOCK_COLOUR = "#8fb8de"
CAM_COLOUR = "#ff9500"
PRESENCE_COLOUR = "#c7a4e6"
NOT_RUN_COLOUR = "#e5e5ea"
TALLEST = 4.0
"""Height (axis units) of a block whose maps are as large as the input."""
GAP = 0.6
INCHES_PER_UNIT = 0.42
"""Room for a block's labels: a unit of the axis is this wide on the page."""


def figure_format(path: str | Path) -> str:
    """``png`` or ``svg`` from the file's suffix; ``ValueError`` for anything else."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ValueError(
            f"{path}: a figure is written as .png or .svg, not {suffix or 'no suffix'!r}"
        )
    return suffix


def short_count(value: int) -> str:
    """``231.7k``, ``109M``, ``3.01G``: three significant digits.

    >>> short_count(34), short_count(231_716), short_count(109_453_312), short_count(3_008_888_832)
    ('34', '232k', '109M', '3.01G')
    """
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{prefix}"
    return str(value)


def _width(block: Block) -> float:
    channels = block.output_shape[0] if block.output_shape else 1
    return 1.2 + 0.3 * math.log2(max(channels, 1))


def _height(block: Block, input_size: int) -> float:
    if not block.output_shape:
        return 0.6  # one number per image (the presence logit), or not run
    side = block.output_shape[-1] if len(block.output_shape) > 1 else 1
    # a map larger than the input (the DLI FCN's upsampling before its crop) stays in its row
    return max(0.12, TALLEST * min(side / input_size, 1.1))


def _colour(block: Block) -> str:
    if block.role == CAM_HEAD:
        return CAM_COLOUR
    if block.role == PRESENCE_HEAD:
        return PRESENCE_COLOUR
    return BLOCK_COLOUR if block.output_shape is not None else NOT_RUN_COLOUR


def _shape_text(block: Block) -> str:
    if block.output_shape is None:
        return "training only"
    if not block.output_shape:
        return "1 per image"
    return "x".join(str(side) for side in block.output_shape)


def _span(arch: Architecture) -> float:
    """Width of the drawing in axis units."""
    return sum(_width(block) + GAP for block in arch.blocks())


def _draw_block(axis, block: Block, x: float, input_size: int) -> float:
    """One box and its labels at ``x``; returns its right edge."""
    from matplotlib.patches import Rectangle

    width, height = _width(block), _height(block, input_size)
    axis.add_patch(
        Rectangle(
            (x, -height / 2),
            width,
            height,
            facecolor=_colour(block),
            edgecolor="black",
            linewidth=2.0 if block.role == CAM_HEAD else 0.6,
            linestyle="--" if block.output_shape is None else "-",
        )
    )
    centre = x + width / 2
    axis.text(centre, 0.55 * TALLEST + 0.1, block.name, ha="center", va="bottom", fontsize=7,
              rotation=30, rotation_mode="anchor")  # fmt: skip
    lines = [
        _shape_text(block),
        f"{short_count(block.parameters)} par",
        f"{short_count(block.macs)} MAC",
    ]
    if block.receptive_field is not None:
        lines.append(f"RF {block.receptive_field}")
    axis.text(centre, -0.55 * TALLEST - 0.1, "\n".join(lines), ha="center", va="top", fontsize=6)
    if block.role in (CAM_HEAD, PRESENCE_HEAD):
        text = "CAM head" if block.role == CAM_HEAD else "GAP"
        axis.text(centre, 0, text, ha="center", va="center", fontsize=7, fontweight="bold",
                  rotation=90 if height > 1.5 else 0)  # fmt: skip
    return x + width


def draw_on(axis, arch: Architecture) -> None:
    """Draw ``arch`` on a matplotlib axis (its blocks, arrows between them, a title)."""
    x = 0.0
    for index, block in enumerate(arch.blocks()):
        if index:
            axis.annotate("", xy=(x, 0), xytext=(x - GAP, 0),
                          arrowprops={"arrowstyle": "->", "linewidth": 0.6})  # fmt: skip
        x = _draw_block(axis, block, x, arch.input_size) + GAP
    axis.set_xlim(-0.3, max(x - GAP + 0.3, 1.0))
    axis.set_ylim(-0.55 * TALLEST - 1.9, 0.55 * TALLEST + 1.2)
    axis.axis("off")
    side = arch.input_size
    cam = f", CAM head '{arch.cam_head}'" if arch.cam_head else ", no CAM head"
    axis.set_title(
        f"{arch.model} @ {side}x{side}: {arch.parameters:,} parameters, "
        f"{short_count(arch.macs)} MACs, receptive field {arch.receptive_field} px{cam}",
        fontsize=9,
        loc="left",
    )


def _save(figure, path: Path) -> Path:
    fmt = figure_format(path)
    atomic.write_with(path, lambda temporary: figure.savefig(temporary, format=fmt, dpi=DPI))
    return path


def draw_architecture(arch: Architecture, path: str | Path) -> Path:
    """Write the picture of one network to ``path`` (.png or .svg); returns the path."""
    from matplotlib.figure import Figure

    path = Path(path)
    figure_format(path)
    figure = Figure(figsize=(max(6.0, INCHES_PER_UNIT * _span(arch)), 4.2), layout="constrained")
    draw_on(figure.add_subplot(), arch)
    return _save(figure, path)


def draw_comparison(first: Architecture, second: Architecture, path: str | Path) -> Path:
    """Write a table comparing two networks and both pictures, one above the other."""
    from matplotlib.figure import Figure

    path = Path(path)
    figure_format(path)
    width = max(7.0, INCHES_PER_UNIT * max(_span(first), _span(second)))
    figure = Figure(figsize=(width, 10.0), layout="constrained")
    table_axis, first_axis, second_axis = figure.subplots(
        3, 1, gridspec_kw={"height_ratios": [1.3, 3, 3]}
    )
    rows = comparison_rows(first, second)
    table = table_axis.table(
        cellText=[[label, a, b] for label, a, b in rows[1:]],
        colLabels=["", first.model, second.model],
        loc="center",
        cellLoc="left",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table_axis.axis("off")
    draw_on(first_axis, first)
    draw_on(second_axis, second)
    return _save(figure, path)
