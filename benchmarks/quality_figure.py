"""The README's quality-control picture: what ``lvseg predict`` flags in real studies, and why.

Runs ``lvseg predict`` (the library call behind the command) with an exported model on a DICOM
input into a temporary folder, then tiles the overlays it wrote: the flagged frames (an orange
frame around each, worst predicted Dice first) beside as many frames it did not flag, each
captioned with its predicted Dice, its 10-90% interval and, when flagged, the reason. Every
figure on the picture comes from ``frames.csv`` and ``summary.json`` as predict wrote them.

Run from the project root::

    .venv/bin/python -m benchmarks.quality_figure [--model EXPORT] [--input DIR [DIR ...]]
        [--out docs/images/quality-control.png] [--frames 8]

Without ``--model`` it exports the default recipe's fold-0 cross-validation run
(``cv/robust-noise50/lvnet-fold0``, from ``benchmarks/sunnybrook_cv.py --runs cv``) into a
temporary folder, and without ``--input`` it predicts the DICOM cines of the patients that run
held out (SCD0000101 and SCD0000301): the README's picture.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

from lvseg.deploy.predict import predict

REPO_ROOT = Path(__file__).resolve().parents[1]
DICOM = REPO_ROOT.parent / "shared" / "data" / "sunnybrook-dicom"
DEFAULT_RUN = Path("cv") / "robust-noise50" / "lvnet-fold0"


def held_out_studies(run: Path) -> list[Path]:
    """The DICOM cines of the Sunnybrook patients ``run`` held out (``link.csv`` maps them)."""
    from lvseg.data.sunnybrook import normalise_id
    from lvseg.runs.checkpoint import load_checkpoint, resolve_model_path

    split = load_checkpoint(resolve_model_path(run)).split
    held = set() if split is None else set(split.val)
    with (DICOM / "link.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        DICOM / "dicoms" / row["patient_id"]
        for row in rows
        if normalise_id(row["original_id"]) in held
    ]


def frames_of(folder: Path) -> list[dict]:
    """Every frame predict wrote for one study, with its study's folder and verdict."""
    summary = json.loads((folder / "summary.json").read_text())
    with (folder / "frames.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    reasons = {(f["slice"], f["phase"]): f["reason"] for f in summary["quality"]["flagged_frames"]}
    for row in rows:
        row["folder"] = folder
        row["study"] = summary["study"]["name"]
        row["reason"] = reasons.get((int(row["slice"]), int(row["phase"])), "")
    return rows


def caption(row: dict) -> str:
    head = (
        f"{row['study']} slice {row['slice']} phase {row['phase']}\n"
        f"predicted Dice {float(row['predicted_dice']):.2f} "
        f"[{float(row['predicted_dice_low']):.2f}-{float(row['predicted_dice_high']):.2f}]"
    )
    if row["flagged"] == "1":
        return head + "\n" + textwrap.fill("flagged: " + row["reason"], 44)
    return head + "\nnot flagged"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="an lvseg export")
    parser.add_argument(
        "--input",
        type=Path,
        nargs="+",
        default=None,
        help="DICOM folders (studies, or a folder of studies): pick the patients the model held "
        "out",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs/images/quality-control.png")
    parser.add_argument("--frames", type=int, default=8, help="frames on the picture")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    with tempfile.TemporaryDirectory() as scratch:
        if args.model is None:
            if not DEFAULT_RUN.is_dir():
                sys.exit(f"error: {DEFAULT_RUN}: no run (train it with sunnybrook_cv.py --runs cv)")
            from lvseg.deploy.export import export

            args.model = Path(scratch) / "export"
            export(DEFAULT_RUN, args.model)
            args.input = args.input or held_out_studies(DEFAULT_RUN)
        if not args.input:
            sys.exit("error: give --input (the DICOM cines of patients the model held out)")
        rows = []
        for k, source in enumerate(args.input):
            result = predict(args.model, source, Path(scratch) / f"predicted-{k}", tta=False)
            for study in result.studies:
                print(f"{study.study.name}: {study.quality.verdict}")
                rows += frames_of(Path(study.folder))
        judged = [r for r in rows if r["predicted_dice"] not in ("", None)]
        flagged = sorted(
            (r for r in judged if r["flagged"] == "1"), key=lambda r: float(r["predicted_dice"])
        )
        calm = [r for r in judged if r["flagged"] != "1"]
        print(f"{len(rows)} frames, {len(judged)} scored, {len(flagged)} flagged")
        # the flagged frames: the worst of each slice first, so the picture shows several
        seen: set[tuple] = set()
        distinct = []
        for row in flagged:
            if (row["study"], row["slice"]) not in seen:
                seen.add((row["study"], row["slice"]))
                distinct.append(row)
        shown = (distinct + [r for r in flagged if r not in distinct])[: args.frames // 2]
        # the frames not flagged: evenly spaced through the studies, as they come
        picks = np.linspace(0, len(calm) - 1, args.frames - len(shown)).round().astype(int)
        shown += [calm[i] for i in picks] if calm else []
        columns = 4
        lines = -(-len(shown) // columns)
        figure, axes = plt.subplots(lines, columns, figsize=(3.4 * columns, 4.4 * lines))
        for axis in np.ravel(axes):
            axis.axis("off")
        for axis, row in zip(np.ravel(axes), shown, strict=False):
            name = f"overlays/s{int(row['slice']):02d}-p{int(row['phase']):02d}.png"
            picture = np.asarray(Image.open(row["folder"] / name))
            axis.imshow(picture)
            axis.set_title(caption(row), fontsize=7.5, loc="left")
        figure.suptitle(
            f"lvseg predict: {len(flagged)} of {len(judged)} scored frames flagged "
            "(orange frame); the others as they come",
            fontsize=10,
        )
        figure.tight_layout(h_pad=2.5)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.out, dpi=80)
        print(f"written {args.out}")


if __name__ == "__main__":
    main()
