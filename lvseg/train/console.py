"""Progress of a training run on the terminal: a rich progress bar with loss, Dice and ETA,
and one line per epoch (the only output where stderr is not a terminal, e.g. in CI logs)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from lvseg.train.engine import Progress as Hooks


class ConsoleProgress:
    """Builds the :class:`lvseg.train.engine.Progress` hooks that draw on ``console``."""

    def __init__(self, console: Console | None = None, rank: int = 0) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = rank != 0
        self.bar: Progress | None = None
        self.task = None
        self.epochs = 0
        self.dice = "-"

    def hooks(self) -> Hooks:
        if self.quiet:
            return Hooks()
        return Hooks(self.start, self.step, self.epoch, self.message, self.alert)

    def start(self, total_steps: int, start_step: int, epochs: int) -> None:
        self.epochs = epochs
        if not self.console.is_terminal:
            return
        self.bar = Progress(
            TextColumn("[bold]train[/] epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  val Dice {task.fields[dice]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.bar.start()
        self.task = self.bar.add_task(
            "train",
            total=total_steps,
            completed=start_step,
            epoch=1,
            epochs=epochs,
            loss="-",
            dice="-",
        )

    def step(self, step: int, epoch: int, metrics: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, epoch=epoch, loss=f"{metrics['loss']:.4f}")

    def epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        dice = metrics.get("val_dice")
        self.dice = "-" if dice is None else f"{dice:.4f}"
        if self.bar is not None:
            self.bar.update(self.task, dice=self.dice)
        parts = [f"epoch {epoch}/{self.epochs}", f"train loss {metrics['train_loss']:.4f}"]
        if dice is not None:
            parts.append(f"val loss {metrics['val_loss']:.4f}")
            parts.append(f"val Dice {dice:.4f}" + (" (best)" if metrics.get("best") else ""))
        parts.append(f"{metrics['seconds']:.1f} s")
        line = "  ".join(parts)
        if self.bar is not None:
            self.bar.console.print(line, highlight=False)
        else:
            self.console.print(line, highlight=False)

    def message(self, text: str) -> None:
        # Plain text on one line: messages name paths, which may hold "[" (rich markup).
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def alert(self, text: str) -> None:
        self.console.print(f"[bold yellow]alert[/]: {escape(text)}", highlight=False)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
