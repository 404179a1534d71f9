"""Accuracy on real data: 5-fold patient-level cross-validation on the Sunnybrook PNGs.

The 30 patients of ``../shared/data/sunnybrook-png`` are dealt into 5 folds stratified by
pathology group (``lvseg.data.splits.kfold``). For each fold and model the engine trains on the
other 24 patients with the same recipe (the default config, no early stopping, a fixed number of
epochs) and the **last** checkpoint is scored on the held-out patients, so the held-out fold
never chooses anything. Per-slice Dice of the LV blood pool is pooled over all folds (every one
of the 526 labelled slices is scored once, by a model that never saw its patient), on the
image-centred crop inference uses. The best-epoch figure is also printed: it peeks at the
held-out fold and is optimistic, shown only to say how much early stopping would buy.

Run from the project root (LVNet: about 30 minutes on 2 CPU cores; the U-Net about 4x that)::

    .venv/bin/python benchmarks/sunnybrook_cv.py [--models lvnet,unet] [--folds 0,1,2,3,4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lvseg.config import TrainConfig  # noqa: E402
from lvseg.model.checkpoint import load_model  # noqa: E402
from lvseg.runs.store import RunStore  # noqa: E402
from lvseg.train.data import prepare  # noqa: E402
from lvseg.train.engine import train, validate  # noqa: E402

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sunnybrook-png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REAL_DATA)
    parser.add_argument("--models", default="lvnet,unet")
    parser.add_argument("--folds", default="0,1,2,3,4", help="which of the 5 folds to run")
    parser.add_argument("--epochs", type=int, default=None, help="default: the default recipe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="a run.toml/.json recipe to use instead of the default",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=None, help="keep the runs here")
    parser.add_argument("--json", type=Path, default=None, help="write per-slice results here")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"error: {args.data}: no Sunnybrook PNG data (see ../shared/data/README.md)")
    torch.set_num_threads(args.threads)
    folds = [int(f) for f in args.folds.split(",")]
    runs_root = args.runs or Path(tempfile.mkdtemp(prefix="lvseg-cv-"))
    results: dict[str, dict] = {}
    for name in args.models.split(","):
        per_slice: list[float] = []
        best_epoch_dice: list[float] = []
        seconds = 0.0
        for fold in folds:
            overrides = {
                "seed": args.seed,
                "data": {"path": str(args.data), "folds": 5, "fold": fold},
                "model": {"name": name},
                "optim": {"early_stopping": 0},
                "runtime": {"device": "cpu", "threads": args.threads},
            }
            if args.epochs:
                overrides["optim"]["epochs"] = args.epochs
            base = TrainConfig.load(args.config) if args.config else TrainConfig()
            if base.model.name != name:  # the recipe's model options belong to its model only
                overrides["model"]["options"] = {}
            config = base.merged(overrides)
            out = runs_root / f"{name}-fold{fold}"
            start = time.perf_counter()
            train(config, out)
            seconds += time.perf_counter() - start
            loaded = load_model(out / "checkpoints" / "last.pt")
            parameters = sum(p.numel() for p in loaded.model.parameters())
            data = prepare(config.data, config.seed)
            fold_dice: list[float] = []
            validate(loaded.model, data.val, torch.device("cpu"), config, None, per_slice=fold_dice)
            per_slice.extend(fold_dice)
            with RunStore.open(out, readonly=True) as store:
                best_epoch_dice.append(store.best_checkpoint()["metrics"]["val_dice"])
            print(
                f"{name} fold {fold}: {len(fold_dice)} slices, last-epoch Dice "
                f"{statistics.fmean(fold_dice):.4f}, best-epoch {best_epoch_dice[-1]:.4f}, "
                f"{time.perf_counter() - start:.0f} s",
                flush=True,
            )
        results[name] = {
            "parameters": parameters,
            "per_slice_dice": per_slice,
            "best_epoch_fold_dice": best_epoch_dice,
            "train_seconds": seconds,
        }
    print()
    print(f"5-fold patient-level CV on {args.data} (folds run: {args.folds}), CPU x{args.threads}")
    print()
    print(
        "| model | parameters | slices | per-slice Dice mean | std | median | best-epoch mean "
        "(optimistic) | training time |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        dice = r["per_slice_dice"]
        print(
            f"| {name} | {r['parameters']:,} | {len(dice)} | {statistics.fmean(dice):.4f} | "
            f"{statistics.pstdev(dice):.4f} | {statistics.median(dice):.4f} | "
            f"{statistics.fmean(r['best_epoch_fold_dice']):.4f} | "
            f"{r['train_seconds'] / 60:.1f} min |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
