"""Phantom -> real, through lvseg itself: LVNet trained on the phantom only, scored on real MRI.

Each step is the library call behind an lvseg command, with lvseg's defaults: ``lvseg data
phantom`` writes ``--patients`` synthetic patients; ``lvseg train`` trains the ``--recipe``
(default: lvseg's default recipe, LVNet) on them, its validation patients phantom ones too;
``lvseg evaluate`` scores the run's chosen checkpoint (best phantom validation Dice: nothing real
chooses anything) on the phantom's held-out patients, on the 526 labelled slices of the 30 real
Sunnybrook PNG patients and on the 5 Sunnybrook DICOM patients (in mm, read from the DICOM
headers). No real image is seen before the scoring, so the real-data figures measure how much
of real anatomy and contrast the phantom teaches.

Run from the project root (the default phantom of 8 patients and 50 epochs: about 5 minutes on
2 CPU cores; evaluation about 1 minute)::

    .venv/bin/python -m benchmarks.phantom_to_real [--patients 8] [--epochs N] [--contrast random]
        [--recipe default|NAME|FILE] [--runs DIR [--reuse]] [--set-aside SC-N-06]
        [--json results.json]

The phantom and the run are kept in ``DIR`` (default ``phantom-to-real/``) as
``phantom-Np-seedS[-random]`` and ``RECIPE-Np-Ee[-random]``; ``--reuse`` scores a finished run
again without training it (``lvseg train --init DIR/RUN`` fine-tunes one on real data; see
``benchmarks/learning_curve.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from benchmarks.sunnybrook_cv import finished, recipe_config, recipe_name
from lvseg import layout
from lvseg.data.phantom import write_phantom
from lvseg.evaluate import summary as summaries
from lvseg.evaluate.results import Evaluation
from lvseg.evaluate.run import evaluate
from lvseg.jsonsafe import json_safe
from lvseg.runs.checkpoint import resolve_model_path
from lvseg.train.engine import train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL = {
    "Sunnybrook PNG": SHARED / "sunnybrook-png",
    "Sunnybrook DICOM": SHARED / "sunnybrook-dicom",
}
GROUPS = ("HF-I", "HF-NI", "HYP", "N")


def phantom_run(args: argparse.Namespace) -> tuple[Path, Path, float]:
    """The phantom, the run trained on it (trained here unless reused) and its training time."""
    label = "" if args.contrast == "ssfp" else f"-{args.contrast}"
    phantom = args.runs / f"phantom-{args.patients}p-seed{args.seed}{label}"
    if not (phantom / "phantom.json").is_file():
        write_phantom(
            phantom, patients=args.patients, seed=args.seed, overwrite=True, contrast=args.contrast
        )
    base = recipe_config(args.recipe)
    overrides: dict = {
        "seed": args.seed,
        "data": {"path": str(phantom)},
        "runtime": {"device": "cpu", "threads": args.threads},
    }
    if args.epochs:
        overrides["optim"] = {"epochs": args.epochs}
    if args.options:
        overrides["model"] = {"options": json.loads(args.options)}
    config = base.merged(overrides)
    run = args.runs / f"{recipe_name(args.recipe)}-{args.patients}p-{config.optim.epochs}e{label}"
    started = time.perf_counter()
    if not (args.reuse and finished(run, config.optim.epochs)):
        resume = args.reuse and layout.looks_like_run(run)
        train(config, run, resume=resume, overwrite=run.exists() and not resume)
    return phantom, run, time.perf_counter() - started


def groups_of(found: Evaluation) -> dict[str, float]:
    """Mean Dice per Sunnybrook pathology group, where the data name them."""
    by_group = found.breakdowns.get("group", {})
    return {g: by_group[g].dice_mean for g in GROUPS if g in by_group}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("phantom-to-real"))
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=0, help="default: the recipe's")
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--options", default="", help='model options as JSON, e.g. {"width": 24}')
    parser.add_argument(
        "--contrast",
        choices=("ssfp", "random"),
        default="ssfp",
        help="the phantom's tissue contrast: random is domain randomisation (as SynthSeg)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="score a finished run again")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--set-aside",
        default="",
        help="comma-separated Sunnybrook patients to score a second time without "
        "(e.g. SC-N-06, whose masks benchmarks/label_alignment.py finds off the blood pool)",
    )
    args = parser.parse_args()
    missing = [str(path) for path in REAL.values() if not path.is_dir()]
    if missing:
        sys.exit(f"error: no real data at {', '.join(missing)} (see ../shared/data/README.md)")
    torch.set_num_threads(args.threads)
    phantom, run, seconds = phantom_run(args)
    checkpoint = resolve_model_path(run)
    results = {"run": str(run), "checkpoint": str(checkpoint), "train_seconds": seconds}
    scored = {"phantom (held-out patients)": evaluate(checkpoint, phantom, write=False)}
    for name, path in REAL.items():
        scored[name] = evaluate(checkpoint, path, split="all", write=False)
    aside = {p.strip() for p in args.set_aside.split(",") if p.strip()}
    if aside:
        found = scored["Sunnybrook PNG"]
        rows = [r for r in found.rows if r["patient_id"] not in aside]
        scored[f"Sunnybrook PNG without {', '.join(sorted(aside))}"] = dataclasses.replace(
            found, summary=summaries.summarise(rows), breakdowns=summaries.breakdowns(rows)
        )
    print(
        f"\nLVNet trained on {args.patients} phantom patients only ({args.contrast} contrast, "
        f"{recipe_name(args.recipe)} "
        f"recipe, run {run}, {seconds:.0f} s), checkpoint {checkpoint.name}\n"
    )
    print("| data | patients | slices | Dice mean | median | " + " | ".join(GROUPS) + " | HD95 |")
    print("|---|---|---|---|---|" + "---|" * len(GROUPS) + "---|")
    for name, found in scored.items():
        summary = found.summary
        groups = groups_of(found)
        print(
            f"| {name} | {summary.patients} | {summary.slices} | "
            f"{summary.dice_mean:.3f} | {summary.dice_median:.3f} | "
            + " | ".join(f"{groups[g]:.3f}" if g in groups else "-" for g in GROUPS)
            + f" | {summary.hd95_mm_mean:.1f} {found.data.distance_units} |"
        )
        results[name] = {"summary": json_safe(summary), "groups": groups}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
