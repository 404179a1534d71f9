"""Accuracy on real data: 5-fold patient-level cross-validation on the Sunnybrook PNGs.

The 30 patients of ``../shared/data/sunnybrook-png`` are dealt into 5 folds stratified by
pathology group (``lvseg.data.splits.kfold``). For each fold and model the engine trains on the
other 24 patients with the same recipe (the default config, no early stopping, a fixed number of
epochs) and the **last** checkpoint is scored on the held-out patients by ``lvseg evaluate``'s
code (:func:`lvseg.evaluate.run.evaluate`: the one inference path, predictions mapped back onto
the source grid, every measure), so the held-out fold never chooses anything. Each fold is
scored with every crop of ``--crops``: ``located`` (the heart located in each patient's stack,
what ``lvseg predict`` does, the default of ``lvseg evaluate``) and ``centre`` (the image
centre, what evaluate did before the one inference path). The rows of all folds are pooled: every
one of the 526 labelled slices is scored once, by a model that never saw its patient. The
best-epoch figure is also printed: it peeks at the held-out fold and is optimistic, shown only to
say how much early stopping would buy.

The PNGs store no pixel spacing; lvseg's folder reader gives Sunnybrook patients 1.33 mm (their
scans are 1.29-1.37 mm), so distances are in mm. Runs trained before that (the ``baseline``
runs) keep the pixel grid, which is the same here.

**Recipes.** ``--recipes`` names training recipes: ``default`` (lvseg's defaults) or the name of
a file ``benchmarks/recipes/NAME.toml`` (or a path to a TOML/JSON config); each is a config, not
a code fork, and runs through the same folds and seed. ``baseline`` is the recipe lvseg trained
with before the robustness work, ``robust`` the one that became the default. A crop named
``located+tta`` scores with test-time augmentation too (the 8 flips and quarter turns), and
``+all`` keeps every connected region of a mask, not only the largest (``located+all``).

Run from the project root (LVNet: about 13 minutes a fold on 2 CPU cores; the U-Net about 30)::

    .venv/bin/python -m benchmarks.sunnybrook_cv [--recipes default,baseline,robust]
        [--models lvnet,unet,dli-fcn] [--folds 0,1,2,3,4]
        [--crops located,centre,located+tta,located+all]
        [--runs DIR [--reuse]] [--json results.json]

Runs are kept in ``DIR/RECIPE/MODEL-foldK``. ``--reuse`` scores runs already finished there
instead of training them again, so the table can be remade (or extended with new measures)
without hours of training, and resumes runs stopped part-way.
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

from lvseg import layout
from lvseg.config import TrainConfig
from lvseg.evaluate import clinical, summary
from lvseg.evaluate.run import evaluate
from lvseg.jsonsafe import json_safe
from lvseg.runs.store import RunStore
from lvseg.train.engine import train

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sunnybrook-png"
RECIPES = Path(__file__).resolve().parent / "recipes"
MEASURES = (
    ("Dice", "dice"), ("IoU", "iou"), ("precision", "precision"), ("recall", "recall"),
    ("pixel accuracy", "pixel_accuracy"), ("all-background accuracy", "background_accuracy"),
    ("HD95", "hd95"), ("ASSD", "assd"), ("APD", "apd"),
)  # fmt: skip


def finished(run: Path, epochs: int) -> bool:
    """Whether ``run`` holds a last checkpoint of a run that trained all ``epochs``."""
    if not layout.checkpoint_path(run, layout.LAST_CHECKPOINT).is_file():
        return False
    with RunStore.open(run, readonly=True) as store:
        return store.status == "finished" and len(store.epochs()) >= epochs


def recipe_config(recipe: str) -> TrainConfig:
    """The config of a recipe: ``default``, a name in ``benchmarks/recipes``, or a file."""
    if recipe == "default":
        return TrainConfig()
    path = RECIPES / f"{recipe}.toml"
    return TrainConfig.load(path if path.is_file() else Path(recipe))


def recipe_name(recipe: str) -> str:
    return Path(recipe).stem if recipe.endswith((".toml", ".json")) else recipe


def config_for(args: argparse.Namespace, recipe: str, name: str, fold: int) -> TrainConfig:
    overrides = {
        "seed": args.seed,
        "data": {"path": str(args.data), "folds": 5, "fold": fold},
        "model": {"name": name},
        "optim": {"early_stopping": 0},
        "runtime": {"device": "cpu", "threads": args.threads},
    }
    if args.epochs:
        overrides["optim"]["epochs"] = args.epochs
    base = recipe_config(recipe)
    if base.model.name != name:  # the recipe's model options belong to its model only
        overrides["model"]["options"] = {}
    return base.merged(overrides)


def mean_std(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows if r[key] is not None]
    if not values:
        return "-"
    return f"{statistics.fmean(values):.4f} ± {statistics.pstdev(values):.4f}"


def cross_validate(
    args: argparse.Namespace,
    recipe: str,
    name: str,
    folds: list[int],
    crops: list[str],
    runs_root: Path,
) -> dict[str, dict]:
    """Train (or reuse) one recipe's model on every fold and score it with every crop."""
    scored = {crop: {"rows": [], "volumes": [], "fold_dice": []} for crop in crops}
    best_epoch_dice: list[float] = []
    seconds = 0.0
    trained = 0
    parameters = 0
    label = recipe_name(recipe)
    for fold in folds:
        config = config_for(args, recipe, name, fold)
        out = runs_root / label / f"{name}-fold{fold}"
        start = time.perf_counter()
        reused = args.reuse and finished(out, config.optim.epochs)
        if not reused:
            # A run stopped part-way (a session's end) continues where it stopped.
            resume = layout.looks_like_run(out) and args.reuse
            train(config, out, resume=resume, overwrite=out.exists() and not resume)
            seconds += time.perf_counter() - start
            trained += 1
        with RunStore.open(out, readonly=True) as store:
            best_epoch_dice.append(store.best_checkpoint()["metrics"]["val_dice"])
        last = layout.checkpoint_path(out, layout.LAST_CHECKPOINT)
        for crop in crops:
            placement, *flags = crop.split("+")
            found = evaluate(
                last,
                args.data,
                write=False,
                crop=placement,
                tta="tta" in flags,
                largest_component="all" not in flags,
            )
            parameters = found.model.parameters
            units = found.data.distance_units
            scored[crop]["rows"] += [{**row, "fold": fold} for row in found.rows]
            scored[crop]["volumes"] += (
                [] if found.clinical is None else json_safe(found.clinical.patients)
            )
            scored[crop]["fold_dice"].append(found.summary.dice_mean)
            print(
                f"{label} {name} fold {fold}, {crop} crop: {found.summary.slices} slices, "
                f"last-epoch Dice {found.summary.dice_mean:.4f}, best-epoch "
                f"{best_epoch_dice[-1]:.4f}, "
                + ("reused" if reused else f"{time.perf_counter() - start:.0f} s"),
                flush=True,
            )
    results = {}
    for crop in crops:
        rows = scored[crop]["rows"]
        results[f"{label} {name} ({crop})"] = {
            "recipe": label,
            "units": units,
            "parameters": parameters,
            "crop": crop,
            "folds": folds,
            "fold_dice": scored[crop]["fold_dice"],
            "per_slice_dice": [r["dice"] for r in rows],
            "rows": rows,
            "summary": json_safe(summary.summarise(rows)),
            "clinical_patients": scored[crop]["volumes"],
            "best_epoch_fold_dice": best_epoch_dice,
            "train_seconds": seconds,
            "folds_trained": trained,
        }
    return results


