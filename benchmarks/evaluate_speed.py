"""Evaluation throughput (slices/s) on the 526 Sunnybrook PNG slices, surface distances included.

Three figures, best of ``--repeats``:

- **scoring**: :func:`lvseg.evaluate.metrics.score_slice` alone (Dice ... HD95, ASSD, APD) on
  realistic predictions: each reference LV shifted by 2 px and eroded by 1 px, so every slice has
  two non-trivial contours to measure;
- **segmenting**: the one inference path (:class:`lvseg.segment.Segmenter`: preprocessing,
  placing the crop, the forward pass, mapping back onto the source grid) for LVNet and the
  U-Net, in batches of 16, with the located crop (one extra forward pass on every whole
  256x256 image to find the heart) and with the centre crop;
- **end to end**: ``lvseg evaluate`` of an LVNet checkpoint (``split="all"``, each crop), scoring,
  summaries, clinical section and the report (figures and HTML) included, best of
  ``--repeats`` runs.

The networks are freshly initialised: speed does not depend on the weights, except that an
untrained net's masks are trivial to score, which is why scoring is also timed on its own.

    .venv/bin/python -m benchmarks.evaluate_speed [--data ../shared/data/sunnybrook-png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from benchmarks.timing import best_seconds
from lvseg.data.load import labelled_dataset
from lvseg.data.preprocess import fingerprint, plan_preprocessing
from lvseg.data.records import LV
from lvseg.evaluate.metrics import score_slice
from lvseg.evaluate.run import evaluate
from lvseg.model.registry import build_model, config_of
from lvseg.runs.checkpoint import Checkpoint
from lvseg.segment.network import TorchNetwork
from lvseg.segment.segmenter import CROPS, Segmenter

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sunnybrook-png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REAL_DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"error: {args.data}: no Sunnybrook PNG data (see ../shared/data/README.md)")
    torch.set_num_threads(args.threads)
    records = labelled_dataset(args.data).records
    n = len(records)
    plan = plan_preprocessing(fingerprint(records))
    plan.structures = (LV,)

    predictions = [
        ndimage.binary_erosion(np.roll(r.masks[LV], 2, axis=1)) for r in records
    ]  # realistic, imperfect contours

    def score_all() -> None:
        for record, predicted in zip(records, predictions, strict=True):
            score_slice(predicted, record.masks[LV], record.pixel_spacing_mm)

    results = [("scoring (Dice ... HD95, ASSD, APD)", best_seconds(score_all, args.repeats))]
    models = {}
    for name in ("lvnet", "unet"):
        model = build_model(name).eval()
        models[name] = model
        for crop in CROPS:
            segmenter = Segmenter(TorchNetwork(model), plan, crop=crop, batch_size=16)
            seconds = best_seconds(lambda s=segmenter: s.segment(records), args.repeats)
            results.append((f"segmenting, {name}, {crop} crop", seconds))

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "lvnet.pt"
        model = models["lvnet"]
        Checkpoint("lvnet", config_of(model), model.state_dict(), plan).save(path)
        for crop in CROPS:

            def end_to_end(crop: str = crop) -> None:
                out = Path(tempfile.mkdtemp(dir=folder)) / "out"
                evaluate(path, args.data, out, split="all", crop=crop)

            seconds = best_seconds(end_to_end, args.repeats, warm_up=False)
            results.append((f"end to end, lvnet, {crop} crop (report included)", seconds))

    print(f"Evaluation throughput on {n} slices of {args.data}, CPU x{args.threads}")
    print()
    print("| what | seconds | slices/s |")
    print("|---|---|---|")
    for what, seconds in results:
        print(f"| {what} | {seconds:.2f} | {n / seconds:.1f} |")


if __name__ == "__main__":
    main()
