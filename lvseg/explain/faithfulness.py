"""Is an explanation map right, faithful, and about the model? Three checks, per slice.

1. **Localisation** (:func:`localisation`): the energy-based pointing game (Wang et al.,
   Score-CAM, CVPRW 2020), the share of the map's positive energy that falls inside the reference
   LV,

       E_in = sum_{p in D(LV)} max(M(p), 0) / sum_p max(M(p), 0),

   with D the reference dilated by a few pixels (a map peaks on the boundary it draws, which the
   contour may miss by a pixel or two), and the pointing game (Zhang et al., 2016): is the
   map's maximum inside D(LV)? Slices without reference LV are left out (``None`` entries).

2. **Deletion / insertion** (:func:`deletion_insertion`; Petsiuk, Das and Saenko, RISE, BMVC
   2018). The score is the model's mean LV probability over a fixed region (by default its own LV
   prediction on the intact image). Deletion replaces the most salient pixels first with a
   baseline value and records the score at fractions 0, 1/steps, ..., 1 of the pixels; a faithful
   map makes it fall fast (low area under the curve). Insertion starts from the baseline and
   reveals the most salient pixels first; a faithful map makes it rise fast (high area). The same
   curves in a random pixel order (seeded) are the yardstick: a map is only informative if it
   beats random order. Pixels with equal saliency (Grad-CAM's zeros) are taken in random order.

   *Baseline: the image mean*, not a blurred copy. The LV evidence in cine MRI is largely of low
   spatial frequency (a blood pool 20-40 px across on a 128 px crop, brighter than the
   myocardium around it), and a Gaussian blur of sigma 5 px keeps a bright blob where the pool
   was, so a "deleted" LV can still be found. The image mean (about 0 after the z-score
   normalisation) removes intensity and edges alike: the end point of deletion then means "no
   LV left". On the disc toy model of the tests both baselines rank salient above random order
   (deletion AUC 0.05 vs 0.46 with the mean, 0.13 vs 0.64 with a sigma-5 blur), but the fully
   blurred image still scores 0.04 against 0.002 for the mean, at discs 8-12 px across. The price
   is the usual one of constant fills: scattered replaced pixels are patterns the model never
   saw, which is why the random-order curve, paying the same price, is the yardstick.

3. **Sanity check** (:func:`sanity_check`; Adebayo et al., "Sanity checks for saliency maps",
   NeurIPS 2018): cascading randomisation. On a deep copy of the model the parameterised layers
   (the modules with their own parameters and a ``reset_parameters``: convolutions, BatchNorm)
   are re-initialised one by one from the output down, as Quantus' ``ModelParameterRandomisation``
   does, and the maps are recomputed after each. A map that still looks like the trained model's
   after the weights are gone explains the image, not the model. Similarity to the trained maps:
   Spearman rank correlation of the absolute map values and SSIM of the min-max normalised maps,
   means over images. The target region stays the trained model's LV prediction throughout.

:func:`summarise` turns the per-slice results into the means a report shows.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import ConstantInputWarning, spearmanr
from skimage.metrics import structural_similarity
from torch import nn

from lvseg.errors import InvalidInputError
from lvseg.model.classes import LV_CLASS

from .cam import (
    check_images,
    check_region,
    make_explainer,
    model_logits,
    nonempty,
    predicted_lv,
)

NO_LAYER = "(none)"
"""The first entry of :attr:`Sanity.layers`: the trained model, nothing randomised."""


# ---------------------------------------------------------------------------------------------
# Localisation


@dataclass
class Localisation:
    """How well one slice's map points at its reference LV."""

    energy_inside: float
    """Share of the positive map energy inside the dilated reference (0 for a map without any)."""
    pointing_hit: bool
    """Whether the map's maximum lies inside the dilated reference (False for a map <= 0)."""


def _check_maps(maps: torch.Tensor, images_or_maps_shape: tuple[int, ...] | None = None) -> None:
    if not isinstance(maps, torch.Tensor) or maps.dim() != 3:
        got = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise InvalidInputError(None, f"maps must have shape (B, H, W), got {got}")
    if images_or_maps_shape is not None and tuple(maps.shape) != images_or_maps_shape:
        raise InvalidInputError(
            None, f"maps must have shape {images_or_maps_shape}, got {tuple(maps.shape)}"
        )


