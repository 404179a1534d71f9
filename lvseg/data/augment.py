"""Batch data augmentation on torch tensors, fast enough for a 2-core CPU training loop.

:class:`Augmenter` takes images [B, 1, H, W] (z-scored, see :mod:`lvseg.data.preprocess`) and
masks [B, C, H, W] and returns both augmented, with the same shapes and dtypes.

Geometric transforms (rotation, scaling, translation, flips, elastic deformation) are composed
into **one sampling grid per sample** and applied with a single ``grid_sample``, to the image
(bilinear) and to the masks (bilinear on 0/1 floats, then thresholded strictly above 0.5: they
stay binary, their boundary follows the half-level contour, and disjoint structures stay
disjoint, as bilinear weights sum to one and two structures cannot both exceed 0.5). We build
the grid ourselves rather than chain kornia's ``RandomAffine`` and ``RandomElasticTransform``:
chained warps interpolate twice (blurring the image, eroding thin myocardium) and cost twice
the time. The affine matrix comes from kornia's ``get_affine_matrix2d`` and
``normalize_homography``. Image and masks share the grid and the padding mode, so they stay
aligned exactly.

Intensity transforms touch the image only, in this order: a smooth multiplicative bias field
(coil shading), a random monotone contrast curve (another scanner's or sequence's tissue
contrast), gamma (also on the inverted image, as nnU-Net), brightness and contrast (nnU-Net's
multiplicative ones), low-resolution simulation (down- then up-sampled: a coarser acquisition
brought to the plan's spacing), Gaussian blur (kornia's ``gaussian_blur2d``) and Gaussian noise
(last, as the scanner adds it after the anatomy and coil shading). The contrast curve and the
inverted gamma make a network that cannot rely on one scanner's appearance: the blood pool may
be brighter or darker relative to myocardium and fat than in the training images.

Every random draw is made for the whole batch in a fixed order from one generator (the global
torch one unless given), so a result depends only on the seed, not on which samples were
selected: ``torch.manual_seed(0); augmenter(images, masks)`` is reproducible.

>>> import torch
>>> augmenter = Augmenter(AugmentConfig())
>>> images, masks = torch.randn(2, 1, 32, 32), torch.zeros(2, 3, 32, 32)
>>> [tuple(t.shape) for t in augmenter(images, masks)]
[(2, 1, 32, 32), (2, 3, 32, 32)]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from kornia.geometry.conversions import normalize_homography
from kornia.geometry.transform import get_affine_matrix2d

GEOMETRIC_PROBABILITIES = ("p_affine", "p_flip_horizontal", "p_flip_vertical", "p_elastic")
"""The probabilities of the transforms that move pixels (and masks); every other ``p_`` field
is an intensity transform's."""


