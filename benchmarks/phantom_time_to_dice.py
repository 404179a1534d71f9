"""How long LVNet takes to reach validation Dice >= 0.90 on the phantom, on this CPU.

Trains the default LVNet recipe on a phantom of ``--patients`` synthetic patients (written in
the Sunnybrook DICOM layout first, not timed) and reports the wall-clock time from the start of
``lvseg train`` (data loading, planning and caching included) to the end of the first epoch
whose validation Dice (patient-level split, image-centred crops) reaches the target.

Run from the project root::

    .venv/bin/python -m benchmarks.phantom_time_to_dice [--patients 16] [--target 0.90]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from lvseg.config import TrainConfig
from lvseg.data.phantom import write_phantom
from lvseg.train.engine import Progress, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.90)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="lvseg-ttd-"))
    phantom = write_phantom(work / "phantom", patients=args.patients, seed=args.seed)
    overrides = {
        "seed": args.seed,
        "data": {"path": str(phantom)},
        "runtime": {"device": "cpu", "threads": args.threads},
    }
    if args.epochs:
        overrides["optim"] = {"epochs": args.epochs}
    config = TrainConfig().merged(overrides)
    start = time.perf_counter()
    reached: dict[str, float] = {}
    curve: list[tuple[int, float, float]] = []

    def on_epoch(epoch: int, metrics: dict) -> None:
        elapsed = time.perf_counter() - start
        curve.append((epoch, metrics.get("val_dice", float("nan")), elapsed))
        if "seconds" not in reached and metrics.get("val_dice", 0) >= args.target:
            reached.update(seconds=elapsed, epoch=epoch, dice=metrics["val_dice"])

    result = train(config, work / "run", progress=Progress(on_epoch=on_epoch))
    print(
        f"LVNet on a {args.patients}-patient phantom (seed {args.seed}), "
        f"CPU x{args.threads}, torch {torch.__version__}"
    )
    print()
    print("| quantity | value |")
    print("|---|---|")
    print(f"| epochs run / best val Dice | {result.epochs} / {result.best_dice:.4f} |")
    if reached:
        print(
            f"| time to val Dice >= {args.target} | {reached['seconds']:.0f} s "
            f"(epoch {reached['epoch']}, Dice {reached['dice']:.4f}) |"
        )
    else:
        print(f"| time to val Dice >= {args.target} | not reached |")
    print(f"| whole run | {result.seconds:.0f} s |")
    print()
    print("epoch  val Dice  elapsed")
    for epoch, dice, elapsed in curve:
        print(f"{epoch:5d}  {dice:.4f}  {elapsed:6.0f} s")


if __name__ == "__main__":
    main()
