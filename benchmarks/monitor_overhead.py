"""Monitoring overhead: training step time with and without the live monitor's probes.

One process, one model, one fixed batch (16 phantom-like 128x128 slices), AdamW; the same
steps are timed in interleaved blocks with the monitor on (probes armed on step 1 and every
``interval`` steps, activation hooks, gradient histograms every ``histogram_every`` logged
steps, alerts judged, rows written to a real run store in WAL mode) and off (hooks removed).
Interleaving cancels the drift of a busy machine. The watch slices cost once per epoch and are
timed separately, against the time of one epoch of the Sunnybrook default recipe (26 steps).

Run from the project root (about 2 minutes on 2 CPU cores)::

    .venv/bin/python -m benchmarks.monitor_overhead [--model lvnet] [--steps 400] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lvseg.config import MonitorConfig
from lvseg.model.registry import build_model
from lvseg.monitor.recorder import TrainingMonitor
from lvseg.monitor.watch import WatchSlices
from lvseg.runs.store import RunStore
from lvseg.train.losses import segmentation_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="lvnet")
    parser.add_argument("--steps", type=int, default=400, help="timed steps per condition")
    parser.add_argument("--block", type=int, default=20, help="steps per interleaved block")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(args.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    images = torch.randn(args.batch_size, 1, args.size, args.size, device=device)
    target = (images[:, 0] > 0.5).float()
    config = MonitorConfig()
    store = RunStore.create(Path(tempfile.mkdtemp()) / "run", {})
    monitor = TrainingMonitor(config, model, store, None, device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(number: int, monitored: bool) -> None:
        optimizer.zero_grad(set_to_none=True)
        if monitored:
            monitor.begin_step(number)
        output = model(images)
        loss = segmentation_loss(output.logits, output.presence_logit, target).total
        loss.backward()
        if monitored:
            monitor.after_backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        metrics = {"loss": float(loss.detach())}  # the engine's own per-step logging
        if monitored:
            monitor.end_step(number, 1, 1e-3, metrics)

    for number in range(1, 11):  # warm-up
        step(number, True)
    times: dict[bool, list[float]] = {True: [], False: []}
    number = 10
    blocks = max(1, args.steps // args.block)
    for block in range(2 * blocks):
        monitored = block % 2 == 0
        sync()
        start = time.perf_counter()
        for _ in range(args.block):
            number += 1
            step(number, monitored)
        sync()
        times[monitored].append((time.perf_counter() - start) / args.block)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    logged = len({row["step"] for row in store.layer_stats()})
    layers = len(monitor.probes.layers)
    activations = len(monitor.probes.activation_names)

    # watch slices: 4 slices segmented and 8 PNGs written, once per epoch
    cache = _FakeCache(images.cpu(), target.cpu())
    watch = WatchSlices(cache, [0, 1, 2, 3])
    watch_times = []
    for epoch in range(5):
        start = time.perf_counter()
        watch.record(model, epoch + 1, device, lambda *a, **k: store.log_watch(*a, **k))
        watch_times.append(time.perf_counter() - start)
    model.train()
    watch_s = statistics.median(watch_times)
    epoch_s = 26 * off  # 420 training slices / batch 16: one Sunnybrook fold epoch
    store.close()
    monitor.close()

    print(
        f"\nMonitoring overhead, {args.model} ({layers} parameterised layers, {activations} "
        f"activation layers), batch {args.batch_size} @{args.size}, {device} x{args.threads}, "
        f"interval {config.interval}, histograms every {config.histogram_every} logged steps "
        f"({logged} steps logged)\n"
    )
    print("| measure | without monitor | with monitor | overhead |")
    print("|---|---|---|---|")
    print(
        f"| step time (median of {blocks} blocks of {args.block}) | {off * 1000:.1f} ms | "
        f"{on * 1000:.1f} ms | {100 * (on / off - 1):+.1f}% |"
    )
    print(
        f"| watch slices, once per epoch (4 slices, 8 PNGs) vs a 26-step epoch | "
        f"{epoch_s:.2f} s | {epoch_s + watch_s:.2f} s | {100 * watch_s / epoch_s:+.1f}% |"
    )


class _FakeCache:
    """Just enough of CachedSlices for WatchSlices: a fixed batch of images and masks."""

    def __init__(self, images: torch.Tensor, target: torch.Tensor) -> None:
        self.images, self.target = images, target
        self.entries = [{"patient_id": f"P{i}"} for i in range(len(images))]

    def batch(self, indices):
        from lvseg.data.preprocess import Batch

        index = torch.as_tensor(indices)
        return Batch(
            self.images[index],
            self.target[index][:, None],
            torch.ones(len(index), 1, dtype=torch.bool),
            index,
        )


if __name__ == "__main__":
    main()
