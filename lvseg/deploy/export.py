"""``lvseg export``: a trained model as ONNX (optionally int8), ORT or TorchScript, checked and
described.

One function, :func:`export`, does what the command line asks:

1. load the model (a run directory's selected model, or a checkpoint) and the slices it is
   checked on: its own training data, split as it was trained (the validation patients for the
   checks, training patients to calibrate int8), or ``--calibration DATA``;
2. write the model: ONNX through ``torch.onnx.export`` (the dynamo exporter, opset 18) with a
   dynamic batch and spatial size, the preprocessing plan and facts in the file's metadata
   (:mod:`lvseg.deploy.runtime`), so ``predict`` needs nothing else;
3. check parity on real slices: PyTorch against ONNX Runtime, the largest absolute logit
   difference and the Dice between their LV masks; the export fails when the masks differ
   (Dice below :data:`PARITY_MIN_DICE`);
4. ``int8``: static quantisation with ONNX Runtime's tooling (QDQ, per-channel int8 weights,
   uint8 activations, min-max calibration on up to :data:`CALIBRATION_SLICES` training slices),
   and the validation Dice before and after;
5. ``ort``: the ORT format of ONNX Runtime Mobile (Android/iOS), converted by ONNX Runtime itself;
   ``torchscript``: a traced module for PyTorch Mobile / C++, with the plan as an extra file;
6. a model card beside it (``model-card.md`` and ``model-card.json``, :mod:`lvseg.deploy.card`).

The folder is built beside its place and moved there when complete: a failed check leaves
nothing behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lvseg import __version__
from lvseg.data import atomic
from lvseg.data.errors import InvalidInputError
from lvseg.data.load import EMBEDDED_PHANTOM, labelled_dataset
from lvseg.data.preprocess import PreprocessPlan, preprocess_record, to_source_grid
from lvseg.data.records import LV, SliceRecord
from lvseg.data.splits import split_patients
from lvseg.deploy import card, runtime
from lvseg.evaluate.metrics import dice
from lvseg.model.checkpoint import LoadedModel, load_model

FORMATS = ("onnx", "ort", "torchscript")
OPSET = 18
PARITY_MIN_DICE = 0.999
"""fp32 exports whose LV masks agree with PyTorch's less than this fail: float rounding may flip
a pixel whose probability is within 1e-6 of 0.5, a wrong graph flips thousands."""
INT8_AIM_DROP = 0.005
CALIBRATION_SLICES = 64
CHECK_SLICES = 256
LATENCY_REPEATS = 20

ProgressCallback = Callable[[str], None]
"""Called with a short description of each stage as it starts."""


class ExportError(InvalidInputError):
    """An export whose check failed: nothing is written."""


class LogitsOnly(nn.Module):
    """The model with one output, the class scores: what the exported graph computes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image).logits


# ------------------------------------------------------------------------------ check slices


