"""Probes measure what they say on fixed inputs, transfer once per logged step, and the alert
rules fire on models built to vanish, explode or die, and stay quiet on a healthy run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lvseg.config import MonitorConfig
from lvseg.monitor.alerts import AlertRules
from lvseg.monitor.probes import HISTOGRAM_EDGES, LayerProbes, parameterised_layers


def one_step(model: nn.Module, probes: LayerProbes, step: int, x: torch.Tensor, scale=1.0):
    model.zero_grad()
    probes.begin_step(step)
    (model(x).sum() * scale).backward()
    probes.measure_gradients()
    return probes.collect(lr=0.01)


def test_statistics_are_exact_on_a_fixed_layer() -> None:
    linear = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[3.0, 4.0]]))  # |w| = 5
    model = nn.Sequential(linear, nn.ReLU())
    probes = LayerProbes(model, interval=1, histogram_every=1)
    x = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])  # outputs 7 and -7: one ReLU zero of two
    rows, histograms = one_step(model, probes, 1, x)
    values = {(layer, stat): value for layer, stat, value in rows}
    # d(sum relu(Wx))/dW = x of the positive sample only = [1, 1]: |g| = sqrt 2
    assert values[("0", "grad_norm")] == pytest.approx(math.sqrt(2))
    assert values[("0", "weight_norm")] == pytest.approx(5.0)
    assert values[("0", "update_ratio")] == pytest.approx(0.01 * math.sqrt(2) / 5)
    assert values[("1", "act_zero_fraction")] == 0.5
    assert values[("1", "act_mean")] == pytest.approx(3.5)
    assert values[("1", "act_std")] == pytest.approx(3.5)
    # both gradient entries are 1.0: log10 = 0, the top edge, counted in the last bin
    assert histograms["0"][-1] == 2 and sum(histograms["0"]) == 2
    assert len(histograms["0"]) == len(HISTOGRAM_EDGES) - 1


def test_probes_log_only_due_steps_with_one_transfer_each(monkeypatch) -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
    probes = LayerProbes(model, interval=5, histogram_every=2)
    assert [name for name, _ in parameterised_layers(model)] == ["0", "1", "3"]
    calls = {"n": 0}
    for method in ("cpu", "item", "tolist", "numpy", "__float__"):
        original = getattr(torch.Tensor, method)

        def counting(self, *args, _original=original, **kwargs):
            calls["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counting)
    x = torch.randn(2, 1, 8, 8)
    logged, with_histograms = [], []
    for step in range(1, 21):
        before = calls["n"]
        rows, histograms = one_step(model, probes, step, x)
        transfers = calls["n"] - before
        if rows:
            logged.append(step)
            assert transfers == 1, f"step {step}: {transfers} device-to-host transfers"
        else:
            assert transfers == 0, f"step {step} is not logged but transferred {transfers} times"
        if histograms:
            with_histograms.append(step)
    assert logged == [1, 5, 10, 15, 20] and probes.transfers == 5
    assert with_histograms == [1, 10, 20]  # every second logged step
    probes.remove()
    assert one_step(model, probes, 25, x)[0] and not any(
        stat.startswith("act_") for _, stat, _ in one_step(model, probes, 30, x)[0]
    )


def deep_stack(depth: int, gain: float, activation: type[nn.Module]) -> nn.Sequential:
    torch.manual_seed(0)
    layers = []
    for _ in range(depth):
        linear = nn.Linear(16, 16)
        with torch.no_grad():
            linear.weight.mul_(gain)
        layers += [linear, activation()]
    return nn.Sequential(*layers)


def alerts_of(model: nn.Module, steps: int, config: MonitorConfig, scale=lambda step: 1.0):
    probes, rules = LayerProbes(model, interval=1), AlertRules(config)
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    alerts = []
    for step in range(1, steps + 1):
        rows, _ = one_step(model, probes, step, x, scale(step))
        alerts += rules.check(step, rows)
    return alerts


def test_vanishing_gradients_alert_after_k_logged_steps() -> None:
    model = deep_stack(12, gain=0.05, activation=nn.Sigmoid)  # sigmoid' <= 1/4, tiny weights
    alerts = alerts_of(model, 8, MonitorConfig(vanishing_steps=5))
    vanishing = [a for a in alerts if a.rule == "vanishing"]
    assert vanishing and {a.step for a in vanishing} == {5}  # fires once, when the run reaches K
    assert "0" in {a.layer for a in vanishing}  # the first layer, furthest from the loss
    assert all(a.value < 1e-7 and a.threshold == 1e-7 for a in vanishing)
    assert "vanishing gradients in 0 at step 5" in vanishing[0].message


def test_exploding_gradients_alert_on_the_ceiling_and_on_a_jump() -> None:
    exploding = alerts_of(deep_stack(6, gain=8.0, activation=nn.Identity), 3, MonitorConfig())
    assert {a.rule for a in exploding} == {"exploding"} and {a.step for a in exploding} == {1}
    assert all(a.value > 100 for a in exploding)

    healthy = deep_stack(3, gain=1.0, activation=nn.Tanh)
    jumps = alerts_of(healthy, 10, MonitorConfig(), scale=lambda step: 50.0 if step == 9 else 1.0)
    assert jumps and {(a.rule, a.step) for a in jumps} == {("exploding", 9)}
    assert all(a.threshold < a.value for a in jumps)


def test_dead_units_and_nonfinite_values_alert() -> None:
    model = deep_stack(2, gain=1.0, activation=nn.ReLU)
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # the first ReLU never fires
    dead = alerts_of(model, 2, MonitorConfig())
    assert [(a.rule, a.layer, a.value) for a in dead if a.rule == "dead_units"] == [
        ("dead_units", "1", 1.0)
    ]
    nan = alerts_of(deep_stack(2, 1.0, nn.ReLU), 1, MonitorConfig(), lambda step: math.nan)
    assert {a.rule for a in nan} == {"nonfinite"}


def test_a_healthy_model_raises_no_alert() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 1, 1)
    )
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    probes, rules = LayerProbes(model, interval=1), AlertRules(MonitorConfig())
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    target = (x > 0).float()
    for step in range(1, 41):
        optimizer.zero_grad()
        probes.begin_step(step)
        nn.functional.binary_cross_entropy_with_logits(model(x), target).backward()
        probes.measure_gradients()
        optimizer.step()
        rows, _ = probes.collect(lr=1e-3)
        assert rules.check(step, rows) == []
