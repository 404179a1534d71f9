"""Training on a CUDA GPU: throughput and accuracy of ``lvseg train`` with fp32, bf16 autocast and
bf16 + ``torch.compile``, for LVNet and the U-Net, on the same phantom and split.

Each variant is a real ``lvseg train`` run (the engine, its data cache, validation every epoch,
checkpoints), so the figure is what a user gets, data loading included. Throughput is the number
of training slices per epoch over the median epoch time, the first epoch (CUDA start-up, compile)
left out; accuracy is the best validation Dice. Needs a CUDA device.

    python -m benchmarks.cuda_training [--patients 16] [--epochs 8] [--models lvnet,unet]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
EPOCH = re.compile(r"epoch (\d+)/\d+ .*val Dice ([0-9.]+).*?([0-9.]+) s$")
VARIANTS = {
    "fp32": ["--precision", "fp32"],
    "bf16": ["--precision", "bf16"],
    "bf16 + compile": ["--precision", "bf16", "--compile"],
}


def lvseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lvseg", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},  # one epoch, one line
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--models", default="lvnet,unet")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--device", default="cuda", help="cpu only to try the script out")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA device here (this benchmark measures GPU training)")
        return
    from lvseg.data.load import labelled_dataset
    from lvseg.data.splits import split_for

    where = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"{where}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "phantom"
        start = time.perf_counter()
        made = lvseg("data", "phantom", str(data), "--patients", str(args.patients), "--seed", "0")
        if made.returncode:
            sys.exit(made.stderr)
        print(f"phantom of {args.patients} patients written in {time.perf_counter() - start:.0f} s")
        dataset = labelled_dataset(data)
        split = split_for(dataset, folds=0, fold=0, val_fraction=0.2, seed=0)
        slices = sum(1 for r in dataset.records if r.patient_id in set(split.train))
        print(f"{slices} training slices per epoch, {args.epochs} epochs, batch 16\n")
        print("| model | precision | slices/s (median epoch) | epoch s | best val Dice |")
        print("|---|---|---|---|---|")
        for model in args.models.split(","):
            for variant in args.variants.split(","):
                out = Path(scratch) / f"{model}-{variant.replace(' ', '')}"
                run = lvseg(
                    "train", "--data", str(data), "--model", model, "--epochs", str(args.epochs),
                    "--device", args.device, "--no-monitor", "--out", str(out), *VARIANTS[variant],
                )  # fmt: skip
                epochs = [EPOCH.search(line.strip()) for line in run.stdout.splitlines()]
                epochs = [m for m in epochs if m]
                if run.returncode or len(epochs) < 2:
                    print(f"| {model} | {variant} | failed: {run.stdout.strip()[-300:]} | | |")
                    continue
                seconds = statistics.median(float(m.group(3)) for m in epochs[1:])
                dice = max(float(m.group(2)) for m in epochs)
                rate = slices / seconds
                print(
                    f"| {model} | {variant} | {rate:.0f} | {seconds:.2f} | {dice:.3f} |", flush=True
                )


if __name__ == "__main__":
    main()
