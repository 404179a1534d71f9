"""Progress bars for long loops, switched on by the command line and off in library use.

Readers and preprocessing wrap their loops in :func:`track`; it yields the items unchanged, and
draws a rich progress bar on stderr only when :func:`enable` was called (the CLI does) and stderr
is a terminal, so library calls and tests stay quiet.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import TypeVar

Item = TypeVar("Item")
_enabled = False


def enable(flag: bool = True) -> None:
    global _enabled
    _enabled = flag


def track(items: Iterable[Item], description: str, total: int | None = None) -> Iterator[Item]:
    """Iterate over ``items``, with a progress bar when enabled."""
    if not _enabled:
        yield from items
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    if not console.is_terminal:
        yield from items
        return
    if total is None and isinstance(items, Sized):
        total = len(items)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
