"""Localisation by hand, deletion/insertion and the randomisation sanity check on a toy model
trained in seconds to find a bright disc (the "LV")."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lvseg.errors import InvalidInputError
from lvseg.explain.cam import CAM, GradCAM, make_explainer
from lvseg.explain.faithfulness import (
    CURVES,
    NO_LAYER,
    Curve,
    Faithfulness,
    Localisation,
    deletion_insertion,
    localisation,
    lv_score,
    randomisable_layers,
    rank_correlation,
    sanity_check,
    summarise,
    trapezoid,
)
from lvseg.model.registry import build_model

SIZE = 32


def discs(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy 32x32 images with one bright disc (radius 4-6 px) each, and the disc masks."""
    generator = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    cy, cx = (torch.randint(10, SIZE - 10, (count, 1, 1), generator=generator) for _ in "yx")
    radius = torch.randint(4, 7, (count, 1, 1), generator=generator)
    masks = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    images = 0.5 * torch.randn(count, SIZE, SIZE, generator=generator) + 2.0 * masks
    return images[:, None], masks


@pytest.fixture(scope="module")
def toy():
    """A small LVNet trained for 120 steps on disc images (about 3 s on one thread)."""
    torch.manual_seed(0)
    model = build_model("lvnet", width=8, depth=2)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(120):
        images, masks = discs(16, seed=100 + step)
        loss = F.cross_entropy(model(images).logits, masks.long())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    images, masks = discs(8, seed=1)
    with torch.no_grad():
        predicted = model(images).logits.argmax(dim=1).bool()
    dice = 2 * (predicted & masks).sum() / (predicted.sum() + masks.sum())
    assert dice > 0.9, f"the toy model did not learn the discs (Dice {dice:.2f})"
    return model, images, masks


# ---------------------------------------------------------------------------------------------
# Localisation


def test_localisation_energy_and_pointing_by_hand():
    maps = torch.zeros(3, 8, 8)
    reference = torch.zeros(3, 8, 8, dtype=torch.bool)
    reference[:, 2:4, 2:4] = True
    maps[0, 2, 2], maps[0, 7, 7], maps[0, 0, 7] = 3.0, 1.0, -5.0  # negatives carry no energy
    maps[1, 7, 7], maps[1, 3, 3] = 4.0, 1.0  # peak outside
    maps[2] = -1.0  # no positive energy
    results = localisation(maps, reference, dilation_px=0)
    assert results[0] == Localisation(energy_inside=0.75, pointing_hit=True)
    assert results[1] == Localisation(energy_inside=0.2, pointing_hit=False)
    assert results[2] == Localisation(energy_inside=0.0, pointing_hit=False)


def test_localisation_dilates_the_reference_by_a_disc():
    maps = torch.zeros(1, 16, 16)
    reference = torch.zeros(1, 16, 16, dtype=torch.bool)
    reference[0, 8, 8] = True
    maps[0, 8, 11] = 1.0  # 3 px right of the reference: inside a radius-3 disc
    maps[0, 10, 10] = 1.0  # sqrt(8) ~ 2.8 px away: inside
    maps[0, 11, 11] = 2.0  # sqrt(18) ~ 4.2 px away: outside
    (result,) = localisation(maps, reference, dilation_px=3)
    assert result == Localisation(energy_inside=0.5, pointing_hit=False)
    (wider,) = localisation(maps, reference, dilation_px=5)
    assert wider == Localisation(energy_inside=1.0, pointing_hit=True)


def test_localisation_leaves_out_slices_without_reference():
    maps = torch.rand(2, 8, 8)
    reference = torch.zeros(2, 8, 8, dtype=torch.bool)
    reference[1, 4, 4] = True
    results = localisation(maps, reference)
    assert results[0] is None and isinstance(results[1], Localisation)
    assert summarise(results)["slices_with_reference"] == 1


def test_localisation_refuses_bad_input():
    with pytest.raises(InvalidInputError, match="maps must have shape"):
        localisation(torch.zeros(1, 1, 8, 8), torch.zeros(1, 8, 8, dtype=torch.bool))
    with pytest.raises(InvalidInputError, match="reference must have shape"):
        localisation(torch.zeros(1, 8, 8), torch.zeros(1, 4, 4, dtype=torch.bool))
    with pytest.raises(InvalidInputError, match="dilation_px"):
        localisation(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8, dtype=torch.bool), -1)


def test_cam_of_the_toy_model_points_at_the_disc(toy):
    model, images, masks = toy
    summary = summarise(localisation(CAM(model)(images), masks))
    assert summary["pointing_accuracy"] == 1.0 and summary["energy_inside"] > 0.9


# ---------------------------------------------------------------------------------------------
# Deletion and insertion


