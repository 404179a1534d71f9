import dataclasses
import doctest
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lvseg.model
from lvseg.model import (
    MODELS,
    PresenceFromCAM,
    SegmentationOutput,
    build_from_config,
    build_model,
    config_of,
    fcn,
    lvnet,
    model_names,
    name_of,
    outputs,
    registry,
    size_report,
    unet,
)
from lvseg.model.lvnet import LVNet, LVNetConfig

DEFAULT_PARAMETERS = {"lvnet": 231_716, "unet": 7_762_500, "dli-fcn": 1_857_850}
DEFAULT_MACS_AT_128 = {"lvnet": 109_453_312, "unet": 3_008_888_832, "dli-fcn": 224_924_416}


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def toy_discs(n: int = 4, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy bright discs on a dark background; every second image has no disc."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images, masks = [], []
    for i in range(n):
        cy, cx = (size * (0.25 + 0.5 * torch.rand(2, generator=g))).tolist()
        radius = size * (0.15 + 0.1 * torch.rand(1, generator=g).item())
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2) & (i % 2 == 0)
        images.append(mask.float() + 0.1 * torch.randn(size, size, generator=g))
        masks.append(mask.long())
    return torch.stack(images)[:, None], torch.stack(masks)


def test_registry_names_and_exports():
    assert model_names() == ["lvnet", "unet", "dli-fcn"]
    assert set(MODELS) == set(DEFAULT_PARAMETERS)
    assert all(spec.description for spec in MODELS.values())
    for name in ("build_model", "model_names", "size_report", "SegmentationOutput"):
        assert name in lvseg.model.__all__


@pytest.mark.parametrize("module", [lvseg.model, lvnet, unet, fcn, registry, outputs])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize("height, width", [(128, 128), (96, 160), (50, 70)])
def test_output_shapes_and_values(name, height, width):
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, height, width))
    assert isinstance(out, SegmentationOutput)
    assert out.logits.shape == (2, 2, height, width)
    assert out.presence_logit.shape == (2,)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.presence_logit).all()


@pytest.mark.parametrize("name", model_names())
def test_presence_logit_is_scaled_mean_of_lv_minus_background(name):
    model = build_model(name).eval()
    assert sum(isinstance(m, PresenceFromCAM) for m in model.modules()) == 1
    with torch.no_grad():
        model.presence.scale.fill_(1.7)
        model.presence.offset.fill_(-0.3)
        out = model(torch.randn(3, 1, 64, 64))
    evidence = (out.logits[:, 1] - out.logits[:, 0]).mean(dim=(1, 2))
    torch.testing.assert_close(out.presence_logit, 1.7 * evidence - 0.3)


def test_presence_head_starts_as_plain_average():
    head = PresenceFromCAM()
    assert (head.scale.item(), head.offset.item()) == (1.0, 0.0)


def test_lvnet_logits_are_class_activation_maps():
    model = LVNet(LVNetConfig()).eval()
    x = torch.randn(2, 1, 64, 80)
    with torch.no_grad():
        out = model(x)
        features = model.features(x)
    weights, bias = model.cam_weights()
    assert features.shape == (2, model.config.width, 64, 80)
    cam = torch.einsum("ck,bkhw->bchw", weights, features) + bias[None, :, None, None]
    torch.testing.assert_close(out.logits, cam, atol=1e-5, rtol=1e-5)
    a, t = model.presence.scale, model.presence.offset
    expected = a * (out.logits[:, 1] - out.logits[:, 0]).mean(dim=(1, 2)) + t
    torch.testing.assert_close(out.presence_logit, expected, atol=1e-5, rtol=1e-5)


def test_lvnet_centre_pixel_sees_the_whole_128_crop():
    model = LVNet().eval()
    x = torch.randn(1, 1, 128, 128, requires_grad=True)
    model(x).logits[0, 1, 64, 64].backward()
    reached = x.grad[0, 0] != 0
    assert reached[0, 0] and reached[0, -1] and reached[-1, 0] and reached[-1, -1]


@pytest.mark.parametrize("name", model_names())
def test_default_parameter_counts(name):
    model = build_model(name)
    assert n_parameters(model) == DEFAULT_PARAMETERS[name]


def test_lvnet_is_within_budget_and_far_smaller_than_unet():
    assert DEFAULT_PARAMETERS["lvnet"] <= 250_000
    assert 25 * DEFAULT_PARAMETERS["lvnet"] < DEFAULT_PARAMETERS["unet"]
    assert n_parameters(LVNet()) == n_parameters(build_model("lvnet"))


@pytest.mark.parametrize("name", model_names())
def test_size_report_of_defaults(name):
    report = size_report(name)
    assert report.name == name
    assert report.parameters == report.trainable_parameters == DEFAULT_PARAMETERS[name]
    assert report.macs == DEFAULT_MACS_AT_128[name]
    assert (report.input_size, report.in_channels) == (128, 1)


def test_size_report_counts_every_parameter_and_float_buffer():
    model = build_model("lvnet")
    model.head.bias.requires_grad_(False)
    report = size_report(model)
    assert report.parameters == n_parameters(model)
    assert report.trainable_parameters == n_parameters(model) - 2
    floats = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    assert report.fp32_bytes == 4 * (n_parameters(model) + floats)


def test_size_report_macs_of_one_conv_match_hand_count():
    class OneConv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x):
            return self.conv(x)

    report = size_report(OneConv(), input_size=16, in_channels=3)
    assert report.macs == 16 * 16 * 8 * 3 * 3 * 3
    assert report.parameters == 8 * 3 * 9 + 8
    assert report.name == "OneConv"