def dilate(mask: torch.Tensor, radius_px: int) -> torch.Tensor:
    """(B, H, W) bool masks dilated by a disc of ``radius_px`` pixels (Euclidean)."""
    if radius_px == 0:
        return mask
    offsets = torch.arange(-radius_px, radius_px + 1, dtype=torch.float32)
    disc = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius_px**2).float()
    grown = F.conv2d(mask[:, None].float(), disc[None, None], padding=radius_px)
    return grown[:, 0] > 0.5


def localisation(
    maps: torch.Tensor, reference: torch.Tensor, dilation_px: int = 5
) -> list[Localisation | None]:
    """Energy inside and pointing hit of each map (B, H, W) against its reference LV (B, H, W).

    The list is aligned with the input; slices whose reference is empty get ``None`` (there is
    nothing to point at) and are left out of the means of :func:`summarise`.
    """
    _check_maps(maps)
    reference = check_region(reference, maps[:, None], name="reference")
    if isinstance(dilation_px, bool) or not isinstance(dilation_px, int) or dilation_px < 0:
        raise InvalidInputError(None, f"dilation_px must be an integer >= 0, got {dilation_px!r}")
    maps = maps.detach().double().cpu()  # energy sums over 16k pixels: float64
    inside = dilate(reference.cpu(), dilation_px)
    positive = maps.clamp(min=0).flatten(1)
    total = positive.sum(dim=1)
    within = (positive * inside.flatten(1)).sum(dim=1)
    peak = maps.flatten(1).argmax(dim=1)
    hits = inside.flatten(1).gather(1, peak[:, None])[:, 0]
    results: list[Localisation | None] = []
    for b in range(maps.shape[0]):
        if not reference[b].any():
            results.append(None)
        elif total[b] <= 0:
            results.append(Localisation(energy_inside=0.0, pointing_hit=False))
        else:
            results.append(
                Localisation(energy_inside=float(within[b] / total[b]), pointing_hit=bool(hits[b]))
            )
    return results


# ---------------------------------------------------------------------------------------------
# Deletion and insertion


@dataclass
class Curve:
    """Score against the fraction of pixels deleted (or inserted), and its area."""

    fractions: list[float]
    scores: list[float]
    auc: float
    """Trapezoid rule over ``fractions``, which run from 0 to 1."""


@dataclass
class Faithfulness:
    """The four curves of one slice: salient and random order, deletion and insertion."""

    deletion: Curve
    insertion: Curve
    random_deletion: Curve
    random_insertion: Curve


CURVES = ("deletion", "insertion", "random_deletion", "random_insertion")

CPU_BATCH = 4
"""Perturbed images per forward pass on a CPU. Small batches are faster there (the activations
of a few 128 x 128 images stay in cache): 20-step curves of the default LVNet took 0.71, 0.91,
1.0, 1.4 and 2.7 s per slice at batch 1, 4, 8, 16 and 64 on one thread of the development VM."""
ACCELERATOR_BATCH = 128
"""Perturbed images per forward pass on a GPU, where large batches pay."""


def trapezoid(fractions: Sequence[float], scores: Sequence[float]) -> float:
    """Area under the piecewise-linear curve through (fractions, scores)."""
    x, y = np.asarray(fractions, float), np.asarray(scores, float)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))


