"""The architecture as data: layers that add up to the model, shapes a real forward pass makes,
the receptive field of a hand-computed stack, the CAM head where it is, JSON both ways."""

from __future__ import annotations

import doctest
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lvseg.model import architecture, build_model, model_names, receptive, size_report
from lvseg.model.architecture import CAM_HEAD, PRESENCE_HEAD, Architecture, describe


@pytest.fixture(scope="module")
def lvnet_128() -> Architecture:
    return describe(build_model("lvnet"), 128)


@pytest.mark.parametrize("name", model_names())
def test_layers_add_up_to_the_size_report(name):
    model = build_model(name)
    arch, report = describe(model, 64), size_report(model, input_size=64)
    assert sum(layer.parameters for layer in arch.layers) == arch.parameters == report.parameters
    assert sum(layer.macs for layer in arch.layers) == arch.macs == report.macs
    assert all(layer.name != "(between layers)" for layer in arch.layers)


def test_training_only_heads_are_listed_with_their_parameters_and_no_shape():
    model = build_model("lvnet", width=4, deep_supervision=2)
    arch = describe(model, 64)
    assert sum(layer.parameters for layer in arch.layers) == size_report(model, 64).parameters
    auxiliary = [layer for layer in arch.layers if layer.name.startswith("auxiliary_heads")]
    assert [layer.output_shape for layer in auxiliary] == [None, None]
    assert arch.layers[-1] is auxiliary[-1]  # those that did not run come last
    assert model.training  # describe leaves the mode as it found it


def test_lvnet_shapes_at_128_match_a_real_forward_pass(lvnet_128):
    model = build_model("lvnet").eval()
    seen: dict[str, tuple[int, ...]] = {}

    def keep(name: str, output: torch.Tensor) -> None:
        seen.setdefault(name, tuple(output.shape[1:]))

    hooks = [
        module.register_forward_hook(lambda m, i, out, n=name: keep(n, out))
        for name, module in model.named_modules()
        if name and not any(True for _ in module.children())
    ]
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 128, 128))
    for hook in hooks:
        hook.remove()
    described = {layer.name: layer.output_shape for layer in lvnet_128.layers}
    assert described == seen
    assert lvnet_128.output_shape == tuple(out.logits.shape[1:]) == (2, 128, 128)
    assert [layer.name for layer in lvnet_128.layers][:3] == ["stem.0.0", "stem.0.1", "stem.0.2"]


class _Stack(nn.Module):
    """conv 3 -> conv 3 stride 2 -> max pool 2 -> conv 3 dilation 2, with a 1x1 skip that is
    added after the strided conv (a shorter path) and a bilinear upsampling at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.skip = nn.Conv2d(1, 4, 1, stride=2)
        self.pool = nn.MaxPool2d(2)
        self.c = nn.Conv2d(4, 2, 3, padding=2, dilation=2)

    def forward(self, x):
        y = self.b(self.a(x)) + self.skip(x)
        y = self.c(self.pool(y))
        return F.interpolate(y, scale_factor=4, mode="bilinear", align_corners=False)


def test_receptive_field_of_a_hand_built_stack():
    arch = describe(_Stack(), 32, in_channels=1)
    by_name = {layer.name: layer.receptive_field for layer in arch.layers}
    # a: 3 (jump 1); b: 3 + 2*1 = 5 (jump 2); the skip (1) meets b: max 5
    # pool: 5 + 1*2 = 7 (jump 4); c: 7 + (3-1)*2*4 = 23 (jump 4)
    # bilinear x4: 2 taps, 23 + 4 = 27
    assert by_name == {"a": 3, "b": 5, "skip": 1, "pool": 7, "c": 23}
    assert arch.receptive_field == 27
    assert arch.cam_head is None


def test_registered_models_receptive_fields(lvnet_128):
    # LVNet's docstring: the bottleneck sees 95x95 pixels
    assert {b.name: b.receptive_field for b in lvnet_128.blocks()}["encoder.3"] == 95
    assert lvnet_128.receptive_field == 155
    assert describe(build_model("dli-fcn"), 64).receptive_field == 111


def test_the_cam_head_is_marked_on_lvnet_and_absent_for_the_unet(lvnet_128):
    assert lvnet_128.cam_head == "head"
    roles = {layer.name: layer.role for layer in lvnet_128.layers if layer.role}
    assert roles == {"head": CAM_HEAD, "presence": PRESENCE_HEAD}
    unet = describe(build_model("unet", width=4), 64)
    assert unet.cam_head is None
    assert CAM_HEAD not in {layer.role for layer in unet.layers}


def test_json_round_trip(lvnet_128):
    text = json.dumps(lvnet_128.to_json())
    again = Architecture.from_json(json.loads(text))
    assert again == lvnet_128
    assert json.loads(text)["layers"][0]["output_shape"] == [16, 128, 128]


def test_blocks_merge_a_stage_and_keep_the_totals(lvnet_128):
    blocks = lvnet_128.blocks()
    assert [b.name for b in blocks][-3:] == ["decoder.3", "head", "presence"]
    assert sum(b.parameters for b in blocks) == lvnet_128.parameters
    assert sum(b.macs for b in blocks) == lvnet_128.macs
    assert {b.name: b.role for b in blocks}["head"] == CAM_HEAD


def test_comparison_rows_name_both_networks(lvnet_128):
    rows = dict(
        (label, (a, b))
        for label, a, b in architecture.comparison_rows(
            lvnet_128, describe(build_model("dli-fcn"), 128)
        )
    )
    assert rows["model"] == ("lvnet", "dli-fcn")
    assert rows["parameters"] == ("231,716", "1,857,850")
    assert rows["CAM head"] == ("head", "-")


@pytest.mark.parametrize("module", [architecture, receptive])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