def test_size_report_counts_depthwise_dilated_and_transposed_convs():
    model = nn.Sequential(
        nn.Conv2d(4, 4, 3, padding=1, groups=4),  # depthwise: 4 * 9 per pixel
        nn.Conv2d(4, 4, 3, padding=2, dilation=2),  # dilated: 4 * 4 * 9 per pixel
        nn.ConvTranspose2d(4, 2, 2, stride=2),  # 4 * 2 * 2 * 2 per input pixel
    )
    report = size_report(model, input_size=8, in_channels=4)
    assert report.macs == 64 * (4 * 9) + 64 * (4 * 4 * 9) + 64 * (4 * 2 * 2 * 2)


def test_size_report_rows_and_mode():
    model = build_model("lvnet").train()
    rows = size_report(model, input_size=64).rows()
    assert model.training
    assert rows == [
        ("model", "lvnet"),
        ("parameters", "231,716"),
        ("trainable parameters", "231,716"),
        ("fp32 size", "0.95 MB"),
        ("MACs @64x64", "27.36 M"),
    ]
    assert dict(size_report("unet").rows())["MACs @128x128"] == "3.01 G"


def test_unknown_model_name_lists_known_names():
    with pytest.raises(ValueError, match="lvnet, unet, dli-fcn"):
        build_model("resnet")


def test_unknown_override_is_named():
    with pytest.raises(ValueError, match="'widht'"):
        build_model("lvnet", widht=8)
    with pytest.raises(ValueError, match="'width'"):
        build_model("dli-fcn", width=8)


@pytest.mark.parametrize(
    "name, key, value",
    [
        (name, field.name, bad)
        for name, spec in MODELS.items()
        for field in dataclasses.fields(spec.config)
        if field.type == "int"
        for bad in (
            0
            if field.name not in ("blocks", "dense_levels", "max_width", "deep_supervision")
            else -1,
            2.0,
            "16",
        )
    ]
    + [
        ("lvnet", "classes", 1),
        ("lvnet", "width", True),
        ("dli-fcn", "dropout", 1.0),
        ("dli-fcn", "dropout", -0.1),
        ("dli-fcn", "dropout", "0.5"),
        ("dli-fcn", "bilinear_init", 1),
    ],
)
def test_bad_value_is_named(name, key, value):
    with pytest.raises(ValueError, match=key):
        build_model(name, **{key: value})


@pytest.mark.parametrize(
    "name, overrides",
    [("lvnet", {"width": 8, "blocks": 2}), ("unet", {"width": 4, "depth": 3}), ("dli-fcn", {})],
)
def test_rebuild_from_saved_config(name, overrides):
    model = build_model(name, classes=3, **overrides)
    saved = json.loads(json.dumps({"model": name_of(model), "config": config_of(model)}))
    assert saved["config"]["classes"] == 3
    rebuilt = build_from_config(saved["model"], saved["config"])
    assert type(rebuilt) is type(model)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(rebuilt.eval()(x).logits, model.eval()(x).logits)


def test_config_of_needs_a_dataclass_config():
    with pytest.raises(TypeError):
        config_of(nn.Conv2d(1, 1, 1))


def test_fcn_upsampling_starts_as_bilinear_interpolation():
    model = build_model("dli-fcn")
    coarse = torch.zeros(1, 2, 4, 4)
    coarse[:, 1] = 2.5
    fine = model.upscore(coarse)
    torch.testing.assert_close(fine[0, 1, 15:-15, 15:-15], torch.full((49, 49), 2.5))
    assert fine[0, 0].abs().max() == 0


@pytest.mark.parametrize("name", model_names())
def test_one_model_learns_toy_discs(name):
    model = build_model(name).train()
    images, masks = toy_discs(size=32)
    present = (masks.flatten(1).amax(1) > 0).float()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for step in range(20):
        out = model(images)
        loss = F.cross_entropy(out.logits, masks)
        loss = loss + F.binary_cross_entropy_with_logits(out.presence_logit, present)
        optimiser.zero_grad()
        loss.backward()
        if step == 0:
            for parameter_name, parameter in model.named_parameters():
                assert parameter.grad is not None, parameter_name
                assert torch.isfinite(parameter.grad).all(), parameter_name
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_lvnet_deep_supervision_trains_coarse_heads_and_leaves_inference_alone():
    torch.manual_seed(0)
    deep = LVNet(LVNetConfig(width=8, deep_supervision=2))
    plain = LVNet(LVNetConfig(width=8))
    extra = {k: v.shape for k, v in deep.state_dict().items() if k not in plain.state_dict()}
    assert extra == {
        "auxiliary_heads.0.weight": (2, 16, 1, 1),
        "auxiliary_heads.0.bias": (2,),
        "auxiliary_heads.1.weight": (2, 32, 1, 1),
        "auxiliary_heads.1.bias": (2,),
    }
    x = torch.randn(2, 1, 64, 64)
    out = deep.train()(x)
    assert [tuple(a.shape) for a in out.auxiliary] == [(2, 2, 32, 32), (2, 2, 16, 16)]
    # in eval mode: no auxiliary outputs, and the very logits of the same weights without heads
    plain.load_state_dict({k: v for k, v in deep.state_dict().items() if k in plain.state_dict()})
    deep.eval(), plain.eval()
    assert deep(x).auxiliary == ()
    torch.testing.assert_close(deep(x).logits, plain(x).logits)
    with pytest.raises(ValueError, match="deep_supervision must be at most depth - 1 = 2"):
        LVNetConfig(depth=3, deep_supervision=3)
    with pytest.raises(ValueError, match="deep_supervision"):
        LVNetConfig(deep_supervision=-1)
