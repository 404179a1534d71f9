"""Builders for deployment tests: a threshold "oracle" model whose answer on a synthetic study
is known exactly, and such a study (a beating disc far from the image centre), so that predict's
geometry can be checked to a fraction of a pixel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from builders import plain_plan

from lvseg.segment import onnx as runtime

ORACLE_SPACING_MM = 1.25
ORACLE_CROP = 64


def oracle_plan(spacing_mm: float | None = ORACLE_SPACING_MM, crop: int = ORACLE_CROP) -> dict:
    # The oracle's half-way level is the disc's edge only on a plan that leaves intensities be.
    return plain_plan(spacing_mm, crop).to_dict()


def write_oracle_model(path: Path, plan: dict | None = None, **metadata: str) -> Path:
    """An lvseg ONNX model that calls a pixel LV when it is brighter than the half-way level
    between its image's darkest and brightest value: on a two-level image (a bright disc on a
    dark ground), the disc, with its edge on the half-level contour, exactly as the masks are
    resampled. ``metadata`` overrides the lvseg metadata (to make wrong files)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMax", ["image"], ["high"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("ReduceMin", ["image"], ["low"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Add", ["high", "low"], ["sum"]),
        helper.make_node("Mul", ["sum", "half"], ["middle"]),
        helper.make_node("Sub", ["image", "middle"], ["above"]),
        helper.make_node("Mul", ["above", "gain"], ["lv"]),
        helper.make_node("Mul", ["above", "zero"], ["background"]),
        helper.make_node("Concat", ["background", "lv"], ["logits"], axis=1),
    ]
    constants = [
        helper.make_tensor(name, TensorProto.FLOAT, [], [value])
        for name, value in (("half", 0.5), ("gain", 40.0), ("zero", 0.0))
    ]
    graph = helper.make_graph(
        nodes,
        "oracle",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", 1, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 2, "h", "w"])],
        initializer=constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    values = {
        "lvseg_format": runtime.FORMAT,
        "lvseg_format_version": str(runtime.FORMAT_VERSION),
        "model_name": "oracle",
        "precision": "fp32",
        "lv_class": "1",
        "plan": json.dumps(plan or oracle_plan()),
        **metadata,
    }
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def disc_study(
    slices: int = 4,
    phases: int = 8,
    shape: tuple[int, int] = (160, 200),
    spacing: tuple[float, float] = (0.9, 0.8),
    centre_px: tuple[float, float] = (38.0, 158.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Images (slices, phases, rows, cols) of a beating LV disc far from the image centre, and
    its masks: radius ``(10 + 4 cos(2 pi p / phases)) * (1 - 0.1 s)`` mm, so ED is phase 0 and
    ES phase ``phases // 2``. Slice 1, where there is one, also shows a small bright blob near
    the image centre (a distractor that a centre crop would pick)."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    dy = (rows - centre_px[0]) * spacing[0]
    dx = (cols - centre_px[1]) * spacing[1]
    masks = np.zeros((slices, phases, *shape), bool)
    for s in range(slices):
        for p in range(phases):
            radius = (10 + 4 * np.cos(2 * np.pi * p / phases)) * (1 - 0.1 * s)
            masks[s, p] = dy**2 + dx**2 <= radius**2
    images = masks.astype(np.float32) * 800 + 100
    blob = ((rows - 90) * spacing[0]) ** 2 + ((cols - 95) * spacing[1]) ** 2 <= 16
    if slices > 1:
        images[1, :, blob] = 900
    return images, masks
