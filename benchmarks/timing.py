"""Timing helper shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, which
puts this folder on ``sys.path``)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_seconds(run: Callable[[], object], repeats: int, warm_up: bool = True) -> float:
    """Shortest wall time of ``repeats`` calls (after one untimed warm-up call)."""
    if warm_up:
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)
