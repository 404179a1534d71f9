"""``lvseg explain``: explain a model's LV segmentation of every slice of some inputs.

One function, :func:`explain`, does what the command line asks: load the model, read the
inputs with the data layer, segment them through the one inference path, as ``predict`` does
(:class:`lvseg.segment.Segmenter`: the model's own preprocessing plan, the crop on the heart
located in each stack), explain the crops the network saw in batches,
draw one panel per slice (:mod:`lvseg.explain.render`) and an ``index.html`` that shows them
all. With ``metrics`` it also measures the explanations (:mod:`lvseg.explain.faithfulness`):
localisation and deletion/insertion per slice with a reference LV, and the model-randomisation
sanity check once, on a few slices; everything goes to ``metrics.json``.

Inputs are whatever :func:`lvseg.data.inputs.read_inputs` reads: a dataset folder, a study, a
NIfTI file, ``phantom``, or a single 2-D image or DICOM slice file. The output folder is built
beside its place and moved there when complete, so an interrupted run leaves nothing
half-written.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lvseg import atomic
from lvseg.data.inputs import read_inputs
from lvseg.data.records import LV, SliceRecord
from lvseg.errors import InvalidInputError
from lvseg.evaluate.metrics import dice
from lvseg.explain import render
from lvseg.jsonsafe import json_safe
from lvseg.segment.network import TorchNetwork
from lvseg.segment.segmenter import THRESHOLD, Segmenter, SliceSegmentation

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each batch of slices."""

METRICS_FILE = "metrics.json"
PANELS_FOLDER = "panels"
BATCH_SIZE = 16
SANITY_SLICES = 8
DILATION_PX = 5
STEPS = 20
SEED = 0
CURVES = ("deletion", "insertion", "random_deletion", "random_insertion")


# ------------------------------------------------------------------------------ explanations


@dataclass
class Explanation:
    """One requested explanation: a method at a layer, and its explainer."""

    method: str
    layer: str
    explainer: Any

    @property
    def label(self) -> str:
        return f"{self.method}@{self.layer}"


def cam_available(model: torch.nn.Module) -> bool:
    """Whether the model has the global-average-pooling head that CAM needs."""
    from lvseg.explain.cam import make_explainer

    try:
        make_explainer("cam", model)
    except InvalidInputError:
        return False
    return True


def plan_explanations(
    model: torch.nn.Module,
    methods: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
) -> list[Explanation]:
    """The explanations to compute: CAM once, Grad-CAM once per layer.

    ``methods`` defaults to both where the model has a CAM head, else Grad-CAM; ``layers``
    (Grad-CAM only) default to :func:`~lvseg.explain.cam.default_layer`. Unknown methods or
    layers raise :class:`InvalidInputError` naming the valid ones.
    """
    from lvseg.explain.cam import METHODS, conv_layer_names, default_layer, make_explainer

    methods = list(dict.fromkeys(methods or ()))
    layers = list(dict.fromkeys(layers or ()))
    for method in methods:
        if method not in METHODS:
            raise InvalidInputError(
                None, f"unknown method {method!r}; choose one of {', '.join(METHODS)}"
            )
    valid = conv_layer_names(model)
    for layer in layers:
        if layer not in valid:
            raise InvalidInputError(
                None, f"unknown layer {layer!r}; the model's layers are {', '.join(valid)}"
            )
    if not methods:
        methods = ["cam", "gradcam"] if cam_available(model) else ["gradcam"]
    if layers and "gradcam" not in methods:
        raise InvalidInputError(None, "--layers chooses Grad-CAM layers; add --method gradcam")
    planned = []
    for method in methods:
        if method == "cam":
            explainer = make_explainer("cam", model)
            planned.append(Explanation("cam", default_layer(model, "cam"), explainer))
            continue
        for layer in layers or [default_layer(model, method)]:
            planned.append(Explanation(method, layer, make_explainer(method, model, layer)))
    return planned


def _numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy()
    return np.asarray(values)


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(kept) / len(kept) if kept else None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "slice"


def _panel_name(position: int, record: SliceRecord) -> str:
    slice_part = "-" if record.slice_index is None else str(record.slice_index)
    phase_part = "-" if record.phase_index is None else str(record.phase_index)
    return f"{position:04d}_{_slug(record.patient_id)}_s{slice_part}_p{phase_part}.png"


def _title(record: SliceRecord) -> str:
    slice_part = "-" if record.slice_index is None else record.slice_index
    phase = record.phase or ("-" if record.phase_index is None else f"phase {record.phase_index}")
    return f"{record.patient_id}  slice {slice_part}  {phase}  ({Path(record.source).name})"


def _reference(record: SliceRecord) -> np.ndarray | None:
    mask = record.masks.get(LV)
    return None if mask is None else np.asarray(mask, bool)


