"""Quality control: does the score say which segmentations failed, on patients it never saw?

Each cross-validation run of ``benchmarks/sunnybrook_cv.py`` (``--runs DIR``, kept as
``DIR/RECIPE/lvnet-foldK``) segments the patients its fold held out, as they are and under some
of ``domain_shift.py``'s controlled shifts (where failures happen), through the one inference
path. Every frame's signals (:mod:`lvseg.segment.quality`) are paired with its true Dice. Then:

- **each signal alone**: Spearman correlation with the Dice, and its AUROC for detecting frames
  with Dice < 0.7 (oriented so that 0.5 is chance and 1 perfect);
- **the fitted score**, cross-fitted by fold: the score for fold k's frames is fitted on the other
  folds' frames only (:func:`lvseg.evaluate.quality.fit_quality_model`), so every figure is
  on patients the score never saw: AUROC for Dice < 0.7, Spearman, mean absolute error of the
  predicted Dice, coverage of its 10-90% interval, and the share of failures flagged.

Run from the project root::

    .venv/bin/python benchmarks/quality_control.py [--runs DIR] [--recipe robust]
        [--folds 0,1,2,3,4] [--shifts "gamma 0.5,noise 8%,..."] [--json results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import mannwhitneyu, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from domain_shift import PNG, SHIFTS, dice  # noqa: E402

from lvseg import layout  # noqa: E402
from lvseg.data import atomic  # noqa: E402
from lvseg.data.load import labelled_dataset  # noqa: E402
from lvseg.data.records import LV  # noqa: E402
from lvseg.evaluate.quality import fit_quality_model  # noqa: E402
from lvseg.evaluate.run import open_scored_model  # noqa: E402
from lvseg.segment.quality import FLAG_BELOW, SIGNALS, frame_signals  # noqa: E402
from lvseg.segment.segmenter import Segmenter  # noqa: E402

DEFAULT_SHIFTS = "gamma 0.5,noise 8%,rotated 90°,heart off-centre,wide field of view,single slice"


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``positive`` (Mann-Whitney U; ties count half)."""
    if positive.all() or not positive.any():
        return float("nan")
    u = mannwhitneyu(score[positive], score[~positive], alternative="two-sided").statistic
    return float(u / (positive.sum() * (~positive).sum()))


