"""How fast data reaches the network on a 2-core CPU: cold load, cached epochs, augmentation.

Run from the repository root: ``.venv/bin/python -m benchmarks.data_loading``. It reads the
Sunnybrook PNGs from ``../shared/data/sunnybrook-png`` (``--data`` to change), caches them in a
temporary folder, and prints one table. Every figure uses 2 torch threads. Each stage is run
several times and the best time is reported (as ``timeit`` does): on a shared laptop or VM the
slower runs measure the neighbours. "Cold" means no lvseg cache; the operating system's file
cache is warm after the first run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.timing import best_seconds
from lvseg.data.augment import AugmentConfig, Augmenter
from lvseg.data.folders import read
from lvseg.data.preprocess import (
    CachedSliceDataset,
    build_cache,
    fingerprint,
    plan_preprocessing,
)

THREADS = 2
BATCH = 32


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/sunnybrook-png")
    parser.add_argument("--repeats", type=int, default=3, help="runs per stage (best is kept)")
    args = parser.parse_args()
    data = Path(args.data)
    if not data.exists():
        print(f"skipped: no data at {data} (run from the repository root)", file=sys.stderr)
        return 0
    torch.set_num_threads(THREADS)
    rows: list[tuple[str, int, float]] = []

    with tempfile.TemporaryDirectory() as folder:
        cache_dir = Path(folder)

        # Cold: decode PNGs, fingerprint, plan, preprocess and write the cache.
        dataset = read(data)
        plan = plan_preprocessing(fingerprint(dataset))
        n = len(dataset)
        cold = args.repeats
        decode = best_seconds(lambda: read(data), cold, warm_up=False)
        plan_time = best_seconds(lambda: plan_preprocessing(fingerprint(dataset)), cold)
        write = best_seconds(
            lambda: build_cache(dataset, plan, cache_dir / "native", rebuild=True), cold
        )
        rows += [
            ("cold: decode PNG (folders.read)", n, decode),
            ("cold: fingerprint + plan", n, plan_time),
            ("cold: preprocess + write cache", n, write),
            ("cold: total", n, decode + plan_time + write),
        ]

        # The resampling path: the same slices given 1.33 mm pixels, resampled to 1.0 mm.
        spaced = read(data, pixel_spacing_mm=(1.33, 1.33))
        resampled_plan = plan_preprocessing(fingerprint(spaced), target_spacing_mm=(1.0, 1.0))
        seconds = best_seconds(
            lambda: build_cache(spaced, resampled_plan, cache_dir / "mm", rebuild=True),
            cold,
            warm_up=False,
        )
        rows.append(("cold: preprocess + cache, 1.33 -> 1.0 mm", n, seconds))
        cache = build_cache(dataset, plan, cache_dir / "native")

        # Warm: the cache is found (key from file stamps) and opened.
        seconds = best_seconds(lambda: build_cache(dataset, plan, cache_dir / "native"), 3)
        rows.append(("warm: find + open cache", n, seconds))

        def epoch(jitter: bool) -> None:
            for batch in cache.batches(BATCH, shuffle=True, jitter=jitter, seed=0):
                batch.images.sum()

        for jitter in (False, True):
            seconds = best_seconds(lambda jitter=jitter: epoch(jitter), args.repeats)
            rows.append((f"warm epoch, batches of {BATCH}, jitter={jitter}", n, seconds))

        dataset_view = CachedSliceDataset(cache, jitter=True)
        loader = torch.utils.data.DataLoader(dataset_view, batch_size=BATCH, shuffle=True)
        seconds = best_seconds(lambda: [b[0].sum() for b in loader], args.repeats)
        rows.append((f"warm epoch, DataLoader(workers=0), batch {BATCH}", n, seconds))

        # Augmentation on crop-sized batches.
        batch = next(cache.batches(BATCH, seed=0))
        for name, config in (
            ("default", AugmentConfig()),
            (
                "every transform, p=1",
                AugmentConfig(
                    p_affine=1,
                    p_elastic=1,
                    p_bias_field=1,
                    p_gamma=1,
                    p_blur=1,
                    p_noise=1,
                ),
            ),
        ):
            augmenter = Augmenter(config)
            torch.manual_seed(0)
            seconds = best_seconds(
                lambda augmenter=augmenter: augmenter(batch.images, batch.masks),
                args.repeats * 5,
            )
            rows.append((f"augment batch {BATCH}, {name}", BATCH, seconds))

    size = plan.crop_size
    print(
        f"lvseg data loading: {n} Sunnybrook PNG slices, crop {size} px, jitter "
        f"{plan.jitter_px} px, torch threads {torch.get_num_threads()}, numpy {np.__version__}"
    )
    width = max(len(name) for name, _, _ in rows)
    print(f"{'stage':<{width}}  {'slices':>6}  {'seconds':>8}  {'slices/s':>9}")
    for name, count, seconds in rows:
        print(f"{name:<{width}}  {count:>6}  {seconds:>8.3f}  {count / seconds:>9.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