def _sanity_positions(records: Sequence[SliceRecord], count: int) -> list[int]:
    """``count`` slices spread evenly over the input, those with a reference LV first."""
    with_lv = [i for i, r in enumerate(records) if LV in r.masks and r.masks[LV].any()]
    pool = with_lv if len(with_lv) >= min(count, len(records)) else list(range(len(records)))
    if len(pool) <= count:
        return pool
    return sorted({pool[round(j * (len(pool) - 1) / (count - 1))] for j in range(count)})


# ------------------------------------------------------------------------------ the command


@dataclass
class _Measured:
    """The measures of every explanation, gathered slice by slice for the means."""

    located: dict[str, list[Any]] = field(default_factory=dict)
    faithful: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, label: str, place: Any, faith: Any) -> dict[str, Any]:
        """Keep one slice's results; return its row for ``metrics.json`` and the caption."""
        self.located.setdefault(label, []).append(place)
        self.faithful.setdefault(label, []).append(faith)
        return {
            "energy_inside": None if place is None else place.energy_inside,
            "pointing_hit": None if place is None else place.pointing_hit,
            **{f"{name}_auc": getattr(faith, name).auc for name in CURVES},
        }

    def means(self, label: str) -> dict[str, float]:
        from lvseg.explain.faithfulness import summarise

        return summarise(self.located.get(label, ()), self.faithful.get(label, ()))

    def mean_curves(self, label: str) -> dict[str, list[float]] | None:
        faithful = self.faithful.get(label)
        if not faithful:
            return None
        curves: dict[str, list[float]] = {"fractions": list(faithful[0].deletion.fractions)}
        for name in CURVES:
            scores = np.array([getattr(f, name).scores for f in faithful], np.float64)
            curves[name] = scores.mean(axis=0).tolist()
        return curves


def _measure(
    model: torch.nn.Module,
    images: torch.Tensor,
    maps: dict[str, torch.Tensor],
    references: Sequence[np.ndarray | None],
    explanations: Sequence[Explanation],
    measured: _Measured,
) -> dict[int, dict[str, dict[str, Any]]]:
    """Localisation and deletion/insertion of every explanation on the batch positions with a
    non-empty reference LV: ``{position: {label: measures}}``."""
    from lvseg.explain.faithfulness import deletion_insertion, localisation

    positions = [i for i, ref in enumerate(references) if ref is not None and ref.any()]
    found: dict[int, dict[str, dict[str, Any]]] = {i: {} for i in positions}
    if not positions:
        return found
    reference = torch.from_numpy(np.stack([references[i] for i in positions]))
    for e in explanations:
        selected = maps[e.label][positions]
        places = localisation(selected, reference, dilation_px=DILATION_PX)
        faiths = deletion_insertion(model, images[positions], selected, steps=STEPS, seed=SEED)
        for i, place, faith in zip(positions, places, faiths, strict=True):
            found[i][e.label] = measured.add(e.label, place, faith)
    return found


@dataclass
class ExplainSummary:
    """What ``lvseg explain`` wrote, and the means of its measures."""

    out: str
    index: str
    """The ``index.html`` that shows every panel."""
    metrics: str | None
    """The ``metrics.json`` written with ``metrics``, else None."""
    slices: int
    panels: int
    explanations: list[str]
    """The labels (``method@layer``) explained."""
    means: dict[str, Any]
    """``metrics.json``'s ``means``: slices, slices with a reference, Dice, and per
    explanation the means of its measures."""


@dataclass
class _Explaining:
    """What every batch needs (the model, what to compute) and what the batches gather."""

    model: torch.nn.Module
    explanations: list[Explanation]
    device: str
    gallery: str | None
    gallery_k: int
    metrics: bool
    sanity_at: set[int]
    measured: _Measured = field(default_factory=_Measured)
    entries: list[render.IndexEntry] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    sanity_images: list[torch.Tensor] = field(default_factory=list)


@dataclass
class _Batch:
    """One batch of segmented slices and what was computed on their crops."""

    start: int
    results: list[SliceSegmentation]
    images: torch.Tensor
    predicted: list[np.ndarray]
    maps: dict[str, torch.Tensor]
    galleries: tuple[np.ndarray, np.ndarray] | None
    references: list[np.ndarray | None]
    measures: dict[int, dict[str, dict[str, Any]]]


