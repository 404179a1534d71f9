"""Rich renderables of runs for ``lvseg runs list`` and ``lvseg runs show``.

The CLI prints what these return; nothing here writes to the store.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from lvseg.runs.store import RunStore, RunSummary

STATUS_STYLES = {
    "running": "cyan",
    "finished": "green",
    "stopped": "yellow",
    "interrupted": "yellow",
    "failed": "red",
    "locked": "yellow",
    "corrupt": "bold red",
}


EPOCH_COLUMNS = ("train_loss", "val_loss", "val_dice", "val_dice_pooled", "lr", "seconds", "best")
"""The columns ``runs show`` gives a training run's epochs (all of them are in the store)."""
CHECKPOINT_METRICS = ("val_dice",)


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_time(seconds: float | None, short: bool = False) -> str:
    """Local time of a Unix timestamp, to the minute; "-" when unknown.

    >>> format_time(None)
    '-'
    """
    if seconds is None:
        return "-"
    return time.strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M", time.localtime(seconds))


def format_value(value: Any) -> str:
    """A metric as a short string: 4 significant digits, nan/inf spelled out.

    >>> format_value(0.123456), format_value(float("nan")), format_value(None), format_value(3)
    ('0.1235', 'nan', '-', '3')
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, default=str)


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def format_runs_table(summaries: Sequence[RunSummary]) -> Table:
    """One row per run: name, status, model, epochs, best Dice @epoch, steps, updated, selected."""
    table = Table(
        title="runs (best validation Dice @ its epoch)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )
    # Names, statuses and models never fold: on a narrow terminal the times give way first.
    table.add_column("run", style="bold", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("model", no_wrap=True)
    table.add_column("epochs", justify="right", no_wrap=True, min_width=6)
    table.add_column("best Dice", justify="right", no_wrap=True)
    table.add_column("steps", justify="right", no_wrap=True, min_width=5)
    table.add_column("updated", no_wrap=True)
    table.add_column("selected", justify="center", no_wrap=True, min_width=8)
    for run in summaries:
        if run.best_val_dice is None:
            best = "-"
        else:
            best = f"{run.best_val_dice:.4f} @{run.best_epoch}"
        table.add_row(
            run.name,
            _status(run.status),
            run.model or "-",
            str(run.epochs),
            best,
            str(run.steps),
            format_time(run.updated, short=True),
            "yes" if run.selected else "",
        )
    return table


def format_run_errors(summaries: Sequence[RunSummary]) -> list[str]:
    """One line per run that could not be read: its name, status and why.

    >>> from pathlib import Path
    >>> format_run_errors([RunSummary("a", Path("a"), "locked", error="a/run.db: locked")])
    ['a (locked): a/run.db: locked']
    """
    return [f"{run.name} ({run.status}): {run.error}" for run in summaries if run.error]


def _metric_table(title: str, rows: list[dict[str, Any]], key: str, skip: set[str]) -> Table:
    names: list[str] = []
    for row in rows:
        names.extend(name for name in row if name not in skip and name not in names)
    table = Table(title=title, title_justify="left")
    table.add_column(key, justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(str(row[key]), *(format_value(row.get(name)) for name in names))
    return table


def format_run_detail(
    store: RunStore, *, max_epochs: int = 50, max_events: int = 20
) -> list[RenderableType]:
    """Renderables for one run: its facts, last epochs, checkpoints and latest events."""
    summary = store.summary()
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("run", str(store.path))
    message = store.status_message
    status = _status(summary.status)
    if message:
        status.append(f"  {message}")
    facts.add_row("status", status)
    facts.add_row("steps", f"{summary.steps} (last {format_value(summary.last_step)})")
    facts.add_row("created", format_time(summary.created))
    facts.add_row("updated", format_time(summary.updated))
    facts.add_row("selected", "yes" if summary.selected else "no")
    for key, value in sorted(store.meta.items()):
        if key != "created":
            facts.add_row(key, _short(format_value(value)))
    renderables: list[RenderableType] = [facts]

    epochs = store.epochs()
    if epochs:
        shown = epochs[-max_epochs:]
        title = "epochs" if len(shown) == len(epochs) else f"last {len(shown)} epochs"
        present = {name for row in shown for name in row}
        skip = {"epoch", "time"}
        if present & set(EPOCH_COLUMNS):  # a training run: its key columns only
            skip |= present - set(EPOCH_COLUMNS)
        renderables.append(_metric_table(title, shown, "epoch", skip))

    checkpoints = store.checkpoints()
    if checkpoints:
        table = Table(title="checkpoints", title_justify="left")
        for column in ("kind", "path", "epoch", "step", "metrics", "parameters", "MB", "finite"):
            table.add_column(
                column,
                justify="right" if column in {"epoch", "step", "MB"} else "left",
                no_wrap=column in {"kind", "path"},
            )
        for row in checkpoints:
            shown = {k: v for k, v in row["metrics"].items() if k in CHECKPOINT_METRICS}
            metrics = ", ".join(
                f"{k}={format_value(v)}" for k, v in (shown or row["metrics"]).items()
            )
            table.add_row(
                row["kind"],
                row["path"],
                str(row["epoch"]),
                str(row["step"]),
                metrics,
                f"{row['parameters']:,}",
                f"{row['size_bytes'] / 1e6:.2f}",
                "yes" if row["finite"] else Text("NO", style="bold red"),
            )
        renderables.append(table)

    events = store.events()[-max_events:]
    if events:
        table = Table(title="events", title_justify="left")
        for column in ("time", "kind", "step", "epoch", "message"):
            table.add_column(column)
        for row in events:
            table.add_row(
                format_time(row["time"]),
                row["kind"],
                format_value(row["step"]),
                format_value(row["epoch"]),
                row["message"],
            )
        renderables.append(table)
    return renderables
