"""Alerts on the per-layer statistics: vanishing, exploding, dead units, non-finite values.

Rules, each judged per layer on every logged step (thresholds from
:class:`lvseg.config.MonitorConfig`):

- ``vanishing``: ``grad_norm`` below ``vanishing_floor`` for ``vanishing_steps`` logged steps in
  a row;
- ``exploding``: ``grad_norm`` above ``exploding_ceiling``, or above ``exploding_jump`` times
  the median of the layer's last ``jump_window`` logged values (judged once 5 are known);
- ``dead_units``: ``act_zero_fraction`` above ``dead_fraction``;
- ``nonfinite``: any statistic NaN or infinite.

An alert fires when its condition starts and not again until the condition has cleared, so a
layer that stays dead raises one alert, not one per step. Pure Python; no torch.

>>> from lvseg.config import MonitorConfig
>>> rules = AlertRules(MonitorConfig(exploding_ceiling=10.0))
>>> [a.message for a in rules.check(1, [("conv1", "grad_norm", 50.0)])]
['exploding gradients in conv1 at step 1: gradient norm 50 > 10']
>>> rules.check(2, [("conv1", "grad_norm", 60.0)])
[]
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass

from lvseg.config import MonitorConfig

RULES = ("vanishing", "exploding", "dead_units", "nonfinite")
MIN_HISTORY = 5
"""Logged values a layer needs before a jump over its running median is judged."""


@dataclass(frozen=True)
class Alert:
    rule: str
    layer: str
    step: int
    value: float
    threshold: float
    message: str

    def as_event_data(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "layer": self.layer,
            "value": self.value,
            "threshold": self.threshold,
        }


class AlertRules:
    """The alert state of one run: feed it each logged step's rows with :meth:`check`."""

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self._low_run: dict[str, int] = defaultdict(int)
        self._history: dict[str, deque[float]] = defaultdict(
            lambda: deque(maxlen=config.jump_window)
        )
        self._active: set[tuple[str, str]] = set()

    def check(self, step: int, rows: Iterable[tuple[str, str, float]]) -> list[Alert]:
        """The alerts that start at ``step`` given its ``(layer, stat, value)`` rows."""
        config = self.config
        firing: dict[tuple[str, str], Alert] = {}

        def fire(rule: str, layer: str, value: float, threshold: float, text: str) -> None:
            message = f"{text} in {layer} at step {step}: {_describe(rule, value, threshold)}"
            firing.setdefault((rule, layer), Alert(rule, layer, step, value, threshold, message))

        for layer, stat, value in rows:
            if not math.isfinite(value):
                if stat != "update_ratio":  # NaN there only means a zero weight norm
                    fire("nonfinite", layer, value, math.inf, "non-finite " + stat)
                continue
            if stat == "grad_norm":
                history = self._history[layer]
                if value < config.vanishing_floor:
                    self._low_run[layer] += 1
                    if self._low_run[layer] >= config.vanishing_steps:
                        fire(
                            "vanishing", layer, value, config.vanishing_floor, "vanishing gradients"
                        )
                else:
                    self._low_run[layer] = 0
                if value > config.exploding_ceiling:
                    fire("exploding", layer, value, config.exploding_ceiling, "exploding gradients")
                elif len(history) >= MIN_HISTORY:
                    median = statistics.median(history)
                    limit = config.exploding_jump * median
                    if median > 0 and value > limit:
                        fire("exploding", layer, value, limit, "exploding gradients")
                history.append(value)
            elif stat == "act_zero_fraction" and value > config.dead_fraction:
                fire("dead_units", layer, value, config.dead_fraction, "dead units")
        started = [alert for key, alert in firing.items() if key not in self._active]
        self._active = set(firing)
        return started


def _describe(rule: str, value: float, threshold: float) -> str:
    if rule == "nonfinite":
        return f"value {value}"
    if rule == "dead_units":
        return f"{value:.1%} of activations are exactly zero (> {threshold:.0%})"
    relation = "<" if rule == "vanishing" else ">"
    return f"gradient norm {value:.3g} {relation} {threshold:.3g}"