def _open(
    model_spec: str | Path,
    methods: Sequence[str] | None,
    layers: Sequence[str] | None,
    gallery: str | None,
    device: str,
) -> tuple[Any, TorchNetwork, list[Explanation]]:
    """The model, its network and the planned explanations; bad methods and layers refused."""
    from lvseg.explain.cam import conv_layer_names
    from lvseg.runs.checkpoint import load_model

    loaded = load_model(model_spec, device=device)
    network = TorchNetwork(loaded.model, device, source=loaded.source)  # refuses a wrong shape
    explanations = plan_explanations(loaded.model, methods, layers)
    if gallery is not None and gallery not in (valid := conv_layer_names(loaded.model)):
        raise InvalidInputError(
            None, f"unknown gallery layer {gallery!r}; the model's layers are {', '.join(valid)}"
        )
    return loaded, network, explanations


def _compute(run: _Explaining, start: int, results: list[SliceSegmentation]) -> _Batch:
    """The maps (and gallery, and measures with ``metrics``) of one batch of crops."""
    from lvseg.explain.cam import activation_gallery

    prepared = [result.crop for result in results]
    images = torch.from_numpy(np.stack([p.image for p in prepared])[:, None]).to(run.device)
    maps = {e.label: e.explainer(images) for e in run.explanations}
    galleries = None
    if run.gallery is not None:
        found, channels = activation_gallery(run.model, images, run.gallery, k=run.gallery_k)
        galleries = (_numpy(found), _numpy(channels))
    references = [_reference(p) for p in prepared]
    measures = {}
    if run.metrics:
        measures = _measure(run.model, images, maps, references, run.explanations, run.measured)
    predicted = [result.probability > THRESHOLD for result in results]
    return _Batch(start, results, images, predicted, maps, galleries, references, measures)


def _explain_slice(run: _Explaining, batch: _Batch, i: int, folder: Path) -> None:
    """One slice's panel, index entry and ``metrics.json`` row."""
    position, result = batch.start + i, batch.results[i]
    record, crop, predicted = result.record, result.crop, batch.predicted[i]
    if position in run.sanity_at:
        run.sanity_images.append(batch.images[i : i + 1])
    reference = batch.references[i]
    slice_dice = None if reference is None else dice(predicted, reference)
    name = f"{PANELS_FOLDER}/{_panel_name(position, record)}"
    gallery = None
    if batch.galleries is not None:
        maps, channels = batch.galleries
        gallery = render.Gallery(run.gallery, maps[i], list(channels[i]))
    overlays = [
        render.Overlay(e.method, e.layer, _numpy(batch.maps[e.label][i])) for e in run.explanations
    ]
    panel = render.Panel(
        image=crop.image,
        prediction=predicted,
        reference=reference,
        dice=slice_dice,
        title=_title(record),
        overlays=overlays,
        gallery=gallery,
    )
    render.render_panel(panel, folder / name)
    slice_measures = json_safe(batch.measures.get(i, {}))
    run.entries.append(
        render.IndexEntry(
            panel=name,
            patient_id=record.patient_id,
            slice_index=record.slice_index,
            phase=record.phase,
            dice=slice_dice,
            key=record.key,
            source=record.source,
            measures=slice_measures,
        )
    )
    run.rows.append(
        {
            **result.row(),
            "crop_box": list(crop.geometry.crop_box or ()),
            "panel": name,
            "reference": reference is not None,
            "reference_lv_pixels": None if reference is None else int(reference.sum()),
            "predicted_lv_pixels": int(predicted.sum()),
            "dice": slice_dice,
            "explanations": slice_measures,
        }
    )


def explain(
    model_spec: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    methods: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    format: str = "auto",
    metrics: bool = False,
    gallery_k: int = 8,
    progress: ProgressCallback | None = None,
    *,
    gallery: str | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    batch_size: int = BATCH_SIZE,
    sanity_slices: int = SANITY_SLICES,
    device: str = "cpu",
) -> ExplainSummary:
    """Explain ``model_spec``'s segmentation of ``inputs`` into the folder ``out``.

    Writes ``out/panels/*.png`` (one per slice), ``out/index.html`` and, with ``metrics``,
    ``out/metrics.json``; returns a summary (counts, paths, the means). ``gallery`` names a layer
    whose ``gallery_k`` strongest activation maps join every panel. Bad input (model, inputs,
    method, layer, shape) raises :class:`InvalidInputError` and leaves ``out`` as it was: the
    folder is built beside it and moved into place when complete.
    """
    out = Path(out)
    atomic.check_output_folder(out, overwrite, keep=(model_spec, *inputs))
    if gallery_k < 1:
        raise InvalidInputError(None, f"--gallery-k must be at least 1, got {gallery_k}")
    loaded, network, explanations = _open(model_spec, methods, layers, gallery, device)
    records = read_inputs(inputs, format, limit)
    segmented = Segmenter(network, loaded.plan, batch_size=batch_size).segment(records)
    sanity_at = set(_sanity_positions(records, sanity_slices)) if metrics else set()
    run = _Explaining(loaded.model, explanations, device, gallery, gallery_k, metrics, sanity_at)
    total = len(records)
    with atomic.output_folder(out) as folder:
        (folder / PANELS_FOLDER).mkdir()
        if progress is not None:
            progress(0, total)
        for start in range(0, total, batch_size):
            batch = _compute(run, start, segmented[start : start + batch_size])
            for i in range(len(batch.results)):
                _explain_slice(run, batch, i, folder)
            if progress is not None:
                progress(min(start + batch_size, total), total)
        report = _metrics_report(loaded, inputs, explanations, run.rows, run.measured)
        if metrics:
            report["sanity"] = _sanity(loaded.model, run.sanity_images, explanations)
            report = json_safe(report)
            atomic.write_text(folder / METRICS_FILE, json.dumps(report, indent=1) + "\n")
        render.write_index(
            folder,
            run.entries,
            title=f"{loaded.name} explanations: {', '.join(Path(str(i)).name for i in inputs)}",
            metrics=report if metrics else None,
            notes=_notes(loaded, explanations, loaded.plan.crop_size, metrics),
        )
    return ExplainSummary(
        out=str(out),
        index=str(out / render.INDEX_FILE),
        metrics=str(out / METRICS_FILE) if metrics else None,
        slices=total,
        panels=len(run.entries),
        explanations=[e.label for e in explanations],
        means=json_safe(report["means"]),
    )


