"""Phantom -> real: train a small U-Net on the synthetic phantom only, test on real Sunnybrook.

The network never sees a real image in training. It is evaluated on the 526 labelled slices of
``../shared/data/sunnybrook-png`` (LV blood pool), which measures how realistic the phantom is.

Both sources get the same preprocessing: resampling to ``--spacing`` mm/px (the PNGs store no
spacing; the scans are 1.29-1.37 mm, so 1.33 is assumed), then per-image robust intensity
normalisation (1st-99th percentile to 0-1). Training uses random crops around the heart with
affine, intensity, bias-field, noise and blur augmentation. Evaluation runs on the whole image,
keeps the largest connected component, and maps the prediction back to 256x256 to score Dice.

Run from the project root (about 10-15 minutes on 2 CPU cores)::

    .venv/bin/python benchmarks/phantom_to_real.py
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lvseg.data import folders, phantom  # noqa: E402
from lvseg.data.records import LV  # noqa: E402

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sunnybrook-png"
REAL_SPACING_MM = 1.33
CANVAS = 192  # training canvas side, pixels at --spacing


# --------------------------------------------------------------------------------------------
# Model: a compact U-Net


def _block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
    )


class SmallUNet(nn.Module):
    """Four-level U-Net (16-32-64-128 channels, ~480k parameters), one logit per pixel."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        channels = [width, 2 * width, 4 * width, 8 * width]
        self.encoders = nn.ModuleList(
            [_block(1, channels[0])] + [_block(channels[i], channels[i + 1]) for i in range(3)]
        )
        self.ups = nn.ModuleList(
            [nn.ConvTranspose2d(channels[i + 1], channels[i], 2, stride=2) for i in range(3)]
        )
        self.decoders = nn.ModuleList([_block(2 * channels[i], channels[i]) for i in range(3)])
        self.head = nn.Conv2d(channels[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x)
            if level < 3:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for level in reversed(range(3)):
            x = self.decoders[level](torch.cat([self.ups[level](x), skips[level]], dim=1))
        return self.head(x)


# --------------------------------------------------------------------------------------------
# Preprocessing shared by phantom and real images


def normalise(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, [1.0, 99.0])
    return np.clip((image - low) / max(high - low, 1e-6), 0.0, 1.5).astype(np.float32)


def resample(image: np.ndarray, spacing_in: float, spacing_out: float, order: int) -> np.ndarray:
    return ndimage.zoom(image, spacing_in / spacing_out, order=order, prefilter=False)


def fit(array: np.ndarray, size: int) -> np.ndarray:
    """Centre crop or zero pad to size x size."""
    out = np.zeros((size, size), array.dtype)
    rows, cols = array.shape
    r0, c0 = max((rows - size) // 2, 0), max((cols - size) // 2, 0)
    crop = array[r0 : r0 + size, c0 : c0 + size]
    t0, l0 = (size - crop.shape[0]) // 2, (size - crop.shape[1]) // 2
    out[t0 : t0 + crop.shape[0], l0 : l0 + crop.shape[1]] = crop
    return out


def phantom_training_set(
    patients: int, seed: int, spacing: float, phases_per_patient: int
) -> tuple[np.ndarray, np.ndarray, list[str], float]:
    """Phantom slices resampled onto a CANVAS x CANVAS grid: images, LV masks, groups, seconds."""
    start = time.perf_counter()
    images, masks, groups = [], [], []
    for index in range(patients):
        rng = np.random.default_rng([seed, index, 99])
        es = phantom.generate_patient(index, seed, phases=[0], downscale=8).es_phase
        others = [p for p in range(phantom.PHASES) if p not in (0, es)]
        extra = rng.choice(others, size=max(phases_per_patient - 2, 0), replace=False)
        patient = phantom.generate_patient(index, seed, phases=[0, es, *extra.tolist()])
        for record in phantom.patient_records(patient, "all"):
            image = resample(record.image, record.pixel_spacing_mm[0], spacing, 1)
            mask = (
                resample(
                    record.masks[LV].astype(np.float32), record.pixel_spacing_mm[0], spacing, 1
                )
                > 0.5
            )
            images.append(fit(normalise(image), CANVAS))
            masks.append(fit(mask, CANVAS))
            groups.append(record.group)
    return np.stack(images), np.stack(masks), groups, time.perf_counter() - start


# --------------------------------------------------------------------------------------------
# Augmentation (on batches, in torch)


def sample_batch(
    images: torch.Tensor,
    masks: torch.Tensor,
    centres: torch.Tensor,
    batch: int,
    crop: int,
    generator: torch.Generator,
    near_heart: float = 0.85,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops around (mostly) the heart with rotation, scaling and intensity changes."""
    n, _, size, _ = images.shape
    index = torch.randint(0, n, (batch,), generator=generator)
    rand = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    angle = (rand(batch) - 0.5) * 2 * math.radians(30)
    scale = torch.exp((rand(batch) - 0.5) * 2 * math.log(1.3))
    aspect = torch.exp((rand(batch) - 0.5) * 2 * math.log(1.1))
    # crop centre: near the heart (share near_heart), anywhere otherwise (normalised coords);
    # the periphery matters: arms and bowel outside the chest look like an LV to a small net
    jitter = (rand(batch, 2) - 0.5) * 2 * (0.45 * crop / size)
    anywhere = (rand(batch, 2) - 0.5) * 1.2
    near = rand(batch) < near_heart
    centre = torch.where(near[:, None], centres[index] + jitter, anywhere)
    half = crop / size
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = cos * half * scale * aspect
    theta[:, 0, 1] = -sin * half * scale
    theta[:, 1, 0] = sin * half * scale * aspect
    theta[:, 1, 1] = cos * half * scale
    theta[:, :, 2] = centre
    grid = F.affine_grid(theta, (batch, 1, crop, crop), align_corners=False)
    x = F.grid_sample(images[index], grid, mode="bilinear", align_corners=False)
    y = F.grid_sample(masks[index], grid, mode="bilinear", align_corners=False) > 0.5

    # intensity: bias field, gamma, contrast, blur or sharpen, noise; then renormalise
    coarse = 1.0 + 0.3 * (torch.rand(batch, 1, 3, 3, generator=generator) - 0.5) * 2
    x = x * F.interpolate(coarse, size=(crop, crop), mode="bicubic", align_corners=False)
    gamma = torch.exp((rand(batch, 1, 1, 1) - 0.5) * 2 * math.log(1.7))
    x = x.clamp(min=0) ** gamma
    blur = rand(batch) < 0.3
    if blur.any():
        kernel = torch.tensor([0.25, 0.5, 0.25])
        kernel = (kernel[:, None] * kernel[None, :])[None, None]
        x[blur] = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), kernel)
    x = x + torch.randn(x.shape, generator=generator) * rand(batch, 1, 1, 1) * 0.06
    x = x * (0.7 + 0.6 * rand(batch, 1, 1, 1))
    return x, y.float()


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum((1, 2, 3))
    dice = (2 * inter + 1) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
    return bce + (1 - dice).mean()


# --------------------------------------------------------------------------------------------
# Evaluation


def predict(
    model: nn.Module, images: list[np.ndarray], spacing_in: float, spacing: float, batch: int = 16
) -> list[np.ndarray]:
    """LV masks at the images' own size: resample, pad, predict, map back, largest component."""
    masks = []
    for first in range(0, len(images), batch):
        chunk = images[first : first + batch]
        small = [normalise(resample(i.astype(np.float32), spacing_in, spacing, 1)) for i in chunk]
        rows = max(s.shape[0] for s in small)
        cols = max(s.shape[1] for s in small)
        rows, cols = rows + (-rows) % 16, cols + (-cols) % 16
        x = np.stack([np.pad(s, ((0, rows - s.shape[0]), (0, cols - s.shape[1]))) for s in small])
        with torch.no_grad():
            logits = model(torch.from_numpy(x)[:, None])
        for image, s, logit in zip(chunk, small, logits, strict=True):
            logit = logit[None, :, : s.shape[0], : s.shape[1]]
            logit = F.interpolate(logit, size=image.shape, mode="bilinear", align_corners=False)
            masks.append(largest_component(logit[0, 0].numpy() > 0))
    return masks


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    return labels == (1 + int(np.argmax(sizes)))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * float((a & b).sum()) / float(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=160)
    parser.add_argument("--phases", type=int, default=3, help="phases per patient (ED, ES, ...)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--spacing", type=float, default=2.0, help="mm per pixel for the network")
    parser.add_argument("--steps", type=int, default=2400)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--near-heart", type=float, default=0.85, help="share of crops at the LV")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save-model", type=Path, default=None)
    parser.add_argument("--real", type=Path, default=REAL_DATA)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if not args.real.is_dir():
        print(f"real data not found at {args.real}; nothing to evaluate", file=sys.stderr)
        raise SystemExit(2)

    images, masks, groups, generation_s = phantom_training_set(
        args.patients, args.seed, args.spacing, args.phases
    )
    print(
        f"phantom: {args.patients} patients, {len(images)} slices, generated in "
        f"{generation_s:.0f} s",
        flush=True,
    )
    centres = []
    for mask in masks:
        rows, cols = np.nonzero(mask)
        centre_px = np.array([cols.mean(), rows.mean()]) if rows.size else np.full(2, CANVAS / 2)
        centres.append((centre_px + 0.5) / CANVAS * 2 - 1)
    images_t = torch.from_numpy(images)[:, None]
    masks_t = torch.from_numpy(masks.astype(np.float32))[:, None]
    centres_t = torch.tensor(np.array(centres), dtype=torch.float32)

    model = SmallUNet()
    parameters = sum(p.numel() for p in model.parameters())
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=3e-3, total_steps=args.steps, pct_start=0.1
    )
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    running = 0.0
    model.train()
    for step in range(1, args.steps + 1):
        x, y = sample_batch(
            images_t, masks_t, centres_t, args.batch, args.crop, generator, args.near_heart
        )
        loss = loss_fn(model(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        value = float(loss.detach())
        running = 0.98 * running + 0.02 * value if step > 1 else value
        if step % 200 == 0:
            print(
                f"step {step:5d}  loss {running:.3f}  {time.perf_counter() - start:5.0f} s",
                flush=True,
            )
    training_s = time.perf_counter() - start
    if args.save_model:
        torch.save(model.state_dict(), args.save_model)

    model.eval()
    start = time.perf_counter()
    real = folders.read(args.real)
    by_group: dict[str, list[float]] = defaultdict(list)
    scores = []
    predictions = predict(model, [r.image for r in real], REAL_SPACING_MM, args.spacing)
    for record, predicted in zip(real, predictions, strict=True):
        score = dice(predicted, record.masks[LV])
        scores.append(score)
        by_group[record.group or "?"].append(score)
    evaluation_s = time.perf_counter() - start

    print()
    print("| quantity | value |")
    print("|---|---|")
    print(f"| phantom patients / slices | {args.patients} / {len(images)} |")
    print(f"| network | SmallUNet, {parameters / 1e3:.0f}k parameters, {args.spacing} mm/px |")
    print(f"| phantom generation | {generation_s:.0f} s |")
    print(f"| training ({args.steps} steps x {args.batch}) | {training_s:.0f} s |")
    print(f"| real slices evaluated | {len(scores)} ({evaluation_s:.0f} s) |")
    print(f"| real Dice mean | {statistics.mean(scores):.3f} |")
    print(f"| real Dice median | {statistics.median(scores):.3f} |")
    print(f"| real slices with Dice < 0.5 | {sum(s < 0.5 for s in scores)} |")
    for group in sorted(by_group):
        values = by_group[group]
        print(f"| real Dice, group {group} ({len(values)}) | {statistics.mean(values):.3f} |")


if __name__ == "__main__":
    main()
