"""Training throughput of LVNet, the U-Net and the DLI FCN on this machine, in one run.

One training step = augmentation of the batch (the data layer's default Augmenter), forward,
the lvseg loss, backward and an AdamW step, on a batch at the default input size (128 x 128,
the plan's crop for the Sunnybrook PNGs). Inference = a forward pass in eval mode, no grad.
Each model gets warm-up steps, then the median of several timed repeats.

Run from the project root::

    .venv/bin/python -m benchmarks.train_throughput [--batch 16] [--size 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics

import torch

from benchmarks.timing import wall_times
from lvseg.data.augment import Augmenter
from lvseg.model.registry import build_model, model_names, size_report
from lvseg.train.losses import segmentation_loss


def disc_batch(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 1, size, size, generator=generator)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 6) ** 2).float()
    return images + 2 * disc, disc.expand(batch, 1, size, size).clone()


def time_it(function, warmup: int, repeats: int) -> float:
    """Median wall time (the step-time figure of this benchmark)."""
    return statistics.median(wall_times(function, repeats, warm_ups=warmup))


def measure(
    name: str, images: torch.Tensor, masks: torch.Tensor, device: torch.device, repeats: int
) -> tuple[float, float]:
    """Seconds per training step and per inference batch for one model."""
    torch.manual_seed(0)
    model = build_model(name).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    augmenter = Augmenter()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step() -> None:
        x, y = augmenter(images, masks)
        x, y = x.to(device), y[:, 0].to(device)
        optimizer.zero_grad(set_to_none=True)
        output = model(x)
        segmentation_loss(output.logits, output.presence_logit, y).total.backward()
        optimizer.step()
        sync()

    @torch.no_grad()
    def infer() -> None:
        model(images.to(device))
        sync()

    model.train()
    train_s = time_it(step, warmup=2, repeats=repeats)
    model.eval()
    return train_s, time_it(infer, warmup=1, repeats=repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    images, masks = disc_batch(args.batch, args.size)
    rows = []
    for name in model_names():
        train_s, infer_s = measure(name, images, masks, device, args.repeats)
        report = size_report(name, input_size=args.size)
        rows.append(
            (name, report.parameters, report.macs, args.batch / train_s, args.batch / infer_s)
        )
    ref_train, ref_infer = next((r[3], r[4]) for r in rows if r[0] == "lvnet")
    print(
        f"training throughput, batch {args.batch} at {args.size}x{args.size}, {args.device}, "
        f"{args.threads} threads, torch {torch.__version__}, {platform.machine()}"
    )
    print()
    print("| model | parameters | GMACs/image | train img/s | vs LVNet | infer img/s | vs LVNet |")
    print("|---|---|---|---|---|---|---|")
    for name, params, macs, train_rate, infer_rate in rows:
        print(
            f"| {name} | {params:,} | {macs / 1e9:.3f} | {train_rate:.1f} | "
            f"{train_rate / ref_train:.2f}x | {infer_rate:.1f} | {infer_rate / ref_infer:.2f}x |"
        )


if __name__ == "__main__":
    main()