def _sanity(
    model: torch.nn.Module, images: list[torch.Tensor], explanations: Sequence[Explanation]
) -> dict[str, Any]:
    """The cascading-randomisation check of every explanation on the chosen slices."""
    from lvseg.explain.faithfulness import sanity_check

    if not images:
        return {}
    sample = torch.cat(images)
    found = {}
    for e in explanations:
        layer = None if e.method == "cam" else e.layer
        result = sanity_check(model, sample, e.method, layer=layer, seed=SEED)
        found[e.label] = {
            "slices": len(sample),
            "layers": list(result.layers),
            "spearman": list(result.spearman),
            "ssim": list(result.ssim),
        }
    return found


def _metrics_report(
    loaded: Any,
    inputs: Sequence[str | Path],
    explanations: Sequence[Explanation],
    rows: list[dict[str, Any]],
    measured: _Measured,
) -> dict[str, Any]:
    """The ``metrics.json`` content: settings, one row per slice, means and mean curves."""
    means: dict[str, Any] = {
        "slices": len(rows),
        "slices_with_reference": sum(r["dice"] is not None for r in rows),
        "dice": _mean([r["dice"] for r in rows]),
        "explanations": {e.label: measured.means(e.label) for e in explanations},
    }
    means["explanations"] = {k: v for k, v in means["explanations"].items() if v}
    curves = {e.label: measured.mean_curves(e.label) for e in explanations}
    return {
        "model": {"name": loaded.name, "checkpoint": str(loaded.source)},
        "inputs": [str(i) for i in inputs],
        "explanations": [
            {"label": e.label, "method": e.method, "layer": e.layer} for e in explanations
        ],
        "settings": {
            "prediction": "LV softmax probability > 0.5 on the crop, as lvseg predict "
            "thresholds it",
            "crop": "located",
            "localisation_dilation_px": DILATION_PX,
            "deletion_steps": STEPS,
            "seed": SEED,
        },
        "slices": rows,
        "means": means,
        "mean_curves": {label: c for label, c in curves.items() if c is not None},
    }


def _notes(
    loaded: Any, explanations: Sequence[Explanation], crop_size: int, metrics: bool
) -> list[str]:
    notes = [
        f"Model {loaded.name} ({Path(loaded.source).name}); every slice is prepared with the "
        f"model's plan and cropped to {crop_size} px around the heart located in its stack, "
        "as lvseg predict does.",
        "Contours: red = predicted LV (LV probability > 0.5), green = reference LV.",
    ]
    if any(e.method == "cam" for e in explanations):
        notes.append(
            "CAM = S_lv - S_bg of the global-average-pooling head, signed: red is LV evidence, "
            "blue background evidence, white zero."
        )
    if any(e.method == "gradcam" for e in explanations):
        notes.append(
            "Grad-CAM (Seg-Grad-CAM of the predicted LV) is >= 0: bright = the layer's features "
            "that raise the LV score."
        )
    if metrics:
        notes.append(
            f"Measures on slices with a reference LV: energy in LV = share of the positive map "
            f"inside the LV dilated by {DILATION_PX} px; pointing = the map's maximum lies there; "
            "deletion (insertion) AUC = mean LV probability as the most salient pixels are "
            "removed (restored): lower (higher) is better, and should beat the random order."
        )
    return notes
