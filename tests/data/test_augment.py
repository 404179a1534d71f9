"""Tests of the batch augmenter: shapes, binary and aligned masks, reproducibility."""

from __future__ import annotations

import json

import pytest
import torch

from lvseg.data.augment import GEOMETRIC_PROBABILITIES, AugmentConfig, Augmenter


def discs(batch: int = 4, size: int = 64, channels: int = 3) -> torch.Tensor:
    """Masks [B, C, H, W]: off-centre discs of different radii, one per channel."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = torch.zeros(batch, channels, size, size)
    for b in range(batch):
        for c in range(channels):
            centre = (size * 0.4 + 2 * b, size * 0.55 - 3 * c)
            radius = size * (0.12 + 0.04 * c)
            masks[b, c] = ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2).float()
    return masks


def images_like(masks: torch.Tensor, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(masks.shape[0], 1, *masks.shape[-2:], generator=generator)
    return masks[:, :1] * 2 + 0.3 * noise


ALL_ON = AugmentConfig(
    p_affine=1.0,
    p_elastic=1.0,
    p_flip_horizontal=0.5,
    p_flip_vertical=0.5,
    p_bias_field=1.0,
    p_gamma=1.0,
    p_blur=1.0,
    p_noise=1.0,
    p_contrast_curve=1.0,
    p_gamma_inverted=1.0,
    p_brightness=1.0,
    p_contrast=1.0,
    p_low_resolution=1.0,
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.bool])
def test_shapes_dtypes_and_binary_masks(dtype):
    masks = discs().to(dtype)
    images = images_like(discs())
    out_images, out_masks = Augmenter(ALL_ON)(images, masks)
    assert out_images.shape == images.shape and out_images.dtype == images.dtype
    assert out_masks.shape == masks.shape and out_masks.dtype == dtype
    assert set(out_masks.float().unique().tolist()) <= {0.0, 1.0}
    assert torch.isfinite(out_images).all()
    # The inputs are left alone.
    assert torch.equal(masks, discs().to(dtype))


def test_geometric_transforms_keep_image_and_masks_aligned():
    masks = discs(batch=8)
    images = masks[:, :1].clone()  # an image that equals its mask
    config = AugmentConfig.geometric_only(
        p_affine=1.0, p_elastic=1.0, p_flip_horizontal=0.5, p_flip_vertical=0.5
    )
    torch.manual_seed(3)
    out_images, out_masks = Augmenter(config)(images, masks)
    assert not torch.equal(out_masks, masks)  # something moved
    # Same grid, same interpolation: the thresholded image is the mask, pixel for pixel.
    assert torch.equal((out_images > 0.5).float(), out_masks[:, :1])
    # And the other channels moved with it (the discs stay nested where they were nested).
    assert (out_masks.sum(dim=(2, 3)) > 0).all()


def test_intensity_transforms_do_not_move_masks():
    masks = discs()
    images = images_like(masks)
    geometric_off = {name: 0.0 for name in GEOMETRIC_PROBABILITIES}
    config = AugmentConfig(**geometric_off, p_bias_field=1.0, p_gamma=1.0, p_blur=1.0, p_noise=1.0)
    out_images, out_masks = Augmenter(config)(images, masks)
    assert torch.equal(out_masks, masks)
    assert not torch.allclose(out_images, images)
    # The anatomy stays where it was: the disc is still the bright part.
    inside = out_images[masks[:, :1] > 0].mean()
    outside = out_images[masks[:, :1] == 0].mean()
    assert inside > outside + 1


def test_reproducible_under_manual_seed_and_generator():
    masks, images = discs(), images_like(discs())
    augmenter = Augmenter(ALL_ON)
    torch.manual_seed(0)
    first = augmenter(images, masks)
    torch.manual_seed(0)
    second = augmenter(images, masks)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    third = augmenter(images, masks)
    assert not torch.equal(first[0], third[0])
    one = augmenter(images, masks, torch.Generator().manual_seed(5))
    two = augmenter(images, masks, torch.Generator().manual_seed(5))
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_identity_when_everything_is_off():
    masks, images = discs(), images_like(discs())
    out_images, out_masks = Augmenter(AugmentConfig.none())(images, masks)
    assert torch.equal(out_images, images) and torch.equal(out_masks, masks)


def test_flip_is_a_mirror_and_scaling_scales_area():
    masks, images = discs(), images_like(discs())
    flip = AugmentConfig.geometric_only(p_affine=0.0, p_elastic=0.0, p_flip_horizontal=1.0)
    out_images, out_masks = Augmenter(flip)(images, masks)
    torch.testing.assert_close(out_images, images.flip(-1), atol=1e-4, rtol=0)
    assert torch.equal(out_masks, masks.flip(-1))
    zoom = AugmentConfig.geometric_only(
        p_affine=1.0, p_elastic=0.0, rotation_degrees=0.0, scale_range=(1.5, 1.5),
        translate_fraction=0.0,
    )  # fmt: skip
    _, zoomed = Augmenter(zoom)(images, masks)
    ratio = float(zoomed[:, 0].sum() / masks[:, 0].sum())
    assert ratio == pytest.approx(2.25, rel=0.08)


def test_rotation_preserves_a_centred_disc_and_moves_an_off_centre_one():
    size = 65
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centred = ((rows - 32) ** 2 + (cols - 32) ** 2 <= 100).float()
    off = ((rows - 32) ** 2 + (cols - 50) ** 2 <= 25).float()
    masks = torch.stack([centred, off])[None]
    rotate = AugmentConfig.geometric_only(
        p_affine=1.0, p_elastic=0.0, rotation_degrees=90.0, scale_range=(1.0, 1.0),
        translate_fraction=0.0,
    )  # fmt: skip
    torch.manual_seed(1)
    _, out = Augmenter(rotate)(masks[:, :1].clone(), masks)
    # A centred disc turns into itself, up to pixels on its boundary.
    overlap = (out[0, 0] * centred).sum() / ((out[0, 0] + centred) > 0).sum()
    assert overlap > 0.93
    assert float(out[0, 1].sum()) == pytest.approx(float(off.sum()), rel=0.15)
    assert (out[0, 1] * off).sum() < off.sum()  # it moved round the centre


def test_gamma_and_bias_field_keep_the_image_sensible():
    masks = discs()
    images = images_like(masks)
    out, _ = one(p_gamma=1.0)(images, masks)
    # Gamma keeps each image's mean and standard deviation (nnU-Net's retain_stats).
    torch.testing.assert_close(out.mean(dim=(2, 3)), images.mean(dim=(2, 3)), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(dim=(2, 3)), images.std(dim=(2, 3)), atol=1e-4, rtol=1e-4)
    out, _ = one(p_bias_field=1.0)(images, masks)
    floor = images.amin(dim=(2, 3), keepdim=True)
    # Multiplicative above the darkest value: the floor stays, the ordering is kept.
    torch.testing.assert_close(out.amin(dim=(2, 3), keepdim=True), floor)
    ratio = (out - floor)[images > floor + 0.5] / (images - floor)[images > floor + 0.5]
    assert ratio.min() > 0 and ratio.max() < 20


def test_config_round_trips_through_json():
    config = AugmentConfig(scale_range=(0.9, 1.1), p_flip_horizontal=0.5)
    again = AugmentConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        Augmenter()(torch.zeros(2, 1, 8, 8), torch.zeros(3, 3, 8, 8))
    with pytest.raises(ValueError):
        Augmenter()(torch.zeros(2, 1, 8, 8), torch.zeros(2, 3, 8, 9))


def one(**changes) -> Augmenter:
    """An augmenter with only the named intensity transform(s) on."""
    return Augmenter(AugmentConfig(**{**AugmentConfig.none().to_dict(), **changes}))


def test_none_turns_every_transform_off_including_the_new_ones():
    off = AugmentConfig.none().to_dict()
    assert all(value == 0.0 for key, value in off.items() if key.startswith("p_"))


def test_the_contrast_curve_keeps_the_order_of_values_and_the_image_statistics():
    images = torch.linspace(-2, 3, 64 * 64).reshape(1, 1, 64, 64).repeat(3, 1, 1, 1)
    out, _ = one(p_contrast_curve=1.0, contrast_curve_strength=1.5)(
        images, torch.zeros(3, 1, 64, 64), torch.Generator().manual_seed(3)
    )
    flat = out.flatten(1)
    assert (flat[:, 1:] >= flat[:, :-1] - 1e-5).all()  # monotone: brighter stays brighter
    assert not torch.allclose(out, images, atol=1e-2)  # but the curve is not the identity
    assert not torch.allclose(out[0], out[1], atol=1e-2)  # and differs per image
    torch.testing.assert_close(
        out.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(out.std(dim=(1, 2, 3)), images.std(dim=(1, 2, 3)), atol=1e-4, rtol=0)


def test_inverted_gamma_stretches_the_dark_end_and_plain_gamma_the_bright_end():
    images = torch.linspace(0, 1, 4096).reshape(1, 1, 64, 64)
    masks = torch.zeros(1, 1, 64, 64)
    config = dict(gamma_range=(2.0, 2.0))
    plain, _ = one(p_gamma=1.0, **config)(images, masks)
    inverted, _ = one(p_gamma_inverted=1.0, **config)(images, masks)
    # gamma 2 on [0, 1] darkens the middle (x**2 < x); on the inverted image it brightens it
    middle = images.flatten()[2048]
    assert plain.flatten()[2048] < middle < inverted.flatten()[2048]


def test_brightness_contrast_and_low_resolution_do_what_they_say():
    masks = discs(batch=2)
    images = images_like(masks)
    bright, _ = one(p_brightness=1.0, brightness_range=(1.2, 1.2))(images, masks)
    torch.testing.assert_close(bright, images * 1.2)
    flat, _ = one(p_contrast=1.0, contrast_range=(0.5, 0.5))(images, masks)
    mean = images.mean(dim=(-2, -1), keepdim=True)
    torch.testing.assert_close(flat, (images - mean) * 0.5 + mean)  # inside the range: no clip
    coarse, _ = one(p_low_resolution=1.0, low_resolution_range=(0.25, 0.25))(images, masks)
    assert coarse.shape == images.shape
    # a quarter of the resolution: the noise is averaged away, the disc's mean level stays
    assert coarse.std() < images.std()
    torch.testing.assert_close(coarse.mean(), images.mean(), atol=0.02, rtol=0)


def test_new_intensity_draws_do_not_change_what_the_old_settings_gave():
    """Runs trained before the new transforms existed draw the same numbers for the old ones."""
    masks = discs()
    images = images_like(masks)
    old = AugmentConfig(p_bias_field=1.0, p_gamma=1.0, p_noise=1.0)
    a, _ = Augmenter(old)(images, masks, torch.Generator().manual_seed(5))
    changed = AugmentConfig(**{**old.to_dict(), "low_resolution_range": (0.3, 0.6)})
    b, _ = Augmenter(changed)(images, masks, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