def check_slices(
    loaded: LoadedModel, calibration: str | Path | None
) -> tuple[list[SliceRecord], list[SliceRecord], str]:
    """Slices to calibrate on and slices to check on, and one sentence saying where from.

    Without ``calibration``: the model's own training data, calibration from its training
    patients and checks on its validation patients. With it: that dataset, split the same way
    where it holds the model's validation patients, else checks on the patients the model did not
    train on, else a stratified 80/20 patient split (said to be optimistic where the model trained
    on them). Patients kept out of training (``--exclude-patients``) are never calibrated on.
    """
    config = loaded.checkpoint.get("train_config") or {}
    data_config = config.get("data") or {}
    trained_on = data_config.get("path")
    split = loaded.checkpoint.get("split") or {}
    source = calibration
    if source is None:
        if trained_on and (trained_on == EMBEDDED_PHANTOM or Path(trained_on).exists()):
            source = trained_on
        else:
            raise InvalidInputError(
                None,
                f"the model's training data ({trained_on}) is not here to check the export "
                "on; give --calibration DATA (labelled slices like the training data)",
            )
    fmt = data_config.get("format", "auto") if calibration is None else "auto"
    dataset = labelled_dataset(source, fmt)
    patients = dataset.patients
    trained = [p for p in patients if p in set(split.get("train", ()))]
    kept_out = set(split.get("test", ()))  # e.g. --exclude-patients: never calibrate on them
    val = [p for p in patients if p in set(split.get("val", ()))]
    if val:
        train = trained or [p for p in patients if p not in set(val) | kept_out]
        how = f"{source}: calibration on {len(train)} training patients, checks on the model's "
        how += f"{len(val)} validation patients"
    elif trained and len(trained) < len(patients):
        val = [p for p in patients if p not in set(trained)]
        train = trained
        how = f"{source}: calibration on {len(train)} of the model's training patients, checks "
        how += f"on {len(val)} patients it did not train on"
    else:
        parts = split_patients(dataset, val_fraction=0.2, seed=0)
        train, val = list(parts.train), list(parts.val)
        how = f"{source}: calibration on {len(train)} patients, checks on {len(val)} others"
        if trained:
            how += " (all of them trained the model: the check Dice is optimistic)"
    calibrate = [r for r in dataset.records if r.patient_id in set(train)]
    checks = [r for r in dataset.records if r.patient_id in set(val)]
    return _spread(calibrate, CALIBRATION_SLICES), _spread(checks, CHECK_SLICES), how


def _spread(records: Sequence[SliceRecord], count: int) -> list[SliceRecord]:
    """At most ``count`` records, evenly spaced over the list (deterministic)."""
    if len(records) <= count:
        return list(records)
    picks = np.linspace(0, len(records) - 1, count).round().astype(int)
    return [records[i] for i in picks]


def prepare(records: Sequence[SliceRecord], plan: PreprocessPlan) -> list[SliceRecord]:
    """The records as the network sees them at inference: resampled, normalised, image-centred
    crop (the same call ``lvseg evaluate`` makes)."""
    return [preprocess_record(r, plan, centre="image") for r in records]


def _batches(prepared: Sequence[SliceRecord], size: int = 16):
    for start in range(0, len(prepared), size):
        chunk = prepared[start : start + size]
        yield np.stack([p.image for p in chunk])[:, None].astype(np.float32)


def _run(backend: Callable[[np.ndarray], np.ndarray], prepared: Sequence[SliceRecord]):
    return np.concatenate([backend(batch) for batch in _batches(prepared)])


def torch_backend(model: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch)).logits.float().numpy()

    return run


