"""``lvseg export``: a trained model as ONNX (optionally int8), ORT or TorchScript, checked and
described. Several models (``lvseg export RUN1 RUN2 ...``) export as one ensemble graph
(:mod:`lvseg.deploy.ensemble`) and are checked and described as one model.

One function, :func:`export`, does what the command line asks:

1. load the model (a run directory's selected model, or a checkpoint) and the slices it is
   checked on: its own training data, split as it was trained (the validation patients for the
   checks, training patients to calibrate int8), or ``--calibration DATA``;
2. write the model: ONNX through ``torch.onnx.export`` (the dynamo exporter, opset 18) with a
   dynamic batch and spatial size, the preprocessing plan and facts in the file's metadata
   (:mod:`lvseg.segment.onnx`), so ``predict`` needs nothing else;
3. check parity on real slices: the check slices are prepared once through the one inference
   path (:class:`lvseg.segment.Segmenter` with the PyTorch model: the heart located in each
   patient's stack, as ``predict`` does), and PyTorch and ONNX Runtime run on those same crops:
   the largest absolute logit difference and the Dice between their LV masks; the export fails
   when the masks differ (Dice below :data:`PARITY_MIN_DICE`). The validation Dice of every
   variant is what ``predict`` with that file would score: the whole segmenter (localisation
   included) run with that runtime, scored on the source grid as ``lvseg evaluate`` scores;
4. ``int8``: static quantisation with ONNX Runtime's tooling (QDQ, per-channel int8 weights,
   uint8 activations, min-max calibration on the crops of up to :data:`CALIBRATION_SLICES`
   training slices), and the validation Dice before and after;
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lvseg import __version__, atomic, layout
from lvseg.data.load import EMBEDDED_PHANTOM, labelled_dataset
from lvseg.data.records import LV, SliceRecord
from lvseg.data.splits import split_patients
from lvseg.deploy import card
from lvseg.deploy.card import ExportChecks
from lvseg.deploy.ensemble import load_ensemble
from lvseg.errors import InvalidInputError
from lvseg.evaluate.metrics import dice
from lvseg.model.classes import CLASS_NAMES, LV_CLASS
from lvseg.runs.checkpoint import LoadedModel, load_model
from lvseg.segment import onnx as runtime
from lvseg.segment.network import Network, TorchNetwork, lv_softmax
from lvseg.segment.quality import QualityModel, default_quality_model, read_quality_model
from lvseg.segment.segmenter import THRESHOLD, Segmenter

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
    config = loaded.checkpoint.train_config
    trained_on = loaded.checkpoint.train_data
    split = loaded.checkpoint.split
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
    fmt = config.data.format if calibration is None and config is not None else "auto"
    dataset = labelled_dataset(source, fmt)
    patients = dataset.patients
    trained = [p for p in patients if split is not None and p in split.train]
    kept_out = set(() if split is None else split.test)  # --exclude-patients: never calibrate
    val = [p for p in patients if split is not None and p in split.val]
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


def crops(results: Sequence[Any]) -> np.ndarray:
    """The network inputs (N, 1, S, S) of segmented records."""
    return np.stack([r.crop.image for r in results])[:, None].astype(np.float32)


def _batches(images: np.ndarray, size: int = 16):
    for start in range(0, len(images), size):
        yield images[start : start + size]


def _run(backend: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> np.ndarray:
    return np.concatenate([backend(batch) for batch in _batches(images)])


def parity(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Largest absolute logit difference, and Dice and differing pixels of the LV masks."""
    masks_a = lv_softmax(reference) > THRESHOLD
    masks_b = lv_softmax(candidate) > THRESHOLD
    return {
        "max_abs_logit_difference": float(np.abs(reference - candidate).max()),
        "mask_dice": dice(masks_a, masks_b),
        "pixels_differing": int((masks_a != masks_b).sum()),
        "pixels": int(masks_a.size),
    }


def validation_dice(results: Sequence[Any]) -> float:
    """Mean per-slice Dice against the reference LV on the source grid (as evaluate scores)."""
    scores = [dice(r.mask, r.record.masks[LV]) for r in results]
    return float(np.mean(scores)) if scores else float("nan")


def segment_checks(network: Network, plan: Any, records: Sequence[SliceRecord]) -> list[Any]:
    """The records through the one inference path with ``network``, as ``predict`` runs it."""
    return Segmenter(network, plan).segment(records)


# ------------------------------------------------------------------------------ writers


