"""``lvseg predict`` on the real Sunnybrook DICOM cines against the expert contours: volumes and
ejection fraction of the 5 patients of ``../shared/data/sunnybrook-dicom``, with a model that
never saw them.

The model is a training run (``--run``) whose checkpoint must not hold any of the 5 patients in
its training or validation split (the script refuses otherwise); train one with

    lvseg train --data ../shared/data/sunnybrook-png --out runs/lvnet-no-dicom \\
        --exclude-patients SC-HF-I-01,SC-HF-I-02,SC-HF-I-04,SC-HF-I-05,SC-HF-I-06

The run is exported (``lvseg export``, ONNX fp32, or ``--int8``), then ``lvseg predict`` segments
the whole folder (every slice and phase of the 5 cines). Two comparisons per patient:

- **like for like**: at the two phases the expert contoured (ED and ES) and over the slices the
  expert contoured, the predicted and the expert LV volumes (disc summation, the cine's 10 mm
  slice spacing) and the per-slice Dice of the predicted masks on the source grid;
- **fully automatic**: what ``predict`` reports on its own: ED and ES picked from its volume curve
  over all slices, EDV, ESV and EF, against the expert's.

A third table holds ``lvseg evaluate`` of the same exported model on the same folder (its
labelled frames, ``--crop located`` and ``--crop centre``) beside predict's Dice on those frames,
and how far evaluate's crop centre (located from the contoured frames) lies from predict's
(located from every slice at four phases), in pixels of the model's grid.

    .venv/bin/python -m benchmarks.predict_sunnybrook --run runs/lvnet-no-dicom [--int8]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import nibabel as nib
import numpy as np

from lvseg.data.records import LV
from lvseg.data.sunnybrook import read as read_sunnybrook
from lvseg.deploy.export import export
from lvseg.deploy.predict import predict
from lvseg.evaluate import clinical
from lvseg.evaluate.metrics import dice
from lvseg.evaluate.run import evaluate
from lvseg.runs.checkpoint import load_model
from lvseg.segment.onnx import open_model
from lvseg.segment.segmenter import CROPS, Segmenter

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sunnybrook-dicom"


def volume_ml(masks: list[np.ndarray], spacing: tuple[float, float], gap_mm: float) -> float:
    areas = [float(m.sum()) * spacing[0] * spacing[1] for m in masks]
    return clinical.disc_volume_ml(areas, gap_mm)


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def agreement_line(name: str, predicted: list[float], reference: list[float], scale: float) -> str:
    found = clinical.agreement(predicted, reference)
    if found is None:
        return f"| {name} | - | - | - |"
    return (
        f"| {name} | {scale * found.bias:+.1f} | {scale * found.loa_low:+.1f} to "
        f"{scale * found.loa_high:+.1f} | {fmt(found.pearson_r, 3)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, help="training run or checkpoint (see above)")
    parser.add_argument("--data", type=Path, default=REAL_DATA)
    parser.add_argument("--int8", action="store_true", help="predict with the int8 model")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.run is None:
        print("skipped: give --run RUN, a model trained without these 5 patients (see --help)")
        return
    if not args.data.is_dir():
        sys.exit(f"error: {args.data}: no Sunnybrook DICOM data (see ../shared/data/README.md)")

    reference = read_sunnybrook(args.data)
    patients = sorted(reference.patients)
    split = load_model(args.run).checkpoint.split
    seen = [] if split is None else sorted(set(patients) & set(split.train + split.val))
    if seen or split is None:
        sys.exit(f"error: {args.run} trained or validated on {seen or 'unknown patients'}")

    by_study: dict[str, list] = defaultdict(list)
    for record in reference.records:
        by_study[Path(record.source).parent.name].append(record)

    with tempfile.TemporaryDirectory() as scratch:
        exported = Path(scratch) / "model"
        export(args.run, exported, int8=args.int8)
        model_file = exported / ("model.int8.onnx" if args.int8 else "model.onnx")
        start = time.perf_counter()
        found = predict(model_file, args.data, Path(scratch) / "out", threads=args.threads)
        seconds = time.perf_counter() - start
        scored = {
            crop: {
                p.patient_id: p.dice_mean
                for p in evaluate(model_file, args.data, write=False, crop=crop).patients
            }
            for crop in CROPS
        }
        network = open_model(model_file, threads=args.threads)
        evaluate_centre = {
            patient: Segmenter(network, network.plan).segment(records)[0].placement.centre
            for patient, records in reference.by_patient().items()
        }
        rows = []
        for study in found.studies:
            folder = Path(study.folder)
            masks = np.asarray(nib.load(str(folder / "masks.nii.gz")).dataobj)
            masks = masks.transpose(2, 3, 1, 0).astype(bool)  # (slices, phases, rows, cols)
            with (folder / "frames.csv").open() as handle:
                where = {
                    int(r["instance"]): (int(r["slice"]), int(r["phase"]))
                    for r in csv.DictReader(handle)
                }
            records = by_study[study.study.name]
            phases: dict[int, list] = defaultdict(list)
            for record in records:
                instance = int(Path(record.source).stem)
                phases[where[instance][1]].append((record, masks[where[instance]]))
            spacing = tuple(study.study.pixel_spacing_mm)
            gap = study.study.slice_spacing_mm
            measured = {}
            for phase, pairs in phases.items():
                measured[phase] = (
                    volume_ml([p for _, p in pairs], spacing, gap),
                    volume_ml([r.masks[LV] for r, _ in pairs], spacing, gap),
                    [dice(p, r.masks[LV]) for r, p in pairs],
                )
            ed = max(measured, key=lambda p: measured[p][1])
            es = min(measured, key=lambda p: measured[p][1])
            rows.append(
                {
                    "study": study.study.name,
                    "patient": records[0].patient_id,
                    "contoured_slices": {"ed": len(phases[ed]), "es": len(phases[es])},
                    "dice": float(np.mean(measured[ed][2] + measured[es][2])),
                    "evaluate_dice": {crop: scored[crop][records[0].patient_id] for crop in CROPS},
                    "centre_distance_px": float(
                        np.hypot(
                            *np.subtract(
                                study.crop_centre_resampled_px,
                                evaluate_centre[records[0].patient_id],
                            )
                        )
                    ),
                    "ref_edv": measured[ed][1],
                    "ref_esv": measured[es][1],
                    "same_edv": measured[ed][0],
                    "same_esv": measured[es][0],
                    "auto_edv": study.edv_ml,
                    "auto_esv": study.esv_ml,
                    "auto_ef": study.ef,
                    "ref_ed_phase": ed,
                    "ref_es_phase": es,
                    "auto_ed_phase": study.ed_phase,
                    "auto_es_phase": study.es_phase,
                }
            )
    for row in rows:
        row["ref_ef"] = clinical.ejection_fraction(row["ref_edv"], row["ref_esv"])
        row["same_ef"] = clinical.ejection_fraction(row["same_edv"], row["same_esv"])

    frames = sum(int(np.prod(s.study.shape[:2])) for s in found.studies)
    print(
        f"lvseg predict on {args.data} ({len(rows)} patients, {frames} frames) in {seconds:.1f} s; "
        f"model {args.run} ({'int8' if args.int8 else 'fp32'} ONNX), trained without these "
        "patients\n"
    )
    print(
        "| patient | contoured slices ED/ES | Dice | EDV ref / same slices / auto (ml) | "
        "ESV ref / same / auto (ml) | EF ref / same / auto (%) | ED, ES phase ref / auto |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['patient']} | {r['contoured_slices']['ed']}/{r['contoured_slices']['es']} | "
            f"{r['dice']:.3f} | {fmt(r['ref_edv'])} / {fmt(r['same_edv'])} / {fmt(r['auto_edv'])} "
            f"| {fmt(r['ref_esv'])} / {fmt(r['same_esv'])} / {fmt(r['auto_esv'])} | "
            f"{fmt(100 * r['ref_ef'])} / {fmt(100 * r['same_ef'])} / {fmt(100 * r['auto_ef'])} | "
            f"{r['ref_ed_phase']}, {r['ref_es_phase']} / "
            f"{r['auto_ed_phase']}, {r['auto_es_phase']} |"
        )
    print(
        "\n| patient | predict Dice (contoured frames) | evaluate Dice, located crop | "
        "evaluate Dice, centre crop | crop centres, evaluate vs predict (px) |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['patient']} | {r['dice']:.4f} | {r['evaluate_dice']['located']:.4f} | "
            f"{r['evaluate_dice']['centre']:.4f} | {r['centre_distance_px']:.2f} |"
        )
    print("\n| against the expert | bias | limits of agreement | r |")
    print("|---|---|---|---|")
    ref = {k: [r[f"ref_{k}"] for r in rows] for k in ("edv", "esv", "ef")}
    for how in ("same", "auto"):
        label = "same slices and phases" if how == "same" else "fully automatic"
        print(agreement_line(f"EDV (ml), {label}", [r[f"{how}_edv"] for r in rows], ref["edv"], 1))
        print(agreement_line(f"ESV (ml), {label}", [r[f"{how}_esv"] for r in rows], ref["esv"], 1))
        print(
            agreement_line(f"EF (points), {label}", [r[f"{how}_ef"] for r in rows], ref["ef"], 100)
        )
    if args.json:
        args.json.write_text(json.dumps({"seconds": seconds, "patients": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