def parity(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Largest absolute logit difference, and Dice and differing pixels of the LV masks."""
    masks_a = runtime.lv_softmax(reference) > 0.5
    masks_b = runtime.lv_softmax(candidate) > 0.5
    return {
        "max_abs_logit_difference": float(np.abs(reference - candidate).max()),
        "mask_dice": dice(masks_a, masks_b),
        "pixels_differing": int((masks_a != masks_b).sum()),
        "pixels": int(masks_a.size),
    }


def validation_dice(logits: np.ndarray, prepared: Sequence[SliceRecord], originals) -> float:
    """Mean per-slice Dice against the reference LV on the source grid (as evaluate scores)."""
    probability = runtime.lv_softmax(logits)
    scores = [
        dice(to_source_grid(p, record.geometry) > 0.5, original.masks[LV])
        for p, record, original in zip(probability, prepared, originals, strict=True)
    ]
    return float(np.mean(scores)) if scores else float("nan")


# ------------------------------------------------------------------------------ writers


def metadata(loaded: LoadedModel, precision: str) -> dict[str, str]:
    """What an lvseg ONNX file carries besides its graph (see :mod:`lvseg.deploy.runtime`)."""
    return {
        "lvseg_format": runtime.FORMAT,
        "lvseg_format_version": str(runtime.FORMAT_VERSION),
        "lvseg_version": __version__,
        "model_name": loaded.name,
        "precision": precision,
        "lv_class": str(runtime.LV_CLASS),
        "classes": "background,lv",
        "plan": json.dumps(loaded.plan, sort_keys=True),
    }


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' chatter (progress lines, warnings about absent torchvision)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch._export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _set_metadata(path: Path, values: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def write_onnx(loaded: LoadedModel, path: Path, crop_size: int) -> None:
    """The fp32 ONNX graph with a dynamic batch and spatial size, and lvseg's metadata."""
    try:
        import onnxscript  # noqa: F401 - the dynamo exporter needs it
    except ImportError:
        raise InvalidInputError(
            None, "ONNX export needs onnxscript: pip install onnxscript"
        ) from None
    wrapper = LogitsOnly(loaded.model).eval()
    example = torch.zeros(2, 1, crop_size, crop_size)
    dynamic = {
        0: torch.export.Dim.DYNAMIC,
        2: torch.export.Dim.DYNAMIC,
        3: torch.export.Dim.DYNAMIC,
    }
    with _quiet():
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=[runtime.INPUT_NAME],
            output_names=[runtime.OUTPUT_NAME],
            dynamic_shapes=(dynamic,),
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    _set_metadata(path, metadata(loaded, "fp32"))


class _Calibration:
    """ONNX Runtime's CalibrationDataReader protocol over preprocessed crops."""

    def __init__(self, prepared: Sequence[SliceRecord]) -> None:
        self._batches = iter(list(_batches(prepared, size=8)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {runtime.INPUT_NAME: batch}


def write_int8(fp32: Path, path: Path, calibration: Sequence[SliceRecord], values: dict) -> None:
    """Static int8 quantisation (QDQ) of an fp32 lvseg ONNX file."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise InvalidInputError(None, "int8 calibration needs at least one slice")
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch, _quiet():
        # Staged in a folder of its own, which takes whatever the tools leave behind with it.
        staged = str(Path(scratch) / "staged.onnx")
        quant_pre_process(str(fp32), staged, skip_symbolic_shape=True)
        quantize_static(
            staged,
            str(path),
            _Calibration(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    _set_metadata(path, {**values, "precision": "int8"})


def write_ort(onnx_path: Path, path: Path) -> None:
    """The ORT format (ONNX Runtime Mobile), written by ONNX Runtime from the ONNX file.

    Basic graph optimisations only, as ONNX Runtime's own converter does for models meant to
    run on any device; the metadata travels with the graph.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(path)
    options.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def write_torchscript(loaded: LoadedModel, path: Path, crop_size: int, values: dict) -> nn.Module:
    """A traced TorchScript module (PyTorch Mobile, C++), the metadata as ``lvseg.json``."""
    wrapper = LogitsOnly(loaded.model).eval()
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(wrapper, torch.zeros(1, 1, crop_size, crop_size))
        torch.jit.save(traced, str(path), _extra_files={"lvseg.json": json.dumps(values)})
    return traced


def latency_ms(run: Callable[[np.ndarray], object], crop_size: int) -> float:
    """Median single-slice latency in ms (after two warm-up calls)."""
    image = np.random.default_rng(0).standard_normal((1, 1, crop_size, crop_size), np.float32)
    for _ in range(2):
        run(image)
    times = []
    for _ in range(LATENCY_REPEATS):
        start = time.perf_counter()
        run(image)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


# ------------------------------------------------------------------------------ export


def export(
    model_spec: str | Path,
    out: str | Path,
    *,
    format: str = "onnx",
    int8: bool = False,
    calibration: str | Path | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Export, check and describe a model into the folder ``out``; returns the card's data."""
    if format not in FORMATS:
        raise InvalidInputError(None, f"unknown format {format!r}; choose {', '.join(FORMATS)}")
    if int8 and format == "torchscript":
        raise InvalidInputError(None, "--int8 applies to the onnx and ort formats")
    out = Path(out)
    atomic.check_output_folder(out, overwrite)
    say = progress or (lambda _stage: None)
    say("loading the model and its check slices")
    loaded = load_model(model_spec)
    plan = PreprocessPlan.from_dict(loaded.plan)
    calibrate, checks, how = check_slices(loaded, calibration)
    if not checks:
        raise InvalidInputError(None, f"no slice to check the export on ({how})")
    prepared = prepare(checks, plan)
    reference = _run(torch_backend(loaded.model), prepared)
    results: dict[str, Any] = {
        "checks": how,
        "check_slices": len(checks),
        "calibration_slices": len(calibrate) if int8 else 0,
        "validation_dice": {"pytorch": validation_dice(reference, prepared, checks)},
        "files": {},
        "parity": {},
        "latency_ms_1_thread": {},
    }
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results["latency_ms_1_thread"]["pytorch"] = latency_ms(
            torch_backend(loaded.model), plan.crop_size
        )
    finally:
        torch.set_num_threads(torch_threads)
    values = metadata(loaded, "fp32")
    with atomic.atomic_directory(out, overwrite=True) as folder:
        if format == "torchscript":
            say("tracing TorchScript")
            path = folder / "model.torchscript.pt"
            traced = write_torchscript(loaded, path, plan.crop_size, values)
            scripted = _run(lambda b: traced(torch.from_numpy(b)).detach().numpy(), prepared)
            _record(results, "torchscript", path, reference, scripted, prepared, checks)
        else:
            say("exporting ONNX and checking it against PyTorch")
            onnx_path = folder / "model.onnx"
            write_onnx(loaded, onnx_path, plan.crop_size)
            _check_onnx(results, "onnx fp32", onnx_path, reference, prepared, checks, plan)
            if int8:
                say(f"quantising to int8 (calibration on {len(calibrate)} slices)")
                int8_path = folder / "model.int8.onnx"
                prepared_calibration = prepare(calibrate, plan)
                write_int8(onnx_path, int8_path, prepared_calibration, values)
                _check_onnx(results, "onnx int8", int8_path, reference, prepared, checks, plan)
            if format == "ort":
                say("converting to the ORT format (ONNX Runtime Mobile)")
                for name in ["model"] + (["model.int8"] if int8 else []):
                    ort_path = folder / f"{name}.ort"
                    write_ort(folder / f"{name}.onnx", ort_path)
                    label = "ort int8" if name.endswith("int8") else "ort fp32"
                    _check_onnx(results, label, ort_path, reference, prepared, checks, plan)
        say("writing the model card")
        found = card.build(loaded, results, format=format, int8=int8)
        card.write(folder, found)
    return {**found, "out": str(out)}


def _check_onnx(results, label, path, reference, prepared, checks, plan) -> None:
    exported = runtime.open_model(path, threads=None)
    candidate = _run(exported.logits, prepared)
    # Closed before the one-thread timing: an all-core session's idle, spinning thread pool
    # would slow the single thread down (measured: 2-3x on a 2-core machine).
    del exported
    single = runtime.open_model(path, threads=1)
    results["latency_ms_1_thread"][label] = latency_ms(single.logits, plan.crop_size)
    _record(results, label, path, reference, candidate, prepared, checks)


def _record(results, label, path, reference, candidate, prepared, checks) -> None:
    check = parity(reference, candidate)
    results["parity"][label] = check
    results["files"][label] = {"file": path.name, "bytes": os.path.getsize(path)}
    results["validation_dice"][label] = validation_dice(candidate, prepared, checks)
    if "int8" not in label and check["mask_dice"] < PARITY_MIN_DICE:
        raise ExportError(
            None,
            f"{label} masks differ from PyTorch's (mask Dice {check['mask_dice']:.4f}, "
            f"{check['pixels_differing']} pixels; largest logit difference "
            f"{check['max_abs_logit_difference']:.3g}): export refused",
        )