def lv_score(logits: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """(B,) mean LV probability over each image's (non-empty) region."""
    probability = logits.float().softmax(dim=1)[:, LV_CLASS]
    region = region.float()
    return (probability * region).flatten(1).sum(1) / region.flatten(1).sum(1)


def _order_ranks(saliency: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(N,) rank of each pixel when taken most salient first, ties in random order."""
    shuffle = torch.randperm(saliency.numel(), generator=generator)
    order = shuffle[torch.argsort(-saliency[shuffle], stable=True)]
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(order.numel())
    return ranks


def _perturbed(
    image: torch.Tensor,
    baseline: torch.Tensor,
    ranks: dict[str, torch.Tensor],
    counts: torch.Tensor,
) -> torch.Tensor:
    """(4 * (steps + 1), C, H, W): every step of every curve of one image, in :data:`CURVES`
    order."""
    shape = image.shape
    flat, base = image.flatten(1), baseline.flatten(1)  # (C, N)
    variants = []
    for curve in CURVES:
        taken = ranks[curve][None, :] < counts[:, None]  # (S, N): pixels deleted / revealed
        if curve.endswith("deletion"):
            variant = torch.where(taken[:, None], base[None], flat[None])
        else:
            variant = torch.where(taken[:, None], flat[None], base[None])
        variants.append(variant.reshape(len(counts), *shape))
    return torch.cat(variants)


def deletion_insertion(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    region: torch.Tensor | None = None,
    steps: int = 20,
    seed: int = 0,
    *,
    batch_size: int | None = None,
) -> list[Faithfulness]:
    """Deletion, insertion and their random-order baselines for each image (see the module
    docstring), one :class:`Faithfulness` per image.

    ``images`` (B, 1, H, W), ``maps`` (B, H, W) (higher = more salient), ``region`` (B, H, W)
    bool or None for the model's LV prediction on the intact image (empty: the whole image).
    The 4 * (steps + 1) perturbed copies of all images go through the model (in eval mode,
    no grad) ``batch_size`` at a time, across image boundaries; None: :data:`CPU_BATCH` on a
    CPU, :data:`ACCELERATOR_BATCH` elsewhere.
    """
    images = check_images(images, model)
    _check_maps(maps, (images.shape[0], *images.shape[-2:]))
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidInputError(None, f"steps must be an integer >= 1, got {steps!r}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if batch_size is None:
        batch_size = CPU_BATCH if device.type == "cpu" else ACCELERATOR_BATCH
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(None, f"batch_size must be an integer >= 1, got {batch_size!r}")
    model.eval()
    images = images.detach().to(device)
    batch, pixels = images.shape[0], images.shape[-2] * images.shape[-1]
    with torch.no_grad():
        if region is None:
            region = predicted_lv(model_logits(model(images)))
        region = nonempty(check_region(region, images).to(device))

    fractions = [i / steps for i in range(steps + 1)]
    counts = torch.tensor([round(f * pixels) for f in fractions])
    generator = torch.Generator().manual_seed(seed)
    maps = maps.detach().float().cpu()

    columns = torch.arange(len(CURVES) * len(counts))
    scores = torch.empty(batch, len(columns))
    queue = images.new_empty(0, *images.shape[1:]).cpu()
    keys = torch.empty(0, 2, dtype=torch.long)  # (image, column) of each queued row

    def score(rows: int) -> None:
        nonlocal queue, keys
        chunk, owners = queue[:rows].to(device), keys[:rows]
        with torch.inference_mode():
            values = lv_score(model_logits(model(chunk)), region[owners[:, 0].to(device)])
        scores[owners[:, 0], owners[:, 1]] = values.cpu()
        queue, keys = queue[rows:], keys[rows:]

    for b in range(batch):
        ranks = {
            "deletion": _order_ranks(maps[b].flatten(), generator),
            "random_deletion": torch.randperm(pixels, generator=generator),
            "random_insertion": torch.randperm(pixels, generator=generator),
        }
        ranks["insertion"] = ranks["deletion"]
        image = images[b].cpu()
        baseline = image.mean(dim=(1, 2), keepdim=True).expand_as(image)
        queue = torch.cat([queue, _perturbed(image, baseline, ranks, counts)])
        keys = torch.cat([keys, torch.stack([torch.full_like(columns, b), columns], dim=1)])
        while len(queue) >= batch_size:
            score(batch_size)
    if len(queue):
        score(len(queue))

    results = []
    for b in range(batch):
        curves = {}
        for i, curve in enumerate(CURVES):
            values = scores[b, i * len(counts) : (i + 1) * len(counts)].tolist()
            curves[curve] = Curve(fractions, values, trapezoid(fractions, values))
        results.append(Faithfulness(**curves))
    return results


# ---------------------------------------------------------------------------------------------
# Sanity check


@dataclass
class Sanity:
    """Similarity of the maps to the trained model's after each cascading randomisation step."""

    layers: list[str]
    """``NO_LAYER`` first, then the re-initialised layers, output first (cumulative)."""
    spearman: list[float]
    """Mean over images of the Spearman correlation of |map| with the trained model's |map|."""
    ssim: list[float]
    """Mean over images of the SSIM of the min-max normalised maps."""


def randomisable_layers(model: nn.Module) -> list[str]:
    """Modules with parameters of their own and ``reset_parameters``, output first."""
    names = [
        name
        for name, module in model.named_modules()
        if name
        and callable(getattr(module, "reset_parameters", None))
        and any(True for _ in module.parameters(recurse=False))
    ]
    return names[::-1]


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two maps' absolute values; a constant map shares no ranks with
    another map (0), two identical maps correlate fully (1)."""
    a, b = np.abs(a).ravel(), np.abs(b).ravel()
    if np.array_equal(a, b):
        return 1.0
    if a.min() == a.max() or b.min() == b.max():
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        value = spearmanr(a, b).statistic
    return 0.0 if math.isnan(value) else float(value)


def _unit(a: np.ndarray) -> np.ndarray:
    span = a.max() - a.min()
    return (a - a.min()) / span if span > 0 else np.zeros_like(a)


def map_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two maps after min-max normalisation to [0, 1] (a constant map becomes 0)."""
    return float(structural_similarity(_unit(a), _unit(b), data_range=1.0))


def sanity_check(
    model: nn.Module,
    images: torch.Tensor,
    method: str,
    layer: str | None = None,
    seed: int = 0,
) -> Sanity:
    """Cascading randomisation (see the module docstring) on a deep copy; ``model`` is left as
    it was. Layer ``i`` of the result has layers 1..i re-initialised (seeded by ``seed``)."""
    images = check_images(images, model)
    reference_maps = make_explainer(method, model, layer)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with torch.no_grad():
        region = predicted_lv(model_logits(model.eval()(images.to(device))))
    trained = reference_maps(images, region).cpu().double().numpy()
    copied = copy.deepcopy(model)
    layers, spearman, ssim = [NO_LAYER], [1.0], [1.0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in randomisable_layers(copied):
            copied.get_submodule(name).reset_parameters()
            maps = make_explainer(method, copied, layer)(images, region).cpu().double().numpy()
            layers.append(name)
            spearman.append(
                float(np.mean([rank_correlation(t, m) for t, m in zip(trained, maps, strict=True)]))
            )
            ssim.append(
                float(np.mean([map_ssim(t, m) for t, m in zip(trained, maps, strict=True)]))
            )
    return Sanity(layers, spearman, ssim)


# ---------------------------------------------------------------------------------------------
# Summary


def summarise(
    localisations: Sequence[Localisation | None] = (),
    faithfulness: Sequence[Faithfulness] = (),
) -> dict[str, float]:
    """Means over slices for a report; keys (absent when there is nothing to average):

    - ``slices_with_reference``: slices that entered the localisation means;
    - ``energy_inside``: mean share of positive map energy inside the dilated reference LV;
    - ``pointing_accuracy``: share of those slices whose map maximum lies inside it;
    - ``slices``: slices in the deletion/insertion means;
    - ``deletion_auc``, ``insertion_auc``, ``random_deletion_auc``, ``random_insertion_auc``:
      mean areas under the curves;
    - ``deletion_gain`` = random_deletion_auc - deletion_auc and ``insertion_gain`` =
      insertion_auc - random_insertion_auc: how much the map beats random order (> 0: it does);
    - ``deletion_win_rate``, ``insertion_win_rate``: share of slices where it beats random order.
    """
    summary: dict[str, float] = {}
    located = [item for item in localisations if item is not None]
    if located:
        summary["slices_with_reference"] = float(len(located))
        summary["energy_inside"] = float(np.mean([item.energy_inside for item in located]))
        summary["pointing_accuracy"] = float(np.mean([item.pointing_hit for item in located]))
    if faithfulness:
        summary["slices"] = float(len(faithfulness))
        for curve in CURVES:
            summary[f"{curve}_auc"] = float(
                np.mean([getattr(item, curve).auc for item in faithfulness])
            )
        summary["deletion_gain"] = summary["random_deletion_auc"] - summary["deletion_auc"]
        summary["insertion_gain"] = summary["insertion_auc"] - summary["random_insertion_auc"]
        summary["deletion_win_rate"] = float(
            np.mean([f.deletion.auc < f.random_deletion.auc for f in faithfulness])
        )
        summary["insertion_win_rate"] = float(
            np.mean([f.insertion.auc > f.random_insertion.auc for f in faithfulness])
        )
    return summary
