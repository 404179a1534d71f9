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

    .venv/bin/python -m benchmarks.quality_control [--runs DIR] [--recipe robust]
        [--folds 0,1,2,3,4] [--shifts "gamma 0.5,noise 8%,..."] [--json results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from benchmarks.domain_shift import PNG, SHIFTS, dice
from lvseg import (
    atomic,
    layout,
)
from lvseg.data.load import labelled_dataset
from lvseg.data.records import LV, SliceRecord
from lvseg.evaluate.quality import assess, fit_quality_model
from lvseg.evaluate.run import open_scored_model
from lvseg.evaluate.stacks import clinical_section
from lvseg.jsonsafe import json_safe
from lvseg.segment.quality import (
    EF_REVIEW_SHARE,
    FLAG_BELOW,
    SCORED,
    SIGNALS,
    TTA_SCORED,
    Judgement,
    frame_signals,
    judge,
    share_at_risk,
)
from lvseg.segment.segmenter import Segmenter

DEFAULT_SHIFTS = "gamma 0.5,noise 8%,rotated 90°,heart off-centre,wide field of view,single slice"


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``positive`` (NaN with one class only)."""
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, score))


@dataclass
class Group:
    """The frames one fold's model segmented under one shift: rows ``start`` to ``stop``."""

    fold: int
    shift: str
    start: int
    stop: int
    records: list[SliceRecord]
    """Light copies (no pixels) for the stack rules of :func:`judge`."""
    studies: list[dict]
    """Per patient: the EF error in points and the patient's rows."""


def light(record: SliceRecord) -> SliceRecord:
    """The record without its pixels (a zero-strided view keeps the shape stacks() reads)."""
    return record.replace(image=np.broadcast_to(np.float32(0), record.image.shape), masks={})


def collect(args: argparse.Namespace) -> tuple[list[dict], list[Group]]:
    """One row per frame (fold, shift, true Dice, the signals; with ``--tta`` the same again
    under ``row["tta"]`` for the frame segmented with test-time augmentation) and the groups
    they came in."""
    png = labelled_dataset(PNG)
    rows: list[dict] = []
    groups: list[Group] = []
    for fold in args.folds:
        run = args.runs / args.recipe / f"lvnet-fold{fold}"
        checkpoint = layout.checkpoint_path(run, layout.LAST_CHECKPOINT)
        if not checkpoint.is_file():
            sys.exit(f"error: {checkpoint}: no such run (train it with sunnybrook_cv.py)")
        model = open_scored_model(checkpoint)
        segmenters = {"plain": Segmenter(model.network, model.plan)}
        if args.tta:
            segmenters["tta"] = Segmenter(model.network, model.plan, tta=True)
        records = png.subset(list(model.split.val)).records
        for shift in ["none", *args.shifts]:
            start = time.perf_counter()
            shifted = SHIFTS[shift](records)
            first = len(rows)
            errors: dict[str, dict[str, float]] = {}
            for mode, segmenter in segmenters.items():
                results = segmenter.segment(shifted)
                for k, (result, signals) in enumerate(
                    zip(results, frame_signals(results), strict=True)
                ):
                    truth = np.asarray(result.record.masks[LV], bool)
                    found = {"dice": dice(result.mask, truth), **signals}
                    if mode == "plain":
                        rows.append(
                            {
                                "fold": fold,
                                "shift": shift,
                                "patient_id": result.record.patient_id,
                                "phase_index": result.record.phase_index,
                                **found,
                            }
                        )
                    else:
                        rows[first + k][mode] = found
                masks = {r.record.key: r.mask for r in results}
                clinical = clinical_section(shifted, masks)
                for patient in [] if clinical is None else clinical.patients:
                    predicted, reference = patient.predicted.ef, patient.reference.ef
                    if predicted is not None and reference is not None:
                        errors.setdefault(patient.patient_id, {})[mode] = 100 * abs(
                            predicted - reference
                        )
            studies = []
            for patient, error in errors.items():
                members = [i for i in range(first, len(rows)) if rows[i]["patient_id"] == patient]
                studies.append({"error": error, "rows": members})
            groups.append(
                Group(fold, shift, first, len(rows), [light(r) for r in shifted], studies)
            )
            print(
                f"fold {fold} {shift}: {len(shifted)} frames, {' and '.join(segmenters)} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    return rows, groups


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def mode_rows(rows: list[dict], mode: str) -> list[dict]:
    """The frames as segmented one way: plain, or with test-time augmentation."""
    return rows if mode == "plain" else [{**r, **r[mode]} for r in rows]


def cross_fit(
    frames: list[dict], groups: list[Group], folds: list[int], use: tuple[str, ...], tta: bool
) -> Judgement:
    """Every frame judged (as evaluate and predict judge them) by a score fitted on the other
    folds' frames only."""
    signals = [{k: r[k] for k in SIGNALS} for r in frames]
    truth = np.array([r["dice"] for r in frames])
    nan = np.full(len(frames), np.nan)
    found = Judgement(nan.copy(), np.zeros(len(frames), bool), {}, FLAG_BELOW, nan.copy())
    found.dice_low, found.dice_high = nan.copy(), nan.copy()
    fold_of = np.array([r["fold"] for r in frames])
    for fold in folds:
        others = fold_of != fold
        if len(folds) == 1:  # one fold: fitted on what it scores (optimistic)
            others = np.ones(len(frames), bool)
        chosen = [s for s, o in zip(signals, others, strict=True) if o]
        scorer = fit_quality_model(chosen, truth[others], use=use, tta=tta)
        for group in (g for g in groups if g.fold == fold):
            part = slice(group.start, group.stop)
            judged = judge(scorer, group.records, signals[part])
            for name in ("predicted_dice", "flagged", "failure_score", "dice_low", "dice_high"):
                getattr(found, name)[part] = getattr(judged, name)
    return found


def analyse(mode: str, rows: list[dict], groups: list[Group], args: argparse.Namespace) -> dict:
    """Print one way of segmenting's tables; return its figures."""
    frames = mode_rows(rows, mode)
    tta = mode == "tta"
    use = TTA_SCORED if tta else SCORED
    truth = np.array([r["dice"] for r in frames])
    failed = truth < FLAG_BELOW
    segmented = np.array([r["area"] > 0 for r in frames])
    folds = np.array([r["fold"] for r in frames])
    how = "with test-time augmentation (8 views)" if tta else "plain (no test-time augmentation)"
    print(
        f"\n## Segmented {how}: {args.recipe}, folds {args.folds}, {len(frames)} frames "
        f"({int(failed.sum())} with Dice < {FLAG_BELOW}), held-out patients as they are and "
        f"under {len(args.shifts)} shifts\n"
    )
    print("| signal | Spearman with Dice | AUROC for Dice < 0.7 |")
    print("|---|---|---|")
    for name in SIGNALS:
        values = np.array([r[name] for r in frames])
        if np.ptp(values) == 0:
            print(f"| {name} | - | - (constant) |")
            continue
        rho = float(spearmanr(values, truth).statistic)
        area = auroc(values, failed)
        direction = "high" if area >= 0.5 else "low"
        print(f"| {name} | {rho:+.3f} | {max(area, 1 - area):.3f} ({direction} = failed) |")
    # which signals to weigh: the cross-fitted score's failure AUROC on the segmented frames
    # (no rules), per fold then averaged, for the shipped choice and each signal added to it
    candidates = [use, *[(*use, name) for name in SIGNALS if name not in use]]
    candidates += [tuple(n for n in SIGNALS if n != "disagreement" or tta)]
    candidates += [("uncertainty",)] + ([SCORED, ("disagreement",)] if tta else [])
    print("\n| signals weighed | failure AUROC per fold, segmented frames (mean) |")
    print("|---|---|")
    choice = {}
    for names in candidates:
        failure = cross_fit(frames, groups, args.folds, names, tta).failure_score
        found = [
            auroc(failure[(folds == f) & segmented], failed[(folds == f) & segmented])
            for f in args.folds
        ]
        key = ", ".join(names)
        choice[key] = statistics.fmean(found)
        label = key if len(names) < len(SIGNALS) - 1 else "all"
        print(f"| {label} | {' / '.join(f'{v:.3f}' for v in found)} ({choice[key]:.3f}) |")
    judged = cross_fit(frames, groups, args.folds, use, tta)
    predicted, failure, flagged = judged.predicted_dice, judged.failure_score, judged.flagged
    low, high = judged.dice_low, judged.dice_high
    shifts = np.array([r["shift"] for r in frames])
    subsets = {"all frames": np.ones(len(frames), bool), "unshifted": shifts == "none"}
    subsets["shifted"] = shifts != "none"
    results: dict = {"signals_weighed": list(use), "candidates": choice}
    print(
        "\nThe score (signals weighed: "
        + ", ".join(use)
        + "), cross-fitted by fold"
        + ("" if len(args.folds) > 1 else " (one fold: fitted on what it scores, optimistic)")
        + ", judged as `lvseg evaluate` and `predict` judge. Frames with no LV segmented are "
        "not scored: one between segmented slices of its phase is flagged (a hole), the rest "
        "rank as the safest in AUROC (all frames); AUROC (segmented) leaves them out. Per fold: "
        "each fold's frames by the score fitted on the other folds, then the mean over folds; "
        "pooled: all folds' frames ranked together (five scores, so offsets between them count "
        "too)\n"
    )
    print(
        "| frames | n | failures (with no LV segmented) | AUROC, all frames: per fold (pooled) "
        "| AUROC, segmented: per fold (pooled) | Spearman per fold (pooled) | MAE | interval "
        "coverage | failures flagged | good flagged |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, where in subsets.items():
        if not where.any():
            continue
        found = {}
        for fold in [None, *args.folds]:
            part = where if fold is None else where & (folds == fold)
            judged = Judgement(
                predicted[part], flagged[part], {}, FLAG_BELOW, failure[part], low[part], high[part]
            )
            found[fold] = json_safe(assess(judged, truth[part]))
        pooled = found[None]
        keys = ("auroc", "auroc_segmented", "spearman", "interval_coverage")
        per_fold = {
            key: statistics.fmean(found[f][key] for f in args.folds if found[f][key] is not None)
            for key in keys
        }
        results[name] = {"pooled": pooled, "per_fold_mean": per_fold}
        print(
            f"| {name} | {pooled['frames']} | {pooled['failures']} "
            f"({pooled['empty_failures']}, {pooled['empty_failures_flagged']} flagged) | "
            f"{_f(per_fold['auroc'])} ({_f(pooled['auroc'])}) | "
            f"{_f(per_fold['auroc_segmented'])} ({_f(pooled['auroc_segmented'])}) | "
            f"{_f(per_fold['spearman'])} ({_f(pooled['spearman'])}) | {_f(pooled['mae'])} | "
            f"{_p(per_fold['interval_coverage'])} | {_p(pooled['failures_flagged'])} | "
            f"{_p(pooled['good_flagged'])} |"
        )
    # studies: an EF needs a stack, which the single-slice shift takes away
    studies = [s for g in groups if g.shift != "single slice" for s in g.studies]
    studies = [s for s in studies if mode in s["error"]]
    for study in studies:
        members = study["rows"]
        shares = share_at_risk(
            flagged[members],
            [frames[i]["phase_index"] for i in members],
            [frames[i]["area"] for i in members],
        )
        study["share"] = max(shares.values())
    print(
        f"\nStudies (patients x shifts but single slice, which leaves no stack) with an EF from "
        f">= 3 slices at ED and ES: {len(studies)}. An EF is for review when flagged frames hold "
        f"more than a share of the ED or ES area (lvseg's: {EF_REVIEW_SHARE:.0%}); the EFs for "
        "review at each share:\n"
    )
    print("| share | EF off by > 10 points | off by > 5 | within 5 points |")
    print("|---|---|---|---|")
    for share in sorted({0.0, 0.05, 0.1, 0.2, EF_REVIEW_SHARE}):
        counts = {}
        for name, wrong in (
            ("ef_error_over_10", lambda e: e > 10),
            ("ef_error_over_5", lambda e: e > 5),
            ("ef_within_5", lambda e: e <= 5),
        ):
            members = [s for s in studies if wrong(s["error"][mode])]
            counts[name] = {
                "studies": len(members),
                "review": sum(s["share"] > share for s in members),
            }
        mark = " (lvseg)" if share == EF_REVIEW_SHARE else ""
        print(
            f"| {share:.0%}{mark} | "
            + " | ".join(f"{c['review']} of {c['studies']}" for c in counts.values())
            + " |"
        )
        if share == EF_REVIEW_SHARE:
            results["studies"] = counts
    print(f"\nmean true Dice {statistics.fmean(truth):.4f}, predicted {np.nanmean(predicted):.4f}")
    results["predicted"], results["flagged"] = predicted.tolist(), flagged.tolist()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("cv"))
    parser.add_argument("--recipe", default="robust-noise50")
    parser.add_argument("--folds", default="0,1,2,3,4")
    parser.add_argument("--shifts", default=DEFAULT_SHIFTS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--no-tta",
        dest="tta",
        action="store_false",
        help="only segment plainly (test-time augmentation takes 8 times as long)",
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--frames",
        type=Path,
        default=None,
        help="keep the segmented frames' signals here (a pickle) and reuse them when it exists, "
        "to refit and rescore without segmenting again",
    )
    parser.add_argument(
        "--save",
        type=Path,
        default=None,
        help="fit the score on every frame and write it here (lvseg/segment/quality.json is "
        "the one lvseg ships), with the TTA score inside it where the frames have one",
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
    if args.frames and args.frames.is_file():
        with args.frames.open("rb") as handle:
            rows, groups = pickle.load(handle)
        print(f"{len(rows)} frames read from {args.frames}")
    else:
        rows, groups = collect(args)
        if args.frames:
            atomic.write_with(args.frames, lambda t: t.write_bytes(pickle.dumps((rows, groups))))
    modes = ["plain", *(["tta"] if rows and "tta" in rows[0] else [])]
    results = {mode: analyse(mode, rows, groups, args) for mode in modes}
    if args.save:
        source = (
            f"recipe {args.recipe}, {len(args.folds)}-fold patient-level CV on the Sunnybrook "
            f"PNGs, held-out frames as they are and under {', '.join(args.shifts)}"
        )
        fitted = {}
        for mode in modes:
            frames = mode_rows(rows, mode)
            signals = [{k: r[k] for k in SIGNALS} for r in frames]
            truth = [r["dice"] for r in frames]
            use = TTA_SCORED if mode == "tta" else SCORED
            model = fit_quality_model(signals, truth, use=use, tta=mode == "tta")
            fitted[mode] = dataclasses.replace(model, source=source)
        model = dataclasses.replace(fitted["plain"], with_tta=fitted.get("tta"))
        text = json.dumps(model.to_dict(), indent=1) + "\n"
        atomic.write_text(args.save, text)
        print(f"\nscores fitted on all {len(rows)} frames ({', '.join(modes)}): {args.save}")
    if args.json:
        payload = {"rows": rows, "summary": results}
        args.json.write_text(json.dumps(payload) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
