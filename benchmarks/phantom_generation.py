"""Phantom generation speed: 2D frames (slice x phase images) per second on one CPU core.

Measures the in-memory generator (whole cines, and ED/ES only as the training data uses it) and
the on-disk writers (DICOM + contours, NIfTI), at full resolution. BLAS is pinned to one thread.

Run from the project root::

    .venv/bin/python -m benchmarks.phantom_generation [--patients 8]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import tempfile
import time
from pathlib import Path

from lvseg.data import phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []

    start = time.perf_counter()
    frames = pixels = 0
    for index in range(args.patients):
        patient = phantom.generate_patient(index, args.seed)
        frames += patient.images.shape[0] * patient.images.shape[1]
        pixels += patient.images.size
    rows.append(("generate_patient, 20 phases", frames, pixels, time.perf_counter() - start))

    start = time.perf_counter()
    dataset = phantom.phantom_dataset(patients=args.patients, seed=args.seed)
    seconds = time.perf_counter() - start
    rendered = 2 * frames // phantom.PHASES  # ED and ES of every slice
    rows.append((f"phantom_dataset ed_es ({len(dataset)} records)", rendered, 0, seconds))

    for fmt in phantom.FORMATS:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            phantom.write_phantom(Path(folder) / fmt, args.patients, args.seed, format=fmt)
            seconds = time.perf_counter() - start
            size = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
        rows.append((f"write_phantom {fmt} ({size / 1e6:.0f} MB)", frames, pixels, seconds))

    print(f"phantom v{phantom.PHANTOM_VERSION}, {args.patients} patients, seed {args.seed}, 1 core")
    print()
    print("| mode | frames | seconds | frames/s | Mpixel/s |")
    print("|---|---|---|---|---|")
    for name, count, pixel_count, seconds in rows:
        mpix = f"{pixel_count / seconds / 1e6:.1f}" if pixel_count else "-"
        print(f"| {name} | {count} | {seconds:.1f} | {count / seconds:.0f} | {mpix} |")


if __name__ == "__main__":
    main()