@dataclass
class AugmentConfig:
    """Probabilities (per sample) and ranges of every augmentation; defaults suit SAX cine MRI.

    Ranges are (low, high) and sampled uniformly. Intensity amounts are in z-score units where
    they are additive (noise), relative elsewhere. The defaults are the ``robust-noise50``
    recipe of ``benchmarks/recipes`` (nnU-Net's ranges, a random contrast curve, twice nnU-Net's
    noise): measured against the ``robust`` and the milder ``baseline`` recipes in
    ``benchmarks/sunnybrook_cv.py`` and ``domain_shift.py``.
    """

    # Rotation, scaling and translation share one draw of "is this sample moved at all".
    p_affine: float = 0.6
    rotation_degrees: float = 180.0
    """Any in-plane orientation: scanners, sites and file conversions (DICOM viewers, NIfTI
    converters) put the short axis at any angle; in ``benchmarks/domain_shift.py`` a model
    trained on +-30 degrees loses 0.136 Dice on a quarter turn, this one 0.015."""
    scale_range: tuple[float, float] = (0.7, 1.4)
    """Images are resampled to one spacing, so this covers anatomical size (small or dilated
    hearts) and what spacing metadata gets wrong (nnU-Net's range)."""
    translate_fraction: float = 0.05
    """Up to this fraction of the side; small, as crop jitter already moves the heart."""
    # A DICOM short-axis image has a fixed handedness (the RV to the image left of the LV), but
    # NIfTI converters and other vendors' orientations mirror it (a model trained without flips
    # loses 0.268 Dice on mirrored images in the domain-shift benchmark, this one 0.001); with
    # any rotation, one mirror axis gives all 8 orientations, which test-time augmentation uses.
    p_flip_horizontal: float = 0.5
    p_flip_vertical: float = 0.0
    p_elastic: float = 0.2
    elastic_grid: int = 5
    """Control points per axis of the random displacement field (a coarse grid upsampled
    bicubically gives a smooth deformation, as TorchIO's B-spline elastic transform)."""
    elastic_magnitude: float = 0.03
    """Largest control-point displacement as a fraction of the side (about 4 px at 128)."""
    p_bias_field: float = 0.3
    bias_field_order: int = 3
    bias_field_strength: float = 0.3
    """Polynomial coefficients are drawn from [-strength, strength]; the field is exp(poly)."""
    p_gamma: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    p_blur: float = 0.2
    blur_sigma_range: tuple[float, float] = (0.5, 1.0)
    p_noise: float = 0.25
    noise_std_range: tuple[float, float] = (0.0, 0.3)
    """Noise is the shift that costs most in ``benchmarks/domain_shift.py``: with (0, 0.15) at
    p 0.15, 8% noise costs 0.175 Dice; with this range, 0.044 (and the in-domain Dice gains)."""
    p_contrast_curve: float = 0.3
    contrast_curve_segments: int = 5
    """Pieces of the random monotone curve, equal in input width; each one's slope is
    ``exp(u)``, u uniform in [-strength, strength], then the curve is rescaled to end at 1."""
    contrast_curve_strength: float = 1.0
    p_gamma_inverted: float = 0.1
    """Gamma applied to the inverted image (then inverted back): dark structures stretched."""
    p_brightness: float = 0.15
    brightness_range: tuple[float, float] = (0.75, 1.25)
    """Multiplies the (z-scored) image, as nnU-Net's MultiplicativeBrightness."""
    p_contrast: float = 0.15
    contrast_range: tuple[float, float] = (0.75, 1.25)
    """Scales values about the image mean, clipped to the image's own range (nnU-Net)."""
    p_low_resolution: float = 0.25
    low_resolution_range: tuple[float, float] = (0.5, 1.0)
    """Zoom of the down-sampling (0.5: a source twice as coarse as the plan's spacing)."""
    padding_mode: str = "border"
    """``grid_sample`` padding for image and masks alike (the same one, so they stay aligned)."""
    mask_threshold: float = 0.5
    """A resampled mask pixel is set where the interpolated value is strictly above this."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentConfig:
        known = {f.name: f for f in fields(cls)}
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        )

    @classmethod
    def _off(cls, *, geometric: bool, intensity: bool, **changes: Any) -> AugmentConfig:
        """A config with the chosen kinds of transform off (their probabilities 0)."""
        off = {
            f.name: 0.0
            for f in fields(cls)
            if f.name.startswith("p_")
            and (geometric if f.name in GEOMETRIC_PROBABILITIES else intensity)
        }
        return cls(**{**off, **changes})

    @classmethod
    def geometric_only(cls, **changes: Any) -> AugmentConfig:
        """A config with every intensity transform off (for tests and ablations)."""
        return cls._off(geometric=False, intensity=True, **changes)

    @classmethod
    def none(cls) -> AugmentConfig:
        """Every transform off: the identity (validation, inference)."""
        return cls._off(geometric=True, intensity=True)


class Augmenter:
    """Apply :class:`AugmentConfig`'s random transforms to a batch of images and masks."""

    def __init__(self, config: AugmentConfig | None = None) -> None:
        self.config = config or AugmentConfig()
        self._bias_basis: dict[tuple[int, int, str], torch.Tensor] = {}

    def __call__(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented copies of ``images`` [B, 1, H, W] and ``masks`` [B, C, H, W]."""
        if images.ndim != 4 or masks.ndim != 4 or images.shape[0] != masks.shape[0]:
            raise ValueError(
                f"expected images [B,1,H,W] and masks [B,C,H,W], got {tuple(images.shape)} "
                f"and {tuple(masks.shape)}"
            )
        if images.shape[-2:] != masks.shape[-2:]:
            raise ValueError("images and masks must share H and W")
        with torch.no_grad():
            images, masks = self.geometric(images, masks, generator)
            images = self.intensity(images, generator)
        return images, masks

    # ---- random numbers ---------------------------------------------------------------------

    @staticmethod
    def _uniform(
        shape: tuple[int, ...], low: float, high: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=generator)

    @staticmethod
    def _chosen(batch: int, p: float, generator: torch.Generator | None) -> torch.Tensor:
        return torch.rand(batch, generator=generator) < p

    # ---- geometry ---------------------------------------------------------------------------

    def geometric(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate, scale, translate, flip and deform image and masks with one shared grid."""
        c = self.config
        b, _, h, w = images.shape
        # Draw everything for the whole batch, always, in a fixed order (reproducibility).
        affine = self._chosen(b, c.p_affine, generator)
        angle = self._uniform((b,), -c.rotation_degrees, c.rotation_degrees, generator)
        scale = self._uniform((b,), *c.scale_range, generator)
        shift = self._uniform((b, 2), -c.translate_fraction, c.translate_fraction, generator)
        flip_x = self._chosen(b, c.p_flip_horizontal, generator)
        flip_y = self._chosen(b, c.p_flip_vertical, generator)
        elastic = self._chosen(b, c.p_elastic, generator)
        g = max(2, c.elastic_grid)
        control = self._uniform((b, 2, g, g), -1.0, 1.0, generator)

        moved = affine | flip_x | flip_y | elastic
        if not moved.any():
            return images, masks
        index = moved.nonzero().squeeze(1)
        n = len(index)

        # Pixel-space affine (kornia's rotation about the centre, scale, translation), then
        # normalised to grid_sample's [-1, 1] frame; flips are a sign change there.
        centre = torch.tensor([[(w - 1) / 2, (h - 1) / 2]]).expand(n, 2)
        on = affine[index].float()
        matrix = get_affine_matrix2d(
            translations=shift[index] * torch.tensor([w, h]) * on[:, None],
            center=centre,
            scale=(1 + (scale[index] - 1) * on)[:, None].expand(n, 2),
            angle=angle[index] * on,
        )
        normalised = normalize_homography(matrix, (h, w), (h, w))
        flips = torch.ones(n, 3)
        flips[:, 0] = torch.where(flip_x[index], -1.0, 1.0)
        flips[:, 1] = torch.where(flip_y[index], -1.0, 1.0)
        normalised = torch.diag_embed(flips) @ normalised
        # grid_sample pulls: each output pixel reads the input at inverse(matrix) @ position.
        theta = torch.linalg.inv(normalised)[:, :2, :]
        grid = F.affine_grid(theta, [n, 1, h, w], align_corners=True)
        if elastic[index].any():
            # Smooth displacements: random control points, bicubically upsampled to the image.
            field = (
                control[index]
                * (2 * c.elastic_magnitude)
                * elastic[index].float()[:, None, None, None]
            )
            field = F.interpolate(field, (h, w), mode="bicubic", align_corners=True)
            grid = grid + field.permute(0, 2, 3, 1)

        both = torch.cat([images[index].float(), masks[index].float()], dim=1)
        warped = F.grid_sample(
            both, grid, mode="bilinear", padding_mode=c.padding_mode, align_corners=True
        )
        images = images.clone()
        masks = masks.clone()
        images[index] = warped[:, : images.shape[1]].to(images.dtype)
        masks[index] = (warped[:, images.shape[1] :] > c.mask_threshold).to(masks.dtype)
        return images, masks

    # ---- intensity --------------------------------------------------------------------------

    def intensity(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Bias field, gamma, blur and noise on the image only (masks never change here)."""
        c = self.config
        b, channels, h, w = images.shape
        bias = self._chosen(b, c.p_bias_field, generator)
        n_terms = (c.bias_field_order + 1) * (c.bias_field_order + 2) // 2
        coefficients = self._uniform(
            (b, n_terms), -c.bias_field_strength, c.bias_field_strength, generator
        )
        gamma_on = self._chosen(b, c.p_gamma, generator)
        gamma = self._uniform((b,), *c.gamma_range, generator)
        blur = self._chosen(b, c.p_blur, generator)
        sigma = self._uniform((b,), *c.blur_sigma_range, generator)
        noise_on = self._chosen(b, c.p_noise, generator)
        noise_std = self._uniform((b,), *c.noise_std_range, generator)
        noise_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        # Drawn after the transforms above, so their draws do not depend on these settings.
        k = max(1, c.contrast_curve_segments)
        curve_on = self._chosen(b, c.p_contrast_curve, generator)
        slopes = self._uniform(
            (b, k), -c.contrast_curve_strength, c.contrast_curve_strength, generator
        ).exp()
        inverted_on = self._chosen(b, c.p_gamma_inverted, generator)
        inverted_gamma = self._uniform((b,), *c.gamma_range, generator)
        brightness_on = self._chosen(b, c.p_brightness, generator)
        brightness = self._uniform((b,), *c.brightness_range, generator)
        contrast_on = self._chosen(b, c.p_contrast, generator)
        contrast = self._uniform((b,), *c.contrast_range, generator)
        low_on = self._chosen(b, c.p_low_resolution, generator)
        low_zoom = self._uniform((b,), *c.low_resolution_range, generator)
        chosen = [bias, gamma_on, blur, noise_on, curve_on, inverted_on, brightness_on]
        if not torch.stack([*chosen, contrast_on, low_on]).any():
            return images

        images = images.clone()
        if bias.any():
            index = bias.nonzero().squeeze(1)
            images[index] = self._bias_field(images[index], coefficients[index])
        if curve_on.any():
            index = curve_on.nonzero().squeeze(1)
            images[index] = _contrast_curve(images[index], slopes[index].to(images.dtype))
        if gamma_on.any():
            index = gamma_on.nonzero().squeeze(1)
            images[index] = _gamma(images[index], gamma[index].to(images.dtype))
        if inverted_on.any():
            index = inverted_on.nonzero().squeeze(1)
            flipped = -images[index]
            images[index] = -_gamma(flipped, inverted_gamma[index].to(images.dtype))
        if brightness_on.any():
            index = brightness_on.nonzero().squeeze(1)
            images[index] = images[index] * brightness[index].to(images.dtype)[:, None, None, None]
        if contrast_on.any():
            index = contrast_on.nonzero().squeeze(1)
            images[index] = _contrast(images[index], contrast[index].to(images.dtype))
        if low_on.any():
            index = low_on.nonzero().squeeze(1)
            images[index] = _low_resolution(images[index], low_zoom[index])
        if blur.any():
            index = blur.nonzero().squeeze(1)
            s = sigma[index]
            size = 2 * math.ceil(3 * c.blur_sigma_range[1]) + 1
            images[index] = gaussian_blur2d(
                images[index], (size, size), torch.stack([s, s], 1), border_type="replicate"
            ).to(images.dtype)
        if noise_on.any():
            index = noise_on.nonzero().squeeze(1)
            # A generator of its own, seeded from the main one: the amount of noise drawn
            # depends on how many samples were chosen, and must not shift later draws.
            noise_generator = torch.Generator().manual_seed(noise_seed)
            noise = torch.randn(
                (len(index), channels, h, w), generator=noise_generator, dtype=images.dtype
            )
            images[index] = (
                images[index] + noise * noise_std[index].to(images.dtype)[:, None, None, None]
            )
        return images

    def _bias_field(self, images: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
        """Multiply by exp(polynomial(x, y)), about each image's darkest value.

        kornia has no bias field. MR receive-coil shading is smooth over the field of view, so
        a low-order polynomial (TorchIO's ``RandomBiasField`` model; 10 coefficients at order 3)
        describes it and costs one small matrix product. The field multiplies the signal above
        the image minimum (air), as coil sensitivity scales signal, not the z-score offset.
        """
        _, _, h, w = images.shape
        basis = self._basis(h, w, images.dtype)
        field = torch.exp(torch.einsum("bk,khw->bhw", coefficients.to(images.dtype), basis))
        floor = images.amin(dim=(-2, -1), keepdim=True)
        return floor + (images - floor) * field[:, None]

    def _basis(self, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
        key = (h, w, str(dtype))
        if key not in self._bias_basis:
            y = torch.linspace(-1, 1, h, dtype=dtype)[:, None].expand(h, w)
            x = torch.linspace(-1, 1, w, dtype=dtype)[None, :].expand(h, w)
            order = self.config.bias_field_order
            terms = [x**i * y**j for i in range(order + 1) for j in range(order + 1 - i)]
            self._bias_basis[key] = torch.stack(terms)
        return self._bias_basis[key]


def _gamma(images: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Gamma on each image rescaled to [0, 1], then its original mean and std restored.

    kornia's ``RandomGamma`` clamps to [0, 1], which would destroy z-scored images; this is
    nnU-Net's gamma with ``retain_stats``: the contrast curve changes, the scale does not.
    """
    low = images.amin(dim=(-2, -1), keepdim=True)
    high = images.amax(dim=(-2, -1), keepdim=True)
    mean = images.mean(dim=(-2, -1), keepdim=True)
    std = images.std(dim=(-2, -1), keepdim=True)
    span = (high - low).clamp_min(1e-6)
    curved = ((images - low) / span).clamp(0, 1) ** gamma[:, None, None, None] * span + low
    return _restore_stats(curved, mean, std)


def _restore_stats(curved: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``curved`` rescaled to each image's former ``mean`` and ``std`` (nnU-Net's retain_stats)."""
    new_mean = curved.mean(dim=(-2, -1), keepdim=True)
    new_std = curved.std(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
    return (curved - new_mean) / new_std * std + mean


def _contrast_curve(images: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    """A random monotone piecewise-linear curve on each image rescaled to [0, 1], its mean and
    std restored afterwards (as :func:`_gamma`). ``slopes`` is (B, K), one per equal piece.

    Not in kornia or MONAI as a batch op (MONAI's ``RandHistogramShift`` is per image, NumPy);
    the curve is K knots and one ``gather``.
    """
    b, k = slopes.shape
    knots = torch.cat([torch.zeros(b, 1, dtype=slopes.dtype), slopes.cumsum(1)], 1)
    knots = knots / knots[:, -1:]  # (B, K + 1), 0 to 1, increasing
    low = images.amin(dim=(-2, -1), keepdim=True)
    high = images.amax(dim=(-2, -1), keepdim=True)
    mean = images.mean(dim=(-2, -1), keepdim=True)
    std = images.std(dim=(-2, -1), keepdim=True)
    x = ((images - low) / (high - low).clamp_min(1e-6)).clamp(0, 1) * k
    piece = x.floor().clamp(max=k - 1)
    flat = piece.long().flatten(1)
    left = knots.gather(1, flat).view_as(x)
    right = knots.gather(1, flat + 1).view_as(x)
    curved = left + (right - left) * (x - piece)
    return _restore_stats(curved, mean, std)


def _contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """nnU-Net's ContrastAugmentation: values scaled about the mean, kept in the image's range."""
    mean = images.mean(dim=(-2, -1), keepdim=True)
    low = images.amin(dim=(-2, -1), keepdim=True)
    high = images.amax(dim=(-2, -1), keepdim=True)
    scaled = (images - mean) * factor[:, None, None, None] + mean
    return torch.maximum(torch.minimum(scaled, high), low)


def _low_resolution(images: torch.Tensor, zoom: torch.Tensor) -> torch.Tensor:
    """Each image down-sampled by its ``zoom`` (area average), then up-sampled (bilinear): the
    look of a coarser acquisition interpolated to the plan's spacing (nnU-Net's
    SimulateLowResolution, with area averaging for what the coarser pixels integrate)."""
    _, _, h, w = images.shape
    out = torch.empty_like(images)
    for i in range(len(images)):
        size = (max(2, round(h * float(zoom[i]))), max(2, round(w * float(zoom[i]))))
        small = F.interpolate(images[i : i + 1], size=size, mode="area")
        out[i : i + 1] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return out
