"""The training objective: boundary weights and deep supervision, on fixed tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lvseg.train import losses


def _example() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 16, 16, generator=generator)
    target = torch.zeros(3, 16, 16)
    target[0, 4:12, 4:12] = 1  # a large cavity
    target[1, 7:9, 7:9] = 1  # a small apical one
    return logits, torch.zeros(3), target


def test_boundary_band_is_the_pixels_within_two_of_an_edge():
    target = torch.zeros(1, 16, 16)
    target[0, 4:12, 4:12] = 1
    band = losses.boundary_weights(target, 1.0)[0] - 1.0
    # dilation by 2 (12x12) minus erosion by 2 (4x4): 144 - 16 pixels
    assert band.sum().item() == 128
    assert band[8, 8] == 0 and band[4, 4] == 1 and band[2, 2] == 1 and band[1, 1] == 0
    empty = losses.boundary_weights(torch.zeros(1, 8, 8), 5.0)
    assert torch.equal(empty, torch.ones(1, 8, 8))


def test_boundary_weight_is_a_weighted_mean_of_the_pixel_cross_entropy():
    logits, presence, target = _example()
    plain = losses.segmentation_loss(logits, presence, target)
    weighted = losses.segmentation_loss(logits, presence, target, boundary_weight=2.0)
    per_pixel = F.cross_entropy(logits, target.long(), reduction="none")
    weights = losses.boundary_weights(target, 2.0)
    expected = (weights * per_pixel).sum() / weights.sum()
    torch.testing.assert_close(weighted.cross_entropy, expected)
    assert not torch.isclose(weighted.cross_entropy, plain.cross_entropy)
    torch.testing.assert_close(weighted.dice, plain.dice)  # the Dice term is not weighted
    zero = losses.segmentation_loss(logits, presence, target, boundary_weight=0.0)
    assert torch.equal(zero.total, plain.total)


def test_small_cavities_gain_weight_against_large_ones():
    _, _, target = _example()
    weights = losses.boundary_weights(target, 2.0)
    share = [float(weights[i][target[i] > 0].mean()) for i in (0, 1)]
    assert share == [2.5, 3.0]  # 8x8 cavity: 48 of 64 pixels in the band; 2x2: all of them


def test_deep_supervision_keeps_the_scale_and_reports_its_part():
    logits, presence, target = _example()
    plain = losses.segmentation_loss(logits, presence, target)
    assert "loss_auxiliary" not in plain.as_floats()
    # auxiliary outputs equal to the main one: (L + L/2 + L/4) / 1.75 = L
    same = losses.segmentation_loss(logits, presence, target, auxiliary=(logits, logits))
    torch.testing.assert_close(same.total, plain.total)
    segmentation = plain.dice + plain.cross_entropy
    torch.testing.assert_close(same.auxiliary, 0.75 * segmentation)
    assert set(same.as_floats()) == set(plain.as_floats()) | {"loss_auxiliary"}
    # a coarse output is upsampled to the mask: a 1/2-resolution map of constant scores
    coarse = torch.zeros(3, 2, 8, 8)
    coarse[:, 1] = 3.0
    mixed = losses.segmentation_loss(logits, presence, target, auxiliary=(coarse,))
    upsampled = F.interpolate(coarse, size=(16, 16), mode="bilinear", align_corners=False)
    alone = losses.segmentation_loss(upsampled, presence, target)
    expected = (segmentation + 0.5 * (alone.dice + alone.cross_entropy)) / 1.5
    torch.testing.assert_close(mixed.total, expected + 0.1 * plain.presence)
    # the reported Dice and cross-entropy stay the full-resolution output's
    torch.testing.assert_close(mixed.dice, plain.dice)
    torch.testing.assert_close(mixed.cross_entropy, plain.cross_entropy)
