"""Choose the model to deploy, across the checkpoints of one or more runs.

Candidates are the saved checkpoints (``best`` and ``last``) of every run given, with a finite
validation Dice and finite weights (each file is opened to check). The reference is the best
validation Dice among them; ``prefer`` then picks:

- ``dice``: the best validation Dice itself;
- ``smallest``: the fewest parameters among candidates within ``max_dice_drop`` of it;
- ``fastest``: the fewest multiply-accumulates per image (at the default input size) within
  the drop; MACs, not a wall-clock timing, so the choice is the same on every machine.

Ties go to the higher Dice, then the later step. The choice and its reason are written to
``selected.json`` in the chosen run's directory (so the run directory names its model from then
on) and recorded as a ``selected`` event in every run considered.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lvseg import atomic, layout
from lvseg.errors import InvalidInputError
from lvseg.runs.checkpoint import load_checkpoint
from lvseg.runs.store import RunStore

PREFERENCES = ("smallest", "fastest", "dice")


@dataclass
class Candidate:
    run: str
    kind: str
    checkpoint: str
    epoch: int
    step: int
    val_dice: float
    parameters: int
    macs: int | None
    size_bytes: int
    model: str | None


@dataclass
class Selection:
    chosen: Candidate
    reason: str
    reference_dice: float
    candidates: list[Candidate]
    rejected: list[str]
    written: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            # relative to the run directory, so a moved or copied run still names its model
            "checkpoint": str(Path(self.chosen.checkpoint).relative_to(self.chosen.run)),
            "run": self.chosen.run,
            "model": self.chosen.model,
            "epoch": self.chosen.epoch,
            "step": self.chosen.step,
            "metrics": {"val_dice": self.chosen.val_dice},
            "parameters": self.chosen.parameters,
            "macs": self.chosen.macs,
            "size_bytes": self.chosen.size_bytes,
            "reason": self.reason,
            "reference_dice": self.reference_dice,
            "candidates": [asdict(c) for c in self.candidates],
            "rejected": self.rejected,
            "selected_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }


def gather(run_dirs: list[Path]) -> tuple[list[Candidate], list[str]]:
    """Every usable checkpoint of the runs, and why the others were left out."""
    candidates, rejected = [], []
    for run_dir in run_dirs:
        with RunStore.open(run_dir, readonly=True) as store:
            meta = store.meta
            rows = store.checkpoints()
        seen: dict[str, Candidate] = {}
        for row in rows:
            path = (Path(run_dir) / row["path"]).resolve()
            dice = row["metrics"].get("val_dice")
            where = f"{run_dir}/{row['path']}"
            if dice is None or not math.isfinite(dice):
                rejected.append(f"{where}: no finite validation Dice")
                continue
            if not row["finite"]:
                rejected.append(f"{where}: non-finite weights")
                continue
            try:
                load_checkpoint(path)
            except InvalidInputError as error:
                rejected.append(str(error))
                continue
            candidate = Candidate(
                run=str(Path(run_dir).resolve()),
                kind=row["kind"],
                checkpoint=str(path),
                epoch=row["epoch"],
                step=row["step"],
                val_dice=float(dice),
                parameters=int(row["parameters"]),
                macs=meta.get("macs"),
                size_bytes=int(row["size_bytes"]),
                model=meta.get("model"),
            )
            # "last" and "best" are often the same epoch: keep one of them.
            key = f"{candidate.run}@{candidate.step}"
            if key not in seen or candidate.kind == "best":
                seen[key] = candidate
        candidates.extend(seen.values())
    return candidates, rejected


def select(
    run_dirs: list[str | Path],
    *,
    max_dice_drop: float = 0.005,
    prefer: str = "smallest",
) -> Selection:
    """Pick the deployment model (see the module docstring) and write ``selected.json``."""
    if prefer not in PREFERENCES:
        raise InvalidInputError(None, f"--prefer must be one of {', '.join(PREFERENCES)}")
    if not math.isfinite(max_dice_drop) or max_dice_drop < 0:
        raise InvalidInputError(None, f"--max-dice-drop must be >= 0, got {max_dice_drop}")
    runs = [Path(r) for r in run_dirs]
    if not runs:
        raise InvalidInputError(None, "give at least one run directory")
    candidates, rejected = gather(runs)
    if not candidates:
        why = "; ".join(rejected) if rejected else "no checkpoint saved yet"
        raise InvalidInputError(runs[0], f"no checkpoint can be selected ({why})")
    reference = max(c.val_dice for c in candidates)
    within = [c for c in candidates if c.val_dice >= reference - max_dice_drop - 1e-12]
    dice_order = (lambda c: -c.val_dice, lambda c: -c.step)
    if prefer == "dice":
        chosen = min(within, key=lambda c: (-c.val_dice, -c.step))
        reason = f"best validation Dice ({chosen.val_dice:.4f})"
    else:
        measure = "parameters" if prefer == "smallest" else "macs"
        if prefer == "fastest" and any(c.macs is None for c in within):
            raise InvalidInputError(None, "--prefer fastest needs MACs recorded in every run")
        chosen = min(within, key=lambda c: (getattr(c, measure), *(f(c) for f in dice_order)))
        reason = (
            f"{'fewest parameters' if prefer == 'smallest' else 'fewest MACs'} "
            f"({getattr(chosen, measure):,}) among {len(within)} of {len(candidates)} "
            f"checkpoints within {max_dice_drop:g} of the best validation Dice "
            f"({reference:.4f}); its Dice is {chosen.val_dice:.4f}"
        )
    written = Path(chosen.run) / layout.SELECTED
    selection = Selection(chosen, reason, reference, candidates, rejected, written)
    atomic.write_text(written, json.dumps(selection.to_dict(), indent=2) + "\n")
    for run_dir in runs:
        with RunStore.open(run_dir) as store:
            store.event(
                "selected",
                f"selected {chosen.checkpoint}: {reason}",
                checkpoint=chosen.checkpoint,
                val_dice=chosen.val_dice,
                parameters=chosen.parameters,
            )
    return selection