def test_trapezoid():
    assert trapezoid([0.0, 0.5, 1.0], [1.0, 0.0, 0.0]) == pytest.approx(0.25)
    assert trapezoid([0.0, 1.0], [0.4, 0.4]) == pytest.approx(0.4)


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_salient_order_beats_random_order_on_the_toy_model(toy, method):
    model, images, _ = toy
    explainer = CAM(model) if method == "cam" else GradCAM(model)  # the default layer
    results = deletion_insertion(model, images, explainer(images), steps=10)
    summary = summarise(faithfulness=results)
    assert summary["deletion_auc"] < summary["random_deletion_auc"] - 0.1
    assert summary["insertion_auc"] > summary["random_insertion_auc"] + 0.1
    assert summary["deletion_win_rate"] >= 0.75 and summary["insertion_win_rate"] >= 0.75


def test_curves_start_and_end_where_they_must(toy):
    model, images, _ = toy
    images = images[:3]
    maps = CAM(model)(images)
    results = deletion_insertion(model, images, maps, steps=4)
    with torch.no_grad():
        logits = model(images).logits
        region = logits.argmax(dim=1) == 1
        intact = lv_score(logits, region)
        baseline = images.mean(dim=(1, 2, 3), keepdim=True).expand_as(images)
        blank = lv_score(model(baseline).logits, region)
    for b, result in enumerate(results):
        assert isinstance(result, Faithfulness)
        for curve in CURVES:
            values: Curve = getattr(result, curve)
            assert values.fractions == [0.0, 0.25, 0.5, 0.75, 1.0] and len(values.scores) == 5
            assert values.auc == pytest.approx(trapezoid(values.fractions, values.scores))
            start, end = (intact[b], blank[b]) if "deletion" in curve else (blank[b], intact[b])
            assert values.scores[0] == pytest.approx(float(start), abs=1e-5)
            assert values.scores[-1] == pytest.approx(float(end), abs=1e-5)


def test_batching_and_seed_do_not_change_the_salient_curves(toy):
    model, images, masks = toy
    images, masks = images[:3], masks[:3]
    maps = CAM(model)(images)
    one = deletion_insertion(model, images, maps, region=masks, steps=5, seed=3, batch_size=7)
    many = deletion_insertion(model, images, maps, region=masks, steps=5, seed=3, batch_size=500)
    other_seed = deletion_insertion(model, images, maps, region=masks, steps=5, seed=4)
    for a, b, c in zip(one, many, other_seed, strict=True):
        for curve in CURVES:
            assert np.allclose(getattr(a, curve).scores, getattr(b, curve).scores, atol=1e-5)
        assert np.allclose(a.deletion.scores, c.deletion.scores, atol=1e-5)  # CAM has no ties
        assert not np.allclose(a.random_deletion.scores, c.random_deletion.scores, atol=1e-5)


def test_deletion_insertion_refuses_bad_input(toy):
    model, images, _ = toy
    with pytest.raises(InvalidInputError, match="maps must have shape"):
        deletion_insertion(model, images, torch.zeros(8, 16, 16))
    with pytest.raises(InvalidInputError, match="steps must be"):
        deletion_insertion(model, images, torch.zeros(8, SIZE, SIZE), steps=0)
    with pytest.raises(InvalidInputError, match="region must have shape"):
        deletion_insertion(model, images, torch.zeros(8, SIZE, SIZE), region=torch.ones(8, 4, 4))


# ---------------------------------------------------------------------------------------------
# Sanity check


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_randomised_weights_change_the_maps(toy, method):
    model, images, _ = toy
    before = copy.deepcopy(model.state_dict())
    sanity = sanity_check(model, images[:4], method, seed=0)
    assert sanity.layers[0] == NO_LAYER and sanity.layers[1:] == randomisable_layers(model)
    assert sanity.layers[1] == "head" and len(sanity.layers) == len(sanity.spearman)
    assert sanity.spearman[0] == 1.0 and sanity.ssim[0] == 1.0
    assert sanity.spearman[-1] < 0.5 and sanity.ssim[-1] < 0.5
    # The model itself is untouched, and the same seed gives the same numbers.
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    assert sanity_check(model, images[:4], method, seed=0) == sanity


def test_sanity_check_of_an_unchanged_model_is_one(toy):
    model, images, _ = toy
    maps = make_explainer("cam", model)(images[:2]).numpy()
    assert rank_correlation(maps[0], maps[0]) == 1.0
    assert rank_correlation(maps[0], np.zeros_like(maps[0])) == 0.0


def test_summarise_keys():
    curve = Curve([0.0, 1.0], [1.0, 0.0], 0.5)
    flat = Curve([0.0, 1.0], [1.0, 1.0], 1.0)
    summary = summarise(
        [Localisation(0.5, True), None, Localisation(1.0, False)],
        [Faithfulness(curve, flat, flat, curve)],
    )
    assert summary == {
        "slices_with_reference": 2.0,
        "energy_inside": 0.75,
        "pointing_accuracy": 0.5,
        "slices": 1.0,
        "deletion_auc": 0.5,
        "insertion_auc": 1.0,
        "random_deletion_auc": 1.0,
        "random_insertion_auc": 0.5,
        "deletion_gain": 0.5,
        "insertion_gain": 0.5,
        "deletion_win_rate": 1.0,
        "insertion_win_rate": 1.0,
    }
    assert summarise() == {}
