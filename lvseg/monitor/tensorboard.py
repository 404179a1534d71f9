"""``lvseg train --tensorboard``: the monitor's scalars, histograms and pictures as event files.

For people who live in TensorBoard: ``tensorboard --logdir runs/NAME/tensorboard`` shows the
step metrics (``step/loss``, ``step/lr``, ...), the epoch metrics (``epoch/val_dice``, ...), every
layer's statistics (``grad_norm/LAYER``, ...), the gradient histograms (over log10 |gradient|, the
same fixed bins the dashboard draws) and the watch slices' pictures. Written with PyTorch's own
``SummaryWriter``, which needs the ``tensorboard`` package (``pip install "lvseg[tensorboard]"``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lvseg.errors import InvalidInputError

from .probes import HISTOGRAM_EDGES


class TensorBoardWriter:
    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise InvalidInputError(
                None,
                "--tensorboard needs the tensorboard package: pip install 'lvseg[tensorboard]'",
            ) from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def step(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"step/{name}", value, step)

    def epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if math.isfinite(value):
                    self.writer.add_scalar(f"epoch/{name}", value, epoch)

    def layers(
        self,
        step: int,
        rows: Sequence[tuple[str, str, float]],
        histograms: dict[str, Sequence[float]],
    ) -> None:
        for layer, stat, value in rows:
            if math.isfinite(value):
                self.writer.add_scalar(f"{stat}/{layer}", value, step)
        centres = [
            (a + b) / 2 for a, b in zip(HISTOGRAM_EDGES[:-1], HISTOGRAM_EDGES[1:], strict=True)
        ]
        for layer, counts in histograms.items():
            filled = [i for i, count in enumerate(counts) if count > 0]
            if not filled:
                continue
            total = float(sum(counts))
            self.writer.add_histogram_raw(
                f"log10_abs_grad/{layer}",
                min=HISTOGRAM_EDGES[filled[0]],
                max=HISTOGRAM_EDGES[filled[-1] + 1],
                num=total,
                sum=sum(c * x for c, x in zip(counts, centres, strict=True)),
                sum_squares=sum(c * x * x for c, x in zip(counts, centres, strict=True)),
                bucket_limits=list(HISTOGRAM_EDGES[1:]),
                bucket_counts=list(counts),
                global_step=step,
            )

    def picture(self, tag: str, epoch: int, png: bytes) -> None:
        picture = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        self.writer.add_image(tag, picture, epoch, dataformats="HWC")

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
