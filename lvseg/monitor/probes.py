"""Per-layer probes: gradient, weight and activation statistics, one host transfer per log.

Every ``interval`` steps (and on step 1) the probes measure, for every **parameterised layer**
(a module that owns parameters directly: a convolution, a BatchNorm, the presence head):

- ``grad_norm``: the L2 norm of its gradients, after un-scaling and *before* clipping (clipping
  would hide an explosion);
- ``weight_norm``: the L2 norm of its parameters;
- ``update_ratio``: ``lr * grad_norm / weight_norm``, the relative size of a plain SGD step
  (about 1e-3 is the textbook healthy value; 1e-1 means the layer is being rewritten);

every ``histogram_every`` logged steps a histogram of ``log10 |g|`` over the fixed bins
:data:`HISTOGRAM_EDGES` (out-of-range values, exact zeros included, land in the first or last
bin); and for every **activation layer** (ReLU and friends), through forward hooks armed only on
logging steps: ``act_mean``, ``act_std`` and ``act_zero_fraction`` (the share of exact zeros: a
ReLU unit that is always zero is dead).

All numbers of one logging step are computed on the model's device and gathered into a single
tensor, which crosses to the host in **one** transfer (:meth:`LayerProbes.collect`); nothing is
computed or synchronised on the steps in between. The caller (rank 0 of the engine) writes the
rows to the run store.

Hand-written rather than borrowed: TensorBoard and Weights & Biases hooks log one histogram per
parameter tensor with a device synchronisation each, which is what this module exists to avoid.

>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 1, 1))
>>> probes = LayerProbes(model, interval=10)
>>> probes.begin_step(1)
True
>>> model(torch.randn(2, 1, 8, 8)).sum().backward()
>>> probes.measure_gradients()
>>> rows, histograms = probes.collect(lr=0.1)
>>> sorted({stat for _, stat, _ in rows})
['act_mean', 'act_std', 'act_zero_fraction', 'grad_norm', 'update_ratio', 'weight_norm']
>>> sorted(histograms)
['0', '2']
>>> probes.begin_step(2), probes.begin_step(10)
(False, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

HISTOGRAM_EDGES: tuple[float, ...] = tuple(-10 + 0.25 * i for i in range(41))
"""Bin edges of log10 |gradient|: 40 bins of a quarter decade from 1e-10 to 1."""

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Sigmoid,
    nn.Tanh,
)
"""Module types whose outputs the activation probes watch."""

LAYER_STATS = ("grad_norm", "weight_norm", "update_ratio")
ACTIVATION_STATS = ("act_mean", "act_std", "act_zero_fraction")


def parameterised_layers(model: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """``(name, own parameters)`` of every module owning parameters directly, in model order.

    The root module's own parameters, if any, are named ``"(root)"``."""
    layers = []
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if own:
            layers.append((name or "(root)", own))
    return layers


def activation_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every activation module, in model order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ACTIVATIONS)]