def metadata(
    loaded: LoadedModel, precision: str, tta: bool = False, quality: QualityModel | None = None
) -> dict[str, str]:
    """What an lvseg ONNX file carries besides its graph (see :mod:`lvseg.segment.onnx`)."""
    split = {}
    if quality is not None:
        split["quality"] = json.dumps(quality.to_dict(), sort_keys=True)
    if loaded.checkpoint.split is not None:
        split["split"] = json.dumps(loaded.checkpoint.split.to_dict())
    if loaded.checkpoint.train_data is not None:
        split["train_data"] = loaded.checkpoint.train_data
    return {
        "lvseg_format": runtime.FORMAT,
        "lvseg_format_version": str(runtime.FORMAT_VERSION),
        "lvseg_version": __version__,
        "model_name": loaded.name,
        "precision": precision,
        "lv_class": str(LV_CLASS),
        "classes": ",".join(CLASS_NAMES),
        "parameters": str(loaded.parameters),
        "plan": json.dumps(loaded.plan.to_dict(), sort_keys=True),
        "tta": "1" if tta else "0",
        **split,
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


def write_onnx(
    loaded: LoadedModel, path: Path, crop_size: int, values: dict[str, str] | None = None
) -> None:
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
    _set_metadata(path, values or metadata(loaded, "fp32"))


class _Calibration:
    """ONNX Runtime's CalibrationDataReader protocol over preprocessed crops."""

    def __init__(self, images: np.ndarray) -> None:
        self._batches = iter(list(_batches(images, size=8)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {runtime.INPUT_NAME: batch}


def write_int8(fp32: Path, path: Path, calibration: np.ndarray, values: dict) -> None:
    """Static int8 quantisation (QDQ) of an fp32 lvseg ONNX file, calibrated on the crops
    ``calibration`` (N, 1, S, S)."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not len(calibration):
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


def _quality_facts(scorer: QualityModel | None) -> dict[str, Any] | None:
    """The embedded quality score as the card gives it: source, frames fitted on, modes."""
    if scorer is None:
        return None
    modes = [m for m, on in (("plain", False), ("tta", True)) if scorer.for_tta(on)]
    return {"source": scorer.source, "fitted_on": scorer.fitted_on, "modes": modes}


@dataclass
class _Logits:
    """A function from crops to logits, as a segmenter network (the traced TorchScript)."""

    logits: Callable[[np.ndarray], np.ndarray]
    lv_class: int = LV_CLASS


@dataclass
class _Check:
    """The PyTorch reference, and the checks of every exported variant against it."""

    loaded: LoadedModel
    network: TorchNetwork
    checks: Sequence[SliceRecord]
    results: ExportChecks
    reference: np.ndarray
    """PyTorch's logits on ``images``."""
    images: np.ndarray
    """The check slices' crops, as the segmenter placed them with PyTorch."""
    say: ProgressCallback

    @property
    def plan(self) -> Any:
        return self.loaded.plan

    def onnx(self, label: str, path: Path) -> None:
        exported = runtime.open_model(path, threads=None)
        self.record(label, path, exported)
        # Closed before the one-thread timing: an all-core session's idle, spinning thread
        # pool would slow the single thread down (measured: 2-3x on a 2-core machine).
        del exported
        single = runtime.open_model(path, threads=1)
        self.results.latency_ms_1_thread[label] = latency_ms(single.logits, self.plan.crop_size)

    def record(self, label: str, path: Path, network: Network) -> None:
        """Parity on the reference crops; refused (fp32) when the masks differ; then the
        validation Dice of the whole inference path run with this variant."""
        check = parity(self.reference, _run(network.logits, self.images))
        self.results.parity[label] = check
        self.results.files[label] = {"file": path.name, "bytes": os.path.getsize(path)}
        if "int8" not in label and check["mask_dice"] < PARITY_MIN_DICE:
            raise ExportError(
                None,
                f"{label} masks differ from PyTorch's (mask Dice {check['mask_dice']:.4f}, "
                f"{check['pixels_differing']} pixels; largest logit difference "
                f"{check['max_abs_logit_difference']:.3g}): export refused",
            )
        segmented = segment_checks(network, self.plan, self.checks)
        self.results.validation_dice[label] = validation_dice(segmented)


def _pytorch_check(
    loaded: LoadedModel, checks: Sequence[SliceRecord], how: str, tta: bool, say: ProgressCallback
) -> _Check:
    """PyTorch on the check slices: the reference logits every variant is held to, its
    validation Dice (and with ``tta`` that of test-time augmentation), its latency."""
    plan = loaded.plan
    network = TorchNetwork(loaded.model, source=loaded.source)
    segmented = segment_checks(network, plan, checks)
    images = crops(segmented)  # every variant runs on these same crops for parity
    reference = _run(network.logits, images)
    results = ExportChecks(checks=how, check_slices=len(checks), calibration_slices=0, tta=tta)
    results.validation_dice["pytorch"] = validation_dice(segmented)
    timed = {"pytorch": network.logits}
    if tta:
        say("checking test-time augmentation")
        tta_segmenter = Segmenter(network, plan, tta=True)
        results.validation_dice["pytorch tta"] = validation_dice(tta_segmenter.segment(checks))
        timed["pytorch tta"] = tta_segmenter.crop_probability
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for label, run in timed.items():
            results.latency_ms_1_thread[label] = latency_ms(run, plan.crop_size)
    finally:
        torch.set_num_threads(torch_threads)
    return _Check(loaded, network, checks, results, reference, images, say)


def _write_variants(
    check: _Check,
    folder: Path,
    format: str,
    calibrate: list[SliceRecord] | None,
    values: dict[str, str],
) -> None:
    """The model files of ``format`` into ``folder``, with the metadata ``values``, each
    checked against PyTorch as it is written; ``calibrate``: the slices to quantise to int8 on
    (None: no int8)."""
    loaded, plan, say = check.loaded, check.plan, check.say
    if format == "torchscript":
        say("tracing TorchScript")
        path = folder / layout.TORCHSCRIPT
        traced = write_torchscript(loaded, path, plan.crop_size, values)
        scripted = _Logits(lambda b: traced(torch.from_numpy(b)).detach().numpy())
        check.record("torchscript", path, scripted)
        return
    say("exporting ONNX and checking it against PyTorch")
    onnx_path = folder / layout.ONNX
    write_onnx(loaded, onnx_path, plan.crop_size, values)
    check.onnx("onnx fp32", onnx_path)
    if calibrate is not None:
        say(f"quantising to int8 (calibration on {len(calibrate)} slices)")
        int8_path = folder / layout.ONNX_INT8
        calibration_crops = crops(segment_checks(check.network, plan, calibrate))
        write_int8(onnx_path, int8_path, calibration_crops, values)
        check.onnx("onnx int8", int8_path)
    if format == "ort":
        say("converting to the ORT format (ONNX Runtime Mobile)")
        pairs = [(layout.ONNX, layout.ORT, "ort fp32")]
        if calibrate is not None:
            pairs.append((layout.ONNX_INT8, layout.ORT_INT8, "ort int8"))
        for source, target, label in pairs:
            write_ort(folder / source, folder / target)
            check.onnx(label, folder / target)


def export(
    model_spec: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    format: str = "onnx",
    int8: bool = False,
    calibration: str | Path | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    tta: bool = False,
    quality: str | Path | None = None,
    evaluation: str | Path | None = None,
) -> card.ModelCard:
    """Export, check and describe a model into the folder ``out``; returns its model card.

    ``tta`` marks the export for test-time augmentation: ``predict`` then averages the 8 flips
    and quarter turns of each crop unless told otherwise; the card gives its Dice and cost.
    ``quality`` is a quality-control score file to embed instead of the one lvseg ships
    (:mod:`lvseg.segment.quality`); ``predict`` reports each frame's predicted Dice with it.
    ``evaluation``: an ``lvseg evaluate`` output of this model for its card (by default the
    run's own evaluation folder, where it scored this checkpoint)."""
    if format not in FORMATS:
        raise InvalidInputError(None, f"unknown format {format!r}; choose {', '.join(FORMATS)}")
    if int8 and format == "torchscript":
        raise InvalidInputError(None, "--int8 applies to the onnx and ort formats")
    out = Path(out)
    specs = [model_spec] if isinstance(model_spec, str | Path) else list(model_spec)
    atomic.check_output_folder(out, overwrite, keep=(*specs, calibration, evaluation))
    if evaluation is not None and len(specs) > 1:
        raise InvalidInputError(evaluation, "--evaluation is one model's: an ensemble has none")
    scorer = read_quality_model(quality) if quality is not None else default_quality_model()
    say = progress or (lambda _stage: None)
    say("loading the model and its check slices")
    loaded = load_model(specs[0]) if len(specs) == 1 else load_ensemble(specs)
    # read once, before the work: a wrong --evaluation is refused before anything is exported
    quoted = None if len(specs) > 1 else card.evaluation_summary(loaded.source, evaluation)
    calibrate, checks, how = check_slices(loaded, calibration)
    if not checks:
        raise InvalidInputError(None, f"no slice to check the export on ({how})")
    check = _pytorch_check(loaded, checks, how, tta, say)
    check.results.calibration_slices = len(calibrate) if int8 else 0
    check.results.quality_model = _quality_facts(scorer)
    values = metadata(loaded, "fp32", tta, scorer)
    with atomic.output_folder(out) as folder:
        _write_variants(check, folder, format, calibrate if int8 else None, values)
        say("writing the model card")
        found = card.build(
            loaded, check.results, format=format, int8=int8, members=specs, evaluation=quoted
        )
        card.write(folder, found)
    found.out = str(out)
    return found
