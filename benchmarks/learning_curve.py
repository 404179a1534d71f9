"""Learning curve: LVNet from scratch against LVNet pre-trained on the phantom, by real patients.

For each count k of ``--counts`` the engine trains LVNet twice on k real Sunnybrook PNG patients
of one cross-validation fold's training side (``data.train_patients``: a stratified, seeded
choice; each smaller set is part of each larger one), with the same recipe and epochs: once from
scratch, once from the weights of ``--init`` (``lvseg train --init``: a run trained on the
phantom only, e.g. by ``benchmarks/phantom_to_real.py``). Both are scored by ``lvseg
evaluate``'s code on the fold's 6 held-out patients, the same for every k, with the last
checkpoint (nothing held out chooses anything). This is the transfer-learning comparison the
paper makes with ImageNet, with the pre-training that can be had here: a synthetic heart.

Run from the project root (the default recipe, 50 epochs: about 25 minutes an arm and fold for
counts 2,4,8,16,24 on 2 CPU cores, as an epoch's time grows with k)::

    .venv/bin/python -m benchmarks.learning_curve [--init phantom-to-real/default-40p-50e]
        [--counts 2,4,8,16,24] [--folds 0,1] [--epochs N] [--recipe default]
        [--runs DIR [--reuse]] [--json results.json]

With several folds it prints each fold's table, then the mean over folds (each fold's held-out
patients are other patients, so the folds are independent replicates of the comparison). Runs
are kept in ``DIR/ARM-kK-foldF`` (default ``learning-curve/``); ``--reuse`` scores finished ones
again and resumes those stopped part-way, and refuses a pre-trained run that started from
another ``--init`` than the one asked (use another ``--runs``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from benchmarks.sunnybrook_cv import REAL_DATA, finished, recipe_config
from lvseg import layout
from lvseg.config import TrainConfig
from lvseg.evaluate import summary
from lvseg.evaluate.run import evaluate
from lvseg.jsonsafe import json_safe
from lvseg.runs.checkpoint import load_checkpoint, resolve_model_path
from lvseg.train.engine import train

ARMS = ("scratch", "phantom")


def run_arm(args: argparse.Namespace, arm: str, count: int, fold: int) -> tuple[dict, float | None]:
    """Train (or reuse) one arm at one count and fold; its held-out scores and training seconds."""
    overrides: dict = {
        "seed": args.seed,
        "data": {"path": str(REAL_DATA), "folds": 5, "fold": fold, "train_patients": count},
        "optim": {"early_stopping": 0},
        "runtime": {"device": "cpu", "threads": args.threads},
    }
    if args.epochs:
        overrides["optim"]["epochs"] = args.epochs
    if arm == "phantom":
        overrides["model"] = {"init": str(args.init)}
    config = recipe_config(args.recipe).merged(overrides)
    out = args.runs / f"{arm}-k{count}-fold{fold}"
    if args.reuse and arm == "phantom" and layout.looks_like_run(out):
        started_from = TrainConfig.load(out / "config.json").model.init
        if started_from is None or Path(started_from).resolve() != args.init.resolve():
            sys.exit(
                f"error: {out}: initialised from {started_from}, not {config.model.init}; "
                "give another --runs"
            )
    seconds = None
    if not (args.reuse and finished(out, config.optim.epochs)):
        started = time.perf_counter()
        resume = args.reuse and layout.looks_like_run(out)
        train(config, out, resume=resume, overwrite=out.exists() and not resume)
        seconds = time.perf_counter() - started
    last = layout.checkpoint_path(out, layout.LAST_CHECKPOINT)
    found = evaluate(last, REAL_DATA, write=False)
    # the fold's validation patients only: the same for every k (the real training patients
    # a smaller k leaves out are held out too, so evaluate would score them as well)
    val = set(load_checkpoint(last).split.val)
    rows = [row for row in found.rows if row["patient_id"] in val]
    return json_safe(summary.summarise(rows)), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="the phantom run to start from (default: phantom_to_real.py's default run, "
        "trained there first if it is not)",
    )
    parser.add_argument("--counts", default="2,4,8,16,24")
    parser.add_argument("--folds", default="0", help="CV folds, e.g. 0,1")
    parser.add_argument("--epochs", type=int, default=0, help="default: the recipe's")
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--runs", type=Path, default=Path("learning-curve"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not REAL_DATA.is_dir():
        sys.exit(f"error: {REAL_DATA}: no Sunnybrook PNG data (see ../shared/data/README.md)")
    torch.set_num_threads(args.threads)
    if args.init is None:
        from phantom_to_real import phantom_run

        defaults = argparse.Namespace(
            runs=Path("phantom-to-real"), patients=8, seed=args.seed, recipe=args.recipe,
            epochs=0, options="", contrast="ssfp", threads=args.threads, reuse=True,
        )  # fmt: skip
        _, args.init, _ = phantom_run(defaults)
    resolve_model_path(args.init)  # a bad --init fails before hours of training
    counts = [int(c) for c in args.counts.split(",")]
    folds = [int(f) for f in args.folds.split(",")]
    results: dict = {}
    for fold in folds:
        for count in counts:
            for arm in ARMS:
                scores, seconds = run_arm(args, arm, count, fold)
                results.setdefault(fold, {}).setdefault(count, {})[arm] = {
                    "summary": scores,
                    "seconds": seconds,
                }
                print(
                    f"fold {fold} k={count} {arm}: held-out Dice {scores['dice_mean']:.4f} "
                    f"({scores['slices']} slices), "
                    + ("reused" if seconds is None else f"{seconds:.0f} s"),
                    flush=True,
                )
    dice = {
        (fold, count, arm): results[fold][count][arm]["summary"]["dice_mean"]
        for fold in folds
        for count in counts
        for arm in ARMS
    }
    tables = [(f"fold {fold} (its 6 held-out patients)", [fold]) for fold in folds]
    if len(folds) > 1:
        tables.append((f"mean over folds {args.folds}", folds))
    print(f"\nLVNet on k real patients, {args.recipe} recipe; phantom: started from {args.init}")
    for title, chosen in tables:
        mean = {
            (count, arm): sum(dice[(f, count, arm)] for f in chosen) / len(chosen)
            for count in counts
            for arm in ARMS
        }
        print(f"\n{title}\n")
        print("| real training patients | from scratch | phantom pre-trained | difference |")
        print("|---|---|---|---|")
        for count in counts:
            scratch, tuned = mean[(count, "scratch")], mean[(count, "phantom")]
            print(f"| {count} | {scratch:.4f} | {tuned:.4f} | {tuned - scratch:+.4f} |")
        most = max(counts)
        target = mean[(most, "scratch")]
        reached = [c for c in counts if mean[(c, "phantom")] >= target]
        print(
            f"\nFrom scratch with {most} patients: Dice {target:.4f}; pre-trained on the phantom, "
            + (f"reached with {min(reached)}" if reached else "not reached at any count")
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
