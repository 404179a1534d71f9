"""Timing helper shared by the benchmark scripts."""

from __future__ import annotations

import time
from collections.abc import Callable


def wall_times(run: Callable[[], object], repeats: int, warm_ups: int = 1) -> list[float]:
    """Wall times of ``repeats`` calls, after ``warm_ups`` untimed calls."""
    for _ in range(warm_ups):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def best_seconds(run: Callable[[], object], repeats: int, warm_up: bool = True) -> float:
    """Shortest wall time of ``repeats`` calls (after one untimed warm-up call)."""
    return min(wall_times(run, repeats, warm_ups=int(warm_up)))
