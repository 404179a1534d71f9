"""``lvseg model``: the networks, their sizes and costs, their architecture as a table, JSON or a
picture, and two of them side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lvseg.cli.choices import MODEL_NAMES
from lvseg.cli.common import clean_errors, console, error_console, fail

MODEL_LIST = ", ".join(MODEL_NAMES)

model_app = typer.Typer(help="The networks: sizes, costs and architecture.", no_args_is_help=True)

NameArgument = Annotated[str, typer.Argument(help=f"Registered model name ({MODEL_LIST}).")]
InputSizeOption = Annotated[int, typer.Option(help="Square input side for the MAC count.")]
FigureOption = Annotated[
    Path | None, typer.Option(help="Write the architecture's picture (.png or .svg).")
]


def _check_name(name: str) -> None:
    if name not in MODEL_NAMES:
        raise fail(f"unknown model {name!r}; choose one of {MODEL_LIST}")


def _check_figure(figure: Path | None) -> None:
    """Refuse a figure path the picture cannot be written as before measuring anything."""
    from lvseg.model.architecture_figure import figure_format

    if figure is not None:
        try:
            figure_format(figure)
        except ValueError as error:
            raise fail(str(error)) from None


@model_app.command("info")
@clean_errors
def model_info(
    name: NameArgument,
    input_size: InputSizeOption = 128,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            help="A size knob of the model as key=value (e.g. width=8); repeat for several.",
        ),
    ] = None,
    layers: Annotated[
        bool, typer.Option("--layers", help="Also print every layer: shape, params, MACs.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the architecture as JSON (nothing else).")
    ] = False,
    figure: FigureOption = None,
) -> None:
    """Print a model's parameters, fp32 size and multiply-accumulates per image; with --layers,
    --json or --figure, its architecture (layers in order, receptive field, CAM head)."""
    from lvseg.model.registry import build_model, parse_options, size_report

    _check_name(name)
    _check_figure(figure)
    try:
        model = build_model(name, **parse_options(name, option or []))
    except ValueError as error:
        raise fail(str(error)) from None
    arch = None
    if layers or as_json or figure is not None:
        from lvseg.model.architecture import describe

        arch = describe(model, input_size)
    if as_json:
        print(json.dumps(arch.to_json(), indent=2))
    else:
        table = Table(title=name, show_header=False)
        for label, value in size_report(model, input_size=input_size).rows():
            table.add_row(label, value)
        console.print(table)
    if layers and not as_json:
        console.print(_layers_table(arch))
    if figure is not None:
        from lvseg.model.architecture_figure import draw_architecture

        written = draw_architecture(arch, figure)
        (error_console if as_json else console).print(f"written: {written}", highlight=False)


def _layers_table(arch) -> Table:
    """One row per layer, in forward order; the receptive field and CAM head in the caption."""
    from rich import box

    side = arch.input_size
    table = Table(
        title=f"{arch.model}: layers at {side}x{side}",
        caption=f"RF: receptive field in input pixels (the max over paths); at the output "
        f"{arch.receptive_field} px. CAM head: {arch.cam_head or 'none'}.",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in ("layer", "type", "output", "params", "MACs", "RF"):
        numeric = column in ("params", "MACs", "RF")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    for layer in arch.layers:
        table.add_row(*_layer_cells(layer))
    table.add_row("total", "", "", f"{arch.parameters:,}", f"{arch.macs:,}", "")
    return table


def _layer_cells(layer) -> list[str]:
    """A layer's name (with its role), type, output shape, parameters, MACs, receptive field."""
    from lvseg.model.architecture import PRESENCE_HEAD

    shape = layer.output_shape
    output = "not run" if shape is None else "x".join(map(str, shape)) or "1"
    field = "-" if layer.receptive_field is None else str(layer.receptive_field)
    if shape is not None and layer.receptive_field is None:
        field = "all"  # after a global pooling: the whole input
    role = "GAP" if layer.role == PRESENCE_HEAD else layer.role
    name = f"{layer.name} ({role})" if role else layer.name
    return [name, layer.type, output, f"{layer.parameters:,}", f"{layer.macs:,}", field]


@model_app.command("compare")
@clean_errors
def model_compare(
    first: NameArgument,
    second: NameArgument,
    input_size: InputSizeOption = 128,
    figure: FigureOption = None,
) -> None:
    """Two networks side by side: parameters, MACs, receptive field, layers, CAM head; with
    --figure, both pictures under the table."""
    from lvseg.model.architecture import comparison_rows, describe
    from lvseg.model.registry import build_model

    for name in (first, second):
        _check_name(name)
    _check_figure(figure)
    archs = [describe(build_model(name), input_size) for name in (first, second)]
    rows = comparison_rows(*archs)
    table = Table(title=f"{first} and {second} at {input_size}x{input_size}")
    table.add_column("")
    table.add_column(first, justify="right")
    table.add_column(second, justify="right")
    for label, a, b in rows[1:]:
        table.add_row(label, a, b)
    console.print(table)
    if figure is not None:
        from lvseg.model.architecture_figure import draw_comparison

        console.print(f"written: {draw_comparison(*archs, figure)}", highlight=False)