def collect(args: argparse.Namespace) -> list[dict]:
    """One row per frame: fold, shift, true Dice and the signals."""
    png = labelled_dataset(PNG)
    rows: list[dict] = []
    for fold in args.folds:
        run = args.runs / args.recipe / f"lvnet-fold{fold}"
        checkpoint = layout.checkpoint_path(run, layout.LAST_CHECKPOINT)
        if not checkpoint.is_file():
            sys.exit(f"error: {checkpoint}: no such run (train it with sunnybrook_cv.py)")
        model = open_scored_model(checkpoint)
        segmenter = Segmenter(model.network, model.plan)
        records = png.subset(list(model.split.val)).records
        for shift in ["none", *args.shifts]:
            start = time.perf_counter()
            results = segmenter.segment(SHIFTS[shift](records))
            for result, signals in zip(results, frame_signals(results), strict=True):
                truth = np.asarray(result.record.masks[LV], bool)
                rows.append(
                    {"fold": fold, "shift": shift, "dice": dice(result.mask, truth), **signals}
                )
            print(
                f"fold {fold} {shift}: {len(results)} frames ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    return rows


def summary(rows: list[dict], predicted: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict:
    truth = np.array([r["dice"] for r in rows])
    failed = truth < FLAG_BELOW
    flagged = predicted < FLAG_BELOW
    return {
        "frames": len(rows),
        "failures": int(failed.sum()),
        "auroc": auroc(-predicted, failed),
        "spearman": float(spearmanr(predicted, truth).statistic),
        "mae": float(np.abs(predicted - truth).mean()),
        "coverage": float(((truth >= low) & (truth <= high)).mean()),
        "failures_flagged": float(flagged[failed].mean()) if failed.any() else float("nan"),
        "good_flagged": float(flagged[~failed].mean()) if (~failed).any() else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("cv"))
    parser.add_argument("--recipe", default="robust")
    parser.add_argument("--folds", default="0,1,2,3,4")
    parser.add_argument("--shifts", default=DEFAULT_SHIFTS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--save",
        type=Path,
        default=None,
        help="fit the score on every frame and write it here (lvseg/segment/quality.json is "
        "the one lvseg ships)",
    )
    args = parser.parse_args()
    if not PNG.is_dir():
        sys.exit(f"error: {PNG}: no Sunnybrook PNG data (see ../shared/data/README.md)")
    args.folds = [int(f) for f in args.folds.split(",")]
    args.shifts = [s for s in args.shifts.split(",") if s]
    unknown = [s for s in args.shifts if s not in SHIFTS]
    if unknown:
        sys.exit(f"error: unknown shift(s) {unknown}; choose from {', '.join(SHIFTS)}")
    torch.set_num_threads(args.threads)
    rows = collect(args)
    truth = np.array([r["dice"] for r in rows])
    failed = truth < FLAG_BELOW
    print(
        f"\nQuality signals: {args.recipe}, folds {args.folds}, {len(rows)} frames "
        f"({int(failed.sum())} with Dice < {FLAG_BELOW}), held-out patients as they are and "
        f"under {len(args.shifts)} shifts\n"
    )
    print("| signal | Spearman with Dice | AUROC for Dice < 0.7 |")
    print("|---|---|---|")
    for name in SIGNALS:
        values = np.array([r[name] for r in rows])
        rho = float(spearmanr(values, truth).statistic)
        area = auroc(values, failed)
        direction = "high" if area >= 0.5 else "low"
        print(f"| {name} | {rho:+.3f} | {max(area, 1 - area):.3f} ({direction} = failed) |")
    # the score, cross-fitted: fold k's frames scored by a model fitted on the other folds
    predicted, low, high = (np.zeros(len(rows)) for _ in range(3))
    folds = np.array([r["fold"] for r in rows])
    for fold in args.folds:
        inside = folds == fold
        signals = [{k: r[k] for k in SIGNALS} for r in rows]
        train = [s for s, i in zip(signals, inside, strict=True) if not i]
        model = fit_quality_model(train, truth[~inside]) if len(args.folds) > 1 else None
        if model is None:  # one fold: fitted and scored on the same frames (optimistic)
            model = fit_quality_model(signals, truth)
        test = [s for s, i in zip(signals, inside, strict=True) if i]
        predicted[inside] = model.predict(test)
        low[inside] = predicted[inside] + model.interval[0]
        high[inside] = predicted[inside] + model.interval[1]
    shifts = np.array([r["shift"] for r in rows])
    groups = {"all frames": np.ones(len(rows), bool), "unshifted": shifts == "none"}
    groups["shifted"] = shifts != "none"
    results = {}
    print(
        "\nThe fitted score, cross-fitted by fold"
        + ("" if len(args.folds) > 1 else " (one fold: fitted on what it scores, optimistic)")
        + "\n"
    )
    print(
        "| frames | n | failures | AUROC | Spearman | MAE | 10-90% coverage | failures flagged "
        "| good flagged |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, where in groups.items():
        if not where.any():
            continue
        subset = [r for r, w in zip(rows, where, strict=True) if w]
        s = summary(subset, predicted[where], low[where], high[where])
        results[name] = s
        print(
            f"| {name} | {s['frames']} | {s['failures']} | {s['auroc']:.3f} | "
            f"{s['spearman']:.3f} | {s['mae']:.3f} | {s['coverage']:.0%} | "
            f"{s['failures_flagged']:.0%} | {s['good_flagged']:.0%} |"
        )
    print(f"\nmean true Dice {statistics.fmean(truth):.4f}, predicted {predicted.mean():.4f}")
    if args.save:
        source = (
            f"recipe {args.recipe}, {len(args.folds)}-fold patient-level CV on the Sunnybrook "
            f"PNGs, held-out frames as they are and under {', '.join(args.shifts)}"
        )
        signals = [{k: r[k] for k in SIGNALS} for r in rows]
        model = fit_quality_model(signals, truth)
        model = dataclasses.replace(model, source=source)
        text = json.dumps(model.to_dict(), indent=1) + "\n"
        atomic.write_text(args.save, text)
        print(f"\nscore fitted on all {len(rows)} frames written to {args.save}")
    if args.json:
        payload = {"rows": rows, "summary": results, "predicted": predicted.tolist()}
        args.json.write_text(json.dumps(payload) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
