"""How fast data reaches the network on a 2-core CPU: cold load, cached epochs, augmentation.

Run from the repository root: ``.venv/bin/python -m benchmarks.data_loading``. It reads the
Sunnybrook PNGs from ``../shared/data/sunnybrook-png`` (``--data`` to change), caches them in a
temporary folder, and prints one table. The caches and epochs are those ``lvseg train`` builds
and draws (:func:`lvseg.train.data.prepare`). Every figure uses 2 torch threads. Each stage is run
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
from lvseg.config import DataConfig
from lvseg.data.augment import AugmentConfig, Augmenter
from lvseg.data.folders import read
from lvseg.data.load import labelled_dataset
from lvseg.data.preprocess import build_cache, fingerprint, plan_preprocessing
from lvseg.train.data import TrainingData, prepare

THREADS = 2
BATCH = 32
SEED = 0

Row = tuple[str, int, float]


def training_epoch(data: TrainingData, far_crops: float, epoch: int) -> None:
    """One epoch as ``lvseg train`` draws it (the loop's ``epoch_batches``): a seeded permutation
    of the training slices, jittered crop offsets with a share of far crops, each batch sliced
    from the memory-mapped cache."""
    rng = np.random.default_rng([SEED, epoch])
    order = rng.permutation(data.train_indices)
    offsets = data.train.random_offsets(len(order), rng)
    data.train.far_offsets(offsets, far_crops, rng)
    for start in range(0, len(order), BATCH):
        batch = data.train.batch(order[start : start + BATCH], offsets[start : start + BATCH])
        batch.images.sum()


def cold_rows(data: Path, config: DataConfig, folder: Path, repeats: int) -> list[Row]:
    """Decode, plan and cache from nothing (no lvseg cache; the OS file cache is warm)."""
    dataset = read(data)
    n = len(dataset)
    plan = prepare(config, SEED, cache_root=folder / "plan").plan  # the plan training uses
    decode = best_seconds(lambda: read(data), repeats, warm_up=False)
    plan_time = best_seconds(lambda: plan_preprocessing(fingerprint(dataset)), repeats)
    write = best_seconds(
        lambda: build_cache(dataset, plan, folder / "native", rebuild=True), repeats
    )
    # The resampling path: the same slices given 1.33 mm pixels, resampled to 1.0 mm.
    spaced = read(data, pixel_spacing_mm=(1.33, 1.33))
    resampled_plan = plan_preprocessing(fingerprint(spaced), target_spacing_mm=(1.0, 1.0))
    resample = best_seconds(
        lambda: build_cache(spaced, resampled_plan, folder / "mm", rebuild=True),
        repeats,
        warm_up=False,
    )
    roots = iter(range(repeats + 1))
    whole = best_seconds(
        lambda: prepare(config, SEED, cache_root=folder / f"prepare-{next(roots)}"),
        repeats,
        warm_up=False,
    )
    return [
        ("cold: decode PNG (folders.read)", n, decode),
        ("cold: fingerprint + plan", n, plan_time),
        ("cold: preprocess + write cache", n, write),
        ("cold: total", n, decode + plan_time + write),
        ("cold: preprocess + cache, 1.33 -> 1.0 mm", n, resample),
        ("cold: train.data.prepare (read, split, plan, cache train + val)", n, whole),
    ]


def warm_rows(data: TrainingData, config: DataConfig, repeats: int) -> list[Row]:
    """The caches found again, and epochs sliced from them."""
    records = data.split.apply(labelled_dataset(config.path, config.format))["train"].records
    root = data.train.path.parent
    assert build_cache(records, data.plan, root).key == data.train.key  # found, not rebuilt
    find = best_seconds(lambda: build_cache(records, data.plan, root), 3)
    rows = [("warm: find + open the training cache", len(records), find)]
    n_train = len(data.train_indices)
    epochs = iter(range(10**6))
    seconds = best_seconds(lambda: training_epoch(data, config.far_crops, next(epochs)), repeats)
    far = f"jitter + {config.far_crops:.0%} far crops"
    rows.append((f"warm training epoch, batches of {BATCH}, {far}", n_train, seconds))
    if data.val is not None:
        val = data.val

        def validation_epoch() -> None:
            for batch in val.batches(BATCH, shuffle=False, jitter=False):
                batch.images.sum()

        seconds = best_seconds(validation_epoch, repeats)
        rows.append((f"warm validation epoch, batches of {BATCH}", len(val), seconds))
    return rows


def augment_rows(data: TrainingData, repeats: int) -> list[Row]:
    """Augmentation on crop-sized batches."""
    batch = data.train.batch(data.train_indices[:BATCH])
    every = AugmentConfig(p_affine=1, p_elastic=1, p_bias_field=1, p_gamma=1, p_blur=1, p_noise=1)
    rows = []
    for name, config in (("default", AugmentConfig()), ("every transform, p=1", every)):
        augmenter = Augmenter(config)
        torch.manual_seed(0)
        seconds = best_seconds(
            lambda augmenter=augmenter: augmenter(batch.images, batch.masks), repeats * 5
        )
        rows.append((f"augment batch {BATCH}, {name}", BATCH, seconds))
    return rows


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
    config = DataConfig(path=str(data), format="folders")
    with tempfile.TemporaryDirectory() as folder:
        rows = cold_rows(data, config, Path(folder), args.repeats)
        prepared = prepare(config, SEED, cache_root=Path(folder) / "warm")
        rows += warm_rows(prepared, config, args.repeats)
        rows += augment_rows(prepared, args.repeats)
    plan = prepared.plan
    print(
        f"lvseg data loading: {rows[0][1]} Sunnybrook PNG slices, crop {plan.crop_size} px, "
        f"jitter {plan.jitter_px} px, far-crop reach {plan.reach_px} px, torch threads "
        f"{torch.get_num_threads()}, numpy {np.__version__}"
    )
    width = max(len(name) for name, _, _ in rows)
    print(f"{'stage':<{width}}  {'slices':>6}  {'seconds':>8}  {'slices/s':>9}")
    for name, count, seconds in rows:
        print(f"{name:<{width}}  {count:>6}  {seconds:>8.3f}  {count / seconds:>9.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
