"""CAM is LVNet's own class map, Grad-CAM matches a hand computation and Captum, and bad input
gets one clear error."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lvseg.errors import InvalidInputError
from lvseg.explain.cam import (
    CAM,
    METHODS,
    Explainer,
    GradCAM,
    activation_gallery,
    conv_layer_names,
    default_layer,
    make_explainer,
)
from lvseg.model.outputs import PresenceFromCAM, SegmentationOutput
from lvseg.model.registry import build_model


def images(batch: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(seed))


def trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affines, so eval mode is not the identity."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            shape = module.running_mean.shape
            module.running_mean.copy_(0.3 * torch.randn(shape, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(shape, generator=generator))
            with torch.no_grad():
                module.weight.copy_(1 + 0.3 * torch.randn(shape, generator=generator))
                module.bias.copy_(0.3 * torch.randn(shape, generator=generator))
    return model.eval()


# ---------------------------------------------------------------------------------------------
# CAM


@pytest.mark.parametrize("options", [{}, {"dense_levels": 1}])
def test_cam_is_lvnet_lv_minus_background_map(options):
    torch.manual_seed(0)
    model = trained_like(build_model("lvnet", width=4, **options))
    x = images()
    maps = CAM(model)(x)
    with torch.no_grad():
        logits = model(x).logits
    assert maps.shape == (2, 32, 32) and maps.dtype == torch.float32
    assert torch.allclose(maps, logits[:, 1] - logits[:, 0], atol=1e-5)
    # The region does not enter CAM.
    assert torch.equal(CAM(model)(x, torch.ones(2, 32, 32, dtype=torch.bool)), maps)


def test_gradcam_at_the_head_is_rectified_cam_scaled_by_the_region():
    torch.manual_seed(0)
    model = trained_like(build_model("lvnet", width=4))
    x = images()
    region = torch.zeros(2, 32, 32, dtype=torch.bool)
    region[0, 4:12, 4:12] = True  # 64 pixels
    region[1, :, :16] = True  # 512 pixels
    maps = GradCAM(model, "head")(x, region)
    scale = torch.tensor([64.0, 512.0])[:, None, None] / (32 * 32)
    assert torch.allclose(maps, scale * torch.relu(CAM(model)(x)), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Grad-CAM by hand


class TwoChannelNet(nn.Module):
    """A_1 = relu(x), A_2 = relu(-x) (optionally at half resolution), nearest upsampling, then a
    1x1 head with S_bg = 0 and S_lv = 2 A_1 - 3 A_2 + 1: every number is known."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(1, 2, 1, stride=stride, bias=False)
        self.head = nn.Conv2d(2, 2, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.head.weight.copy_(torch.tensor([[0.0, 0.0], [2.0, -3.0]]).view(2, 2, 1, 1))
            self.head.bias.copy_(torch.tensor([0.0, 1.0]))
        self.presence = PresenceFromCAM()

    def forward(self, x: torch.Tensor) -> SegmentationOutput:
        y = torch.relu(self.conv(x))
        if self.stride > 1:
            y = F.interpolate(y, scale_factor=self.stride, mode="nearest")
        logits = self.head(y)
        return SegmentationOutput(logits, self.presence(logits))


def test_gradcam_matches_the_hand_computed_map():
    x = torch.tensor([[1.0, -2.0, 0.5, 0.0], [3.0, -1.0, -0.5, 2.0]]).repeat(2, 1)[None, None]
    region = torch.zeros(1, 4, 4, dtype=torch.bool)
    region[0, :2, :3] = True  # 6 of 16 pixels
    maps = GradCAM(TwoChannelNet(), "conv")(x, region)
    # The hooked conv output is A = (x, -x) and y = sum_R (2 relu(A_1) - 3 relu(A_2) + 1), so
    # dy/dA_1 = 2 where A_1 > 0 and dy/dA_2 = -3 where A_2 > 0, on R only. R holds 3 pixels with
    # x > 0 (1, 0.5, 3) and 3 with x < 0 (-2, -1, -0.5); the means run over 16 pixels.
    alpha_1, alpha_2 = 2 * 3 / 16, -3 * 3 / 16
    expected = torch.relu(alpha_1 * x + alpha_2 * -x)[:, 0]  # = relu(15/16 x)
    assert torch.allclose(maps, expected, atol=1e-6)
    assert maps[0, 1, 0] == pytest.approx(3 * 15 / 16) and maps[0, 0, 1] == 0


def test_gradcam_upsamples_a_coarse_layer_bilinearly():
    x = torch.arange(16.0).view(1, 1, 4, 4) - 6.5  # the conv samples x[::2, ::2]: -6.5 -4.5 1.5 3.5
    region = torch.zeros(1, 4, 4, dtype=torch.bool)
    region[0, :, :2] = True  # covers the left 2x2 cells entirely: 8 pixels
    maps = GradCAM(TwoChannelNet(stride=2), "conv")(x, region)
    coarse = x[:, :, ::2, ::2]
    # Each coarse cell feeds its 2x2 block, so dy/dA_k(cell) = (dS_lv/dA_k) * (region pixels in
    # the block). The two left cells hold -6.5 (A_2 > 0: -3 * 4) and 1.5 (A_1 > 0: 2 * 4).
    alpha_1, alpha_2 = 2 * 4 / 4, -3 * 4 / 4  # means over the 4 cells
    layer_map = torch.relu(alpha_1 * coarse + alpha_2 * -coarse)  # = relu(5 * coarse)
    expected = F.interpolate(layer_map, size=(4, 4), mode="bilinear", align_corners=False)
    assert torch.allclose(maps, expected[:, 0], atol=1e-6)


def test_default_region_is_the_predicted_lv_and_empty_means_whole_image():
    x = torch.tensor([[1.0, -2.0], [3.0, -1.0]])[None, None]
    net = TwoChannelNet()
    # S_lv - S_bg = 2 relu(x) - 3 relu(-x) + 1 > 0 only where x > 0: predicted LV = {1, 3}.
    predicted = torch.tensor([[[True, False], [True, False]]])
    explainer = GradCAM(net, "conv")
    assert torch.allclose(explainer(x), explainer(x, predicted))
    empty = torch.zeros(1, 2, 2, dtype=torch.bool)
    assert torch.allclose(explainer(x, empty), explainer(x, ~empty))


def test_gradcam_needs_no_trainable_weights_and_leaves_grads_alone():
    torch.manual_seed(0)  # the map depends on the initial weights: fix them, as the tests above do
    model = trained_like(build_model("lvnet", width=4))
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    maps = GradCAM(model)(images())
    assert maps.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Grad-CAM against Captum


@pytest.mark.parametrize(
    ("name", "options", "layer"),
    [
        ("lvnet", {"width": 4}, None),
        ("lvnet", {"width": 4}, "encoder.1.0.pointwise"),  # 8x8 of 32x32: upsampled
        ("unet", {"width": 4, "depth": 2}, None),
        ("dli-fcn", {}, None),  # an in-place ReLU follows its default layer
    ],
)
def test_gradcam_matches_captum_layer_gradcam(name, options, layer):
    from captum.attr import LayerAttribution, LayerGradCam

    torch.manual_seed(0)
    model = trained_like(build_model(name, **options))
    x = images(batch=3)
    region = torch.zeros(3, 32, 32, dtype=torch.bool)
    region[0, 8:20, 10:24] = True
    region[1, 16:, :] = True
    region[2, 2:30, 5:9] = True
    ours = GradCAM(model, layer)
    layer = ours.layer

    def region_log_odds(inputs: torch.Tensor) -> torch.Tensor:
        logits = model(inputs).logits
        return ((logits[:, 1] - logits[:, 0]) * region).sum(dim=(1, 2))

    captum = LayerGradCam(region_log_odds, model.get_submodule(layer))
    attribution = captum.attribute(x, relu_attributions=True)
    expected = LayerAttribution.interpolate(attribution, (32, 32), interpolate_mode="bilinear")
    maps = ours(x, region)
    assert maps.abs().max() > 0
    assert torch.allclose(maps, expected[:, 0], atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# Layers, galleries, errors


def test_layer_names_and_defaults():
    lvnet = build_model("lvnet", width=4)
    names = conv_layer_names(lvnet)
    assert names[0] == "stem.0.0" and names[-1] == "head"
    assert default_layer(lvnet, "cam") == "head"
    assert default_layer(lvnet, "gradcam") == "decoder.3.3.pointwise"
    assert default_layer(build_model("lvnet", width=4, dense_levels=1), "gradcam") == (
        "decoder.3.3.conv2"
    )
    assert default_layer(build_model("unet", width=4), "gradcam") == "expand.3.3"
    fcn = build_model("dli-fcn")
    assert conv_layer_names(fcn)[-2:] == ["score", "upscore"]
    assert default_layer(fcn, "gradcam") == "features.8"
    assert set(METHODS) >= {"cam", "gradcam"}


def test_unknown_layer_lists_the_valid_ones():
    model = build_model("lvnet", width=4)
    with pytest.raises(InvalidInputError) as error:
        GradCAM(model, "decoder.9")
    message = str(error.value)
    assert message.startswith("unknown layer 'decoder.9'; valid layers: stem.0.0, ")
    assert message.endswith(", head") and "decoder.3.3.pointwise" in message
    with pytest.raises(InvalidInputError, match="unknown layer 'decoder.9'"):
        activation_gallery(model, images(), "decoder.9")


@pytest.mark.parametrize("name", ["unet", "dli-fcn"])
def test_cam_refuses_models_without_a_cam_head(name):
    model = build_model(name, width=4) if name == "unet" else build_model(name)
    assert not hasattr(model, "cam_weights")
    expected = (
        f"{type(model).__name__} has no global-average-pooling CAM head; use --method gradcam"
    )
    with pytest.raises(InvalidInputError) as error:
        make_explainer("cam", model)
    assert str(error.value) == expected


def test_cam_refuses_another_layer():
    with pytest.raises(InvalidInputError, match="use --method gradcam"):
        CAM(build_model("lvnet", width=4), "decoder.3.3.pointwise")


@pytest.mark.parametrize(
    "bad",
    [torch.zeros(1, 32, 32), torch.zeros(1, 3, 32, 32), torch.zeros(0, 1, 32, 32), "image"],
)
def test_wrong_input_shape_is_refused(bad):
    explainer = GradCAM(build_model("lvnet", width=4))
    with pytest.raises(InvalidInputError, match=r"images must"):
        explainer(bad)


def test_wrong_region_shape_is_refused():
    explainer = GradCAM(build_model("lvnet", width=4))
    with pytest.raises(InvalidInputError, match=r"region must have shape \(2, 32, 32\)"):
        explainer(images(), torch.ones(2, 16, 16, dtype=torch.bool))


def test_unknown_method_lists_the_methods():
    with pytest.raises(InvalidInputError) as error:
        make_explainer("lime", build_model("lvnet", width=4))
    assert str(error.value) == f"unknown method 'lime'; choose one of {', '.join(METHODS)}"
    with pytest.raises(InvalidInputError, match="unknown method"):
        default_layer(build_model("lvnet", width=4), "lime")


def test_make_explainer_builds_each_method():
    model = build_model("lvnet", width=4)
    for method in METHODS:
        explainer = make_explainer(method, model)
        assert isinstance(explainer, Explainer) and explainer.name == method
        assert explainer(images()).shape == (2, 32, 32)


def test_activation_gallery_returns_the_top_k_channels_by_mean():
    torch.manual_seed(0)
    model = trained_like(build_model("lvnet", width=4))
    x = images(batch=3)
    layer = "encoder.0.0.pointwise"  # 8 channels at 16x16
    maps, channels = activation_gallery(model, x, layer, k=3)
    assert maps.shape == (3, 3, 16, 16) and channels.shape == (3, 3)

    seen = {}
    handle = model.get_submodule(layer).register_forward_hook(
        lambda module, inputs, output: seen.update(output=output.detach())
    )
    with torch.no_grad():
        model(x)
    handle.remove()
    activation = seen["output"]
    means = activation.mean(dim=(2, 3))
    for b in range(3):
        order = means[b].argsort(descending=True)
        assert channels[b].tolist() == order[:3].tolist()
        assert torch.equal(maps[b], activation[b, channels[b]])
    everything, all_channels = activation_gallery(model, x, layer, k=100)
    assert everything.shape == (3, 8, 16, 16) and sorted(all_channels[0].tolist()) == list(range(8))
    with pytest.raises(InvalidInputError, match="k must be"):
        activation_gallery(model, x, layer, k=0)
