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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from domain_shift import PNG, SHIFTS, dice  # noqa: E402

from lvseg import layout  # noqa: E402
from lvseg.data import atomic  # noqa: E402
from lvseg.data.load import labelled_dataset  # noqa: E402
from lvseg.data.records import LV, SliceRecord  # noqa: E402
from lvseg.evaluate.quality import assess, fit_quality_model  # noqa: E402
from lvseg.evaluate.run import open_scored_model  # noqa: E402
from lvseg.evaluate.stacks import clinical_section  # noqa: E402
from lvseg.segment.quality import (  # noqa: E402
    EF_REVIEW_SHARE,
    FLAG_BELOW,
    SCORED,
    SIGNALS,
    Judgement,
    frame_signals,
    judge,
    share_at_risk,
)
from lvseg.segment.segmenter import Segmenter  # noqa: E402

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
    """One row per frame (fold, shift, true Dice, the signals) and the groups they came in."""
    png = labelled_dataset(PNG)
    rows: list[dict] = []
    groups: list[Group] = []
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
            shifted = SHIFTS[shift](records)
            results = segmenter.segment(shifted)
            first = len(rows)
            for result, signals in zip(results, frame_signals(results), strict=True):
                truth = np.asarray(result.record.masks[LV], bool)
                rows.append(
                    {
                        "fold": fold,
                        "shift": shift,
                        "patient_id": result.record.patient_id,
                        "phase_index": result.record.phase_index,
                        "dice": dice(result.mask, truth),
                        **signals,
                    }
                )
            masks = {r.record.key: r.mask for r in results}
            clinical = clinical_section(shifted, masks) or {"patients": []}
            studies = []
            for patient in clinical["patients"]:
                predicted, reference = patient["predicted"]["ef"], patient["reference"]["ef"]
                if predicted is None or reference is None:
                    continue
                members = [
                    i
                    for i in range(first, len(rows))
                    if rows[i]["patient_id"] == patient["patient_id"]
                ]
                studies.append({"error": 100 * abs(predicted - reference), "rows": members})
            groups.append(
                Group(fold, shift, first, len(rows), [light(r) for r in shifted], studies)
            )
            print(
                f"fold {fold} {shift}: {len(results)} frames ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    return rows, groups


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("cv"))
    parser.add_argument("--recipe", default="robust")
    parser.add_argument("--folds", default="0,1,2,3,4")
    parser.add_argument("--shifts", default=DEFAULT_SHIFTS)
    parser.add_argument("--threads", type=int, default=2)
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
    if args.frames and args.frames.is_file():
        with args.frames.open("rb") as handle:
            rows, groups = pickle.load(handle)
        print(f"{len(rows)} frames read from {args.frames}")
    else:
        rows, groups = collect(args)
        if args.frames:
            atomic.write_with(args.frames, lambda t: t.write_bytes(pickle.dumps((rows, groups))))
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
    # the score, cross-fitted: fold k's frames judged (as evaluate and predict judge them) by a
    # score fitted on the other folds' frames only
    signals = [{k: r[k] for k in SIGNALS} for r in rows]
    predicted = np.full(len(rows), np.nan)
    failure = np.full(len(rows), np.nan)
    flagged = np.zeros(len(rows), bool)
    intervals = {}
    folds = np.array([r["fold"] for r in rows])
    for fold in args.folds:
        others = folds != fold
        if len(args.folds) == 1:  # one fold: fitted on what it scores (optimistic)
            others = np.ones(len(rows), bool)
        scorer = fit_quality_model(
            [s for s, o in zip(signals, others, strict=True) if o], truth[others]
        )
        intervals[fold] = scorer.interval
        for group in (g for g in groups if g.fold == fold):
            judgement = judge(scorer, group.records, signals[group.start : group.stop])
            predicted[group.start : group.stop] = judgement.predicted_dice
            failure[group.start : group.stop] = judgement.failure_score
            flagged[group.start : group.stop] = judgement.flagged
    shifts = np.array([r["shift"] for r in rows])
    subsets = {"all frames": np.ones(len(rows), bool), "unshifted": shifts == "none"}
    subsets["shifted"] = shifts != "none"
    results = {}
    print(
        "\nThe score (signals weighed: "
        + ", ".join(SCORED)
        + "), cross-fitted by fold"
        + ("" if len(args.folds) > 1 else " (one fold: fitted on what it scores, optimistic)")
        + ", judged as `lvseg evaluate` and `predict` judge (frames with no LV segmented are not"
        " scored; one between segmented slices of its phase is flagged). Per fold: each fold's "
        "frames by the score fitted on the other folds, then the mean over folds; pooled: all "
        "folds' frames ranked together (five scores, so offsets between them count too)\n"
    )
    print(
        "| frames | n | scored | failures | AUROC per fold (pooled) | Spearman per fold (pooled) "
        "| MAE | interval coverage | failures flagged | good flagged |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, where in subsets.items():
        if not where.any():
            continue
        found = {}
        for fold in [None, *args.folds]:
            part = where if fold is None else where & (folds == fold)
            judged = Judgement(predicted[part], flagged[part], {}, FLAG_BELOW, failure[part])
            interval = intervals[args.folds[0] if fold is None else fold]
            found[fold] = assess(judged, truth[part], interval)
        pooled = found[None]
        per_fold = {
            key: statistics.fmean(found[f][key] for f in args.folds if found[f][key] is not None)
            for key in ("auroc", "spearman", "interval_coverage")
        }
        results[name] = {"pooled": pooled, "per_fold_mean": per_fold}
        print(
            f"| {name} | {pooled['frames']} | {pooled['scored_frames']} | {pooled['failures']} | "
            f"{_f(per_fold['auroc'])} ({_f(pooled['auroc'])}) | {_f(per_fold['spearman'])} "
            f"({_f(pooled['spearman'])}) | {_f(pooled['mae'])} | "
            f"{_p(per_fold['interval_coverage'])} | {_p(pooled['failures_flagged'])} | "
            f"{_p(pooled['good_flagged'])} |"
        )
    studies = [s for g in groups for s in g.studies]
    for study in studies:
        members = study["rows"]
        shares = share_at_risk(
            flagged[members],
            [rows[i]["phase_index"] for i in members],
            [rows[i]["area"] for i in members],
        )
        study["review"] = max(shares.values()) > EF_REVIEW_SHARE
    print(
        f"\nStudies (patients x shifts) with an EF from >= 3 slices at ED and ES: {len(studies)}; "
        f"an EF is for review when flagged frames hold over {EF_REVIEW_SHARE:.0%} of the ED or "
        "ES area"
    )
    for limit in (5, 10):
        wrong = [s for s in studies if s["error"] > limit]
        caught = sum(s["review"] for s in wrong)
        print(f"  EF error over {limit} points: {len(wrong)}, for review {caught}")
        results[f"studies_ef_error_over_{limit}"] = {"studies": len(wrong), "review": caught}
    right = [s for s in studies if s["error"] <= 5]
    calm = sum(s["review"] for s in right)
    print(f"  EF within 5 points: {len(right)}, for review {calm}")
    results["studies_ef_within_5"] = {"studies": len(right), "review": calm}
    print(f"\nmean true Dice {statistics.fmean(truth):.4f}, predicted {np.nanmean(predicted):.4f}")
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
        payload["flagged"] = flagged.tolist()
        args.json.write_text(json.dumps(payload) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
