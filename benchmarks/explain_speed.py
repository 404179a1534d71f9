"""How fast lvseg explains: CAM and Grad-CAM maps per second, and faithfulness metrics per slice.

Two tables, on 2 CPU threads at the default 128 x 128 input, for the default LVNet and U-Net
(random weights: speed does not depend on them):

1. Explanations per second for CAM (LVNet only: the U-Net has no CAM head) and Grad-CAM at the
   default layer, at batch 1 and batch 16; best of ``--repeats`` timed calls after a warm-up.
2. Seconds per slice of the full metrics of one map: localisation (energy-based pointing game)
   plus deletion and insertion with ``--steps`` steps and their random-order baselines
   (4 * (steps + 1) forward passes per slice, batched), measured on ``--slices`` slices and
   extrapolated to the whole data set (526 Sunnybrook slices, or the slices under ``--data``).

With ``--data`` (e.g. ``../shared/data/sunnybrook-png``) the metrics run on real slices,
prepared by the one inference path (:class:`lvseg.segment.Segmenter`, plan from the data's
fingerprint, so the crop is the plan's; centre crop, as an untrained network cannot locate a
heart, and speed does not depend on where the crop falls); without it, on random 128 x 128
images with a disc as reference.

Run from the repository root::

    .venv/bin/python -m benchmarks.explain_speed [--data ../shared/data/sunnybrook-png]
        [--threads 2] [--repeats 3] [--slices 16] [--steps 20]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.timing import best_seconds
from lvseg.explain.cam import make_explainer
from lvseg.explain.faithfulness import deletion_insertion, localisation
from lvseg.model.registry import DEFAULT_INPUT_SIZE, build_model

SUNNYBROOK_SLICES = 526
"""Labelled slices of the Sunnybrook PNG set: the extrapolation target without ``--data``."""
MODELS = ("lvnet", "unet")
BATCHES = (1, 16)


def random_slices(count: int, size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Noise with a bright disc (the reference LV), and the data-set size to extrapolate to."""
    generator = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 8) ** 2
    images = torch.randn(count, 1, size, size, generator=generator) + 2 * disc
    return images, disc.expand(count, size, size).clone(), SUNNYBROOK_SLICES


def real_slices(path: Path, count: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The first ``count`` slices under ``path``, preprocessed as at inference."""
    from lvseg.data.load import load_dataset
    from lvseg.data.preprocess import fingerprint, plan_preprocessing
    from lvseg.data.records import LV
    from lvseg.segment.network import TorchNetwork
    from lvseg.segment.segmenter import Segmenter

    records = list(load_dataset(path))
    plan = plan_preprocessing(fingerprint(records))
    network = TorchNetwork(build_model("lvnet"))
    segmented = Segmenter(network, plan, crop="centre").segment(records[:count])
    chosen = [result.crop for result in segmented]
    images = torch.from_numpy(np.stack([r.image for r in chosen]).astype(np.float32))[:, None]
    reference = np.stack(
        [r.masks.get(LV, np.zeros(r.image.shape, bool)).astype(bool) for r in chosen]
    )
    return images, torch.from_numpy(reference), len(records)


def explanation_rates(size: int, repeats: int) -> list[tuple[str, str, int, float | None]]:
    """(model, method, batch, explanations per second or None where the method does not apply)."""
    rows = []
    for name in MODELS:
        torch.manual_seed(0)
        model = build_model(name)
        for method in ("cam", "gradcam"):
            for batch in BATCHES:
                images = torch.randn(batch, 1, size, size)
                if method == "cam" and not hasattr(model, "cam_weights"):
                    rows.append((name, method, batch, None))
                    continue
                explainer = make_explainer(method, model)
                seconds = best_seconds(lambda e=explainer, x=images: e(x), repeats)
                rows.append((name, method, batch, batch / seconds))
    return rows


def metric_times(
    images: torch.Tensor, reference: torch.Tensor, steps: int
) -> list[tuple[str, str, float, float]]:
    """(model, method, seconds per slice for the map, seconds per slice for the metrics)."""
    rows = []
    count = len(images)
    for name in MODELS:
        torch.manual_seed(0)
        model = build_model(name)
        for method in ("cam", "gradcam"):
            if method == "cam" and not hasattr(model, "cam_weights"):
                continue
            explainer = make_explainer(method, model)
            start = time.perf_counter()
            maps = explainer(images)
            map_s = time.perf_counter() - start
            start = time.perf_counter()
            localisation(maps, reference)
            deletion_insertion(model, images, maps, steps=steps)
            rows.append((name, method, map_s / count, (time.perf_counter() - start) / count))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="real slices (any lvseg format)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=DEFAULT_INPUT_SIZE)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slices", type=int, default=16, help="slices the metrics are timed on")
    parser.add_argument("--steps", type=int, default=20, help="deletion/insertion steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    header = (
        f"{args.threads} threads, torch {torch.__version__}, {platform.machine()}, "
        f"best of {args.repeats}"
    )
    print(f"explanations per second at {args.size}x{args.size}, default layers, {header}")
    print()
    print("| model | method | batch | maps/s |")
    print("|---|---|---|---|")
    for name, method, batch, rate in explanation_rates(args.size, args.repeats):
        shown = "n/a (no CAM head)" if rate is None else f"{rate:.1f}"
        print(f"| {name} | {method} | {batch} | {shown} |")

    if args.data is not None:
        images, reference, total = real_slices(args.data, args.slices)
        source = f"{len(images)} real slices of {args.data} ({images.shape[-1]} px crops)"
    else:
        images, reference, total = random_slices(args.slices, args.size)
        source = f"{len(images)} random {args.size}x{args.size} images"
    print()
    print(
        f"faithfulness metrics per slice: localisation + deletion/insertion, {args.steps} steps, "
        f"salient and random order ({4 * (args.steps + 1)} forward passes per slice), timed on "
        f"{source}, extrapolated to {total} slices"
    )
    print()
    print("| model | method | map s/slice | metrics s/slice | all slices: maps + metrics (min) |")
    print("|---|---|---|---|---|")
    for name, method, map_s, metrics_s in metric_times(images, reference, args.steps):
        print(
            f"| {name} | {method} | {map_s:.4f} | {metrics_s:.3f} | "
            f"{(map_s + metrics_s) * total / 60:.1f} |"
        )


if __name__ == "__main__":
    main()