def subset_mean(rows: list[dict], key: str, value: str) -> str:
    values = [r["dice"] for r in rows if r.get(key) == value]
    return f"{statistics.fmean(values):.4f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REAL_DATA)
    parser.add_argument("--models", default="lvnet", help="comma-separated: lvnet,unet,dli-fcn")
    parser.add_argument("--folds", default="0,1,2,3,4", help="which of the 5 folds to run")
    parser.add_argument("--crops", default="located,centre", help="how evaluate places the crop")
    parser.add_argument("--epochs", type=int, default=None, help="default: the default recipe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--recipes",
        default="default",
        help="comma-separated: default, a name in benchmarks/recipes, or a config file",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=None, help="keep the runs here")
    parser.add_argument("--reuse", action="store_true", help="score finished runs in --runs")
    parser.add_argument("--json", type=Path, default=None, help="write per-slice results here")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"error: {args.data}: no Sunnybrook PNG data (see ../shared/data/README.md)")
    if args.reuse and args.runs is None:
        sys.exit("error: --reuse needs --runs (the folder holding the finished runs)")
    torch.set_num_threads(args.threads)
    folds = [int(f) for f in args.folds.split(",")]
    crops = args.crops.split(",")
    runs_root = args.runs or Path(tempfile.mkdtemp(prefix="lvseg-cv-"))
    results: dict[str, dict] = {}
    for recipe in args.recipes.split(","):
        for name in args.models.split(","):
            results.update(cross_validate(args, recipe, name, folds, crops, runs_root))
    print()
    print(f"5-fold patient-level CV on {args.data} (folds run: {args.folds}), CPU x{args.threads}")
    print()
    units = next(iter(results.values()))["units"]
    print(
        "| recipe, model (crop) | parameters | slices | per-slice Dice mean | std | median | "
        f"apical | ES | HD95 ({units}) | fold means | best-epoch mean (optimistic) | "
        "CPU min per fold |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        dice = r["per_slice_dice"]
        hd95 = [row["hd95"] for row in r["rows"] if row["hd95"] is not None]
        per_fold = r["train_seconds"] / 60 / r["folds_trained"] if r["folds_trained"] else None
        print(
            f"| {name} | {r['parameters']:,} | {len(dice)} | {statistics.fmean(dice):.4f} | "
            f"{statistics.pstdev(dice):.4f} | {statistics.median(dice):.4f} | "
            f"{subset_mean(r['rows'], 'position', 'apical')} | "
            f"{subset_mean(r['rows'], 'phase', 'ES')} | "
            + (f"{statistics.fmean(hd95):.2f}" if hd95 else "-")
            + " | "
            + f"{' / '.join(f'{d:.3f}' for d in r['fold_dice'])} | "
            f"{statistics.fmean(r['best_epoch_fold_dice']):.4f} | "
            + (f"{per_fold:.1f}" if per_fold else "reused")
            + " |"
        )
    print()
    print(f"Every measure, per slice, pooled over the folds (mean ± std; distances in {units}):")
    print()
    print("| measure | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for title, key in MEASURES:
        cells = [mean_std(r["rows"], key) for r in results.values()]
        print(f"| {title} | " + " | ".join(cells) + " |")
    for title, key in (("detection rate", "detection_rate"),):
        cells = [f"{r['summary'][key]:.4f}" for r in results.values()]
        print(f"| {title} | " + " | ".join(cells) + " |")
    cells = [str(r["summary"]["false_positive_slices"]) for r in results.values()]
    print("| false-positive slices | " + " | ".join(cells) + " |")
    for part in ("position", "phase"):
        for key, stats in summary.breakdowns(next(iter(results.values()))["rows"])[part].items():
            cells = [
                mean_std(
                    [row for row in r["rows"] if row.get(part) == key],
                    "dice",
                )
                for r in results.values()
            ]
            print(f"| Dice, {part} {key} ({stats.slices} slices) | " + " | ".join(cells) + " |")
    cells = []
    for r in results.values():
        pairs = [(p["predicted"]["ef"], p["reference"]["ef"]) for p in r["clinical_patients"]]
        pairs = [pair for pair in pairs if None not in pair]
        found = clinical.agreement(*zip(*pairs, strict=True)) if pairs else None
        cells.append(
            "-"
            if found is None
            else f"{100 * found.bias:+.1f} ({100 * found.loa_low:+.1f} to "
            f"{100 * found.loa_high:+.1f}), r {found.pearson_r:.3f}, n {found.n}"
        )
    print("| EF bias in points (limits of agreement), r | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