class LayerProbes:
    """Statistics of every layer of ``model`` on logging steps; see the module docstring.

    Call :meth:`begin_step` before the forward pass (it arms the activation hooks when the
    step is due), :meth:`measure_gradients` after the backward pass and before clipping, and
    :meth:`collect` after the step to get the host-side rows.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        interval: int = 10,
        histogram_every: int = 10,
        activations: bool = True,
    ) -> None:
        if interval < 1 or histogram_every < 0:
            raise ValueError("interval must be >= 1 and histogram_every >= 0")
        self.interval = interval
        self.histogram_every = histogram_every
        self.layers = parameterised_layers(model)
        self.activation_names: list[str] = []
        self._activation_stats: list[torch.Tensor] = []
        self._gradient_stats: torch.Tensor | None = None
        self._histograms: torch.Tensor | None = None
        self._armed = False
        self._logged = 0
        self._handles = []
        if activations:
            for name, module in activation_layers(model):
                self.activation_names.append(name)
                self._handles.append(module.register_forward_hook(self._hook(name)))
        self._seen: list[str] = []
        self.transfers = 0
        """Device-to-host transfers made so far (one per :meth:`collect` with data)."""

    # ---------------------------------------------------------------- the step protocol

    def due(self, step: int) -> bool:
        """Whether ``step`` (1-based, the number the step will be logged under) is probed."""
        return step == 1 or step % self.interval == 0

    def begin_step(self, step: int) -> bool:
        """Arm the probes for ``step`` if it is due; returns whether it is."""
        self._armed = self.due(step)
        self._activation_stats = []
        self._seen = []
        self._gradient_stats = None
        self._histograms = None
        return self._armed

    def measure_gradients(self) -> None:
        """On an armed step: per-layer gradient and weight norms (and histograms when due),
        left on the device."""
        if not self._armed:
            return
        grad_norms, weight_norms = [], []
        for _, params in self.layers:
            grads = [p.grad for p in params if p.grad is not None]
            grad_norms.append(_norm(grads, params[0]))
            weight_norms.append(_norm([p.detach() for p in params], params[0]))
        self._gradient_stats = torch.stack(grad_norms + weight_norms).float()
        if self.histogram_every and self._logged % self.histogram_every == 0:
            self._histograms = torch.stack([_log_histogram(params) for _, params in self.layers])

    def collect(self, lr: float) -> tuple[list[tuple[str, str, float]], dict[str, list[float]]]:
        """The rows of the armed step, ``(layer, stat, value)``, and the histograms by layer.

        Everything crosses to the host in one ``.tolist()``; nothing is returned (and nothing
        transferred) on a step that was not due or had no backward pass."""
        armed, self._armed = self._armed, False
        if not armed or self._gradient_stats is None:
            return [], {}
        parts = [self._gradient_stats]
        if self._activation_stats:
            parts.append(torch.cat(self._activation_stats))
        if self._histograms is not None:
            parts.append(self._histograms.flatten())
        values = torch.cat([p.to(self._gradient_stats.device) for p in parts]).tolist()
        self.transfers += 1
        self._logged += 1
        count = len(self.layers)
        rows: list[tuple[str, str, float]] = []
        for i, (name, _) in enumerate(self.layers):
            grad, weight = values[i], values[count + i]
            ratio = lr * grad / weight if weight > 0 else math.nan
            rows += [(name, "grad_norm", grad), (name, "weight_norm", weight)]
            rows.append((name, "update_ratio", ratio))
        offset = 2 * count
        for name in self._seen:
            for stat in ACTIVATION_STATS:
                rows.append((name, stat, values[offset]))
                offset += 1
        histograms: dict[str, list[float]] = {}
        if self._histograms is not None:
            bins = len(HISTOGRAM_EDGES) - 1
            for name, _ in self.layers:
                histograms[name] = values[offset : offset + bins]
                offset += bins
        return rows, histograms

    def remove(self) -> None:
        """Remove the forward hooks (the model is left as it was)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # ---------------------------------------------------------------- internals

    def _hook(self, name: str) -> Callable[..., None]:
        def record(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
            if not self._armed or not isinstance(output, torch.Tensor):
                return
            with torch.no_grad():
                x = output.detach().float()
                stats = torch.stack([x.mean(), x.std(unbiased=False), (x == 0).float().mean()])
            self._activation_stats.append(stats)
            self._seen.append(name)  # a module called twice is recorded twice, in call order

        return record


def _norm(tensors: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    if not tensors:
        return torch.zeros((), device=like.device)
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(t.float()) for t in tensors])
    )


def _log_histogram(params: list[nn.Parameter]) -> torch.Tensor:
    low, high = HISTOGRAM_EDGES[0], HISTOGRAM_EDGES[-1]
    grads = [p.grad.detach().flatten().float() for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(len(HISTOGRAM_EDGES) - 1, device=params[0].device)
    magnitude = torch.cat(grads).abs()
    # log10 of 0 is -inf and of NaN is NaN: clamp puts the first in the lowest bin; NaNs go too.
    logs = torch.nan_to_num(magnitude.log10(), nan=high, neginf=low, posinf=high)
    return torch.histc(logs.clamp(low, high), bins=len(HISTOGRAM_EDGES) - 1, min=low, max=high)
