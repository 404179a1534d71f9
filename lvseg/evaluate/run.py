"""``lvseg evaluate``: score a model on every labelled slice of a dataset, per slice and per
patient, with the clinical volumes where the data allow, and write the report.

One function, :func:`evaluate`, does what the command line asks:

1. load the model (a training run or checkpoint, run by PyTorch; or an exported ONNX model, run
   by ONNX Runtime as ``predict`` runs it) and the dataset's slices with an LV reference;
2. leave out the patients the model was trained on (``split="held-out"``, the default): the
   split is read from the checkpoint (or the export's metadata), or rebuilt from the training
   config saved in it when the data are the ones it trained on. A model is never scored on its
   own training patients unless ``split="all"`` says so, and the report then says it;
3. segment each patient's slices through the one inference path, as ``predict`` does
   (:class:`lvseg.segment.Segmenter`: the model's preprocessing plan, the heart located in the
   patient's stack, or ``crop="centre"``; the LV probability mapped back onto the **source**
   grid and thresholded at 0.5), so every measure is taken against the reference as it was
   drawn, in the source pixel spacing;
4. score each slice (:mod:`lvseg.evaluate.metrics`), summarise (:mod:`lvseg.evaluate.summary`),
   add volumes and EF (:mod:`lvseg.evaluate.stacks`);
5. write ``metrics.json``, ``slices.csv`` and ``report.html`` (:mod:`lvseg.evaluate.report`) into
   a folder built beside its place and moved there when complete: a crash leaves nothing
   half-written.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lvseg import __version__, atomic, layout
from lvseg.config import TrainConfig
from lvseg.data.load import EMBEDDED_PHANTOM, labelled_dataset
from lvseg.data.preprocess import PreprocessPlan
from lvseg.data.records import LV, Dataset, SliceRecord
from lvseg.data.splits import Split, split_for
from lvseg.errors import InvalidInputError
from lvseg.evaluate import report, stacks, summary
from lvseg.evaluate.metrics import GOOD_CONTOUR_MM, score_slice
from lvseg.evaluate.quality import assess, assess_studies
from lvseg.jsonsafe import json_safe
from lvseg.segment.network import Network
from lvseg.segment.quality import (
    FrameSignals,
    QualityModel,
    default_quality_model,
    judge,
    mode_mismatch,
    own_signals,
    read_quality_model,
    with_stack_signals,
)
from lvseg.segment.segmenter import CROPS, Segmenter

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each batch of slices."""

METRICS_FILE = layout.EVALUATION_METRICS
SLICES_FILE = "slices.csv"
DEFAULT_FOLDER = layout.EVALUATION
BATCH_SIZE = 16
WORST_SLICES = 12
WORST_MARGIN_PX = 16
SPLITS = ("held-out", "all")
PLACEMENTS = ("stack", "slice", "image")
"""Where a slice's crop came from (:attr:`lvseg.segment.locate.Placement.scope`)."""
CSV_COLUMNS = (
    "key", "patient_id", "group", "slice_index", "phase_index", "phase", "position", "source",
    "crop", "reference_pixels", "predicted_pixels", "dice", "iou", "precision", "recall",
    "pixel_accuracy", "background_accuracy", "hd95", "assd", "apd", "good_contour_5mm",
    "good_contour_4mm", "detected", "false_positive", "predicted_dice", "predicted_dice_low",
    "predicted_dice_high", "flagged",
)  # fmt: skip


def default_out(model_spec: str | Path) -> Path:
    """Where results go without ``--out``: ``RUN/evaluation`` for a run, else ``./evaluation``."""
    model_path = Path(model_spec)
    return model_path / DEFAULT_FOLDER if model_path.is_dir() else Path(DEFAULT_FOLDER)


# ------------------------------------------------------------------------------ the model


@dataclass
class ScoredModel:
    """The model under evaluation, whichever runtime runs it, and what is known of its training."""

    name: str
    source: Path
    runtime: str
    """``"pytorch"``, or ``"onnxruntime fp32"`` / ``"onnxruntime int8"`` for an export."""
    network: Network
    plan: PreprocessPlan
    parameters: int | None
    split: Split | None
    train_config: TrainConfig | None
    train_data: str | None
    quality: QualityModel | None = None
    """The quality-control score: an export's embedded one, or the one lvseg ships."""


def is_exported(spec: str | Path) -> bool:
    """Whether a MODEL argument names an exported model rather than a run or a checkpoint."""
    path = Path(spec)
    if path.is_dir():
        return layout.exported_model(path) is not None and not layout.looks_like_run(path)
    return path.suffix.lower() in (".onnx", ".ort")


def open_scored_model(spec: str | Path, device: str = "cpu") -> ScoredModel:
    """A run, a checkpoint (PyTorch on ``device``) or an export (ONNX Runtime, on the CPU)."""
    if is_exported(spec):
        from lvseg.segment.onnx import open_model

        found = open_model(spec)
        source, runtime = Path(found.path or spec), f"onnxruntime {found.precision}"
        facts = (found.plan, found.parameters, found.split, None, found.train_data)
        return ScoredModel(found.name, source, runtime, found, *facts, found.quality)
    from lvseg.runs.checkpoint import load_model
    from lvseg.segment.network import TorchNetwork

    loaded = load_model(spec, device=device)
    saved, network = loaded.checkpoint, TorchNetwork(loaded.model, device, source=loaded.source)
    facts = (loaded.plan, loaded.parameters, saved.split, saved.train_config, saved.train_data)
    quality = default_quality_model()
    return ScoredModel(loaded.name, loaded.source, "pytorch", network, *facts, quality)


def _same_data(a: str | Path, b: str | Path) -> bool:
    if EMBEDDED_PHANTOM in (str(a), str(b)):
        return str(a) == str(b)
    return Path(a).resolve() == Path(b).resolve()


def training_split(
    split: Split | None, config: TrainConfig | None, dataset: Dataset, data: str | Path
) -> tuple[list[str] | None, list[str] | None, str]:
    """The model's training and validation patients, and how we know them.

    Checkpoints written since the evaluation landed carry their split; for older ones the split
    is rebuilt from the saved training config and the training data (``data`` itself when it is
    the data the model trained on, else the training data's path where it still exists): the
    split is a deterministic function of patients, groups, folds and seed. Patient ids are
    compared across formats, so a model trained on the Sunnybrook PNGs evaluated on the same
    patients' DICOMs still leaves its training patients out. Otherwise: unknown.
    """
    if split is not None:
        return list(split.train), list(split.val), "the split saved with the model"
    trained_on = None if config is None else config.data.path
    source = None
    if trained_on and _same_data(trained_on, data):
        source = dataset
    elif trained_on and (trained_on == EMBEDDED_PHANTOM or Path(trained_on).exists()):
        try:  # the same patients in another format (Sunnybrook DICOM and PNG share ids)
            source = labelled_dataset(trained_on, config.data.format)
        except InvalidInputError:
            source = None
    if source is not None:
        rebuilt = split_for(
            source,
            folds=config.data.folds,
            fold=config.data.fold,
            val_fraction=config.data.val_fraction,
            seed=config.seed,
            exclude=config.data.exclude_patients,
            train_patients=config.data.train_patients,
        )
        return list(rebuilt.train), list(rebuilt.val), "the split rebuilt from the training config"
    return None, None, "unknown: the model does not say and its training data are not here"


def choose_patients(
    dataset: Dataset, train: list[str] | None, split: str, how: str
) -> tuple[list[str], list[str], str]:
    """The patients to score, those left out, and one sentence saying why."""
    if split not in SPLITS:
        raise InvalidInputError(None, f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    patients = dataset.patients
    trained_here = sorted(set(train or ()) & set(patients))
    if train is None:
        return patients, [], f"All patients: the model's training patients are {how}."
    if split == "all":
        note = "All patients, as asked"
        if trained_here:
            note += (
                f"; {len(trained_here)} of them trained the model, so these figures are optimistic"
            )
        return patients, [], note + f" (training patients known from {how})."
    kept = [p for p in patients if p not in set(trained_here)]
    if not kept:
        raise InvalidInputError(
            dataset.root,
            "every patient here trained the model, so none is held out to evaluate "
            "(--split all scores the training patients anyway)",
        )
    note = f"The {len(kept)} patients the model did not train on"
    if trained_here:
        note += f"; its {len(trained_here)} training patients are left out"
    return kept, trained_here, note + f" (known from {how})."


def _row(record: SliceRecord, position: str | None, scores: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": record.key,
        "patient_id": record.patient_id,
        "group": record.group,
        "slice_index": record.slice_index,
        "phase_index": record.phase_index,
        "phase": record.phase,
        "position": position,
        "source": record.source,
        **scores,
    }


def _window(*masks: np.ndarray, margin: int = WORST_MARGIN_PX) -> tuple[slice, slice]:
    """A square around everything drawn, so a worst slice shows its LV rather than the chest."""
    union = np.logical_or.reduce([np.asarray(m, bool) for m in masks])
    rows, cols = union.shape
    if not union.any():
        return slice(0, rows), slice(0, cols)
    r, c = np.nonzero(union)
    centre = ((r.min() + r.max()) / 2, (c.min() + c.max()) / 2)
    half = max(r.max() - r.min(), c.max() - c.min()) / 2 + margin
    r0, r1 = max(0, int(centre[0] - half)), min(rows, int(centre[0] + half) + 1)
    c0, c1 = max(0, int(centre[1] - half)), min(cols, int(centre[1] + half) + 1)
    return slice(r0, r1), slice(c0, c1)


def _view(record: SliceRecord, predicted: np.ndarray, row: dict[str, Any]) -> report.SliceView:
    reference = np.asarray(record.masks[LV], bool)
    window = _window(reference, predicted)
    apd = row["apd"]
    return report.SliceView(
        key=record.key,
        title=f"{record.key} ({record.phase or 'phase -'})",
        image=np.asarray(record.image, np.float32)[window],
        reference=reference[window],
        predicted=predicted[window],
        dice=row["dice"],
        apd=apd,
    )


# ------------------------------------------------------------------------------ the command


def _explanations(path: str | Path | None) -> dict[str, Any] | None:
    """The explanation measures of an ``lvseg explain --metrics`` output (folder or JSON)."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    try:
        means = json.loads(path.read_text(encoding="utf-8"))["means"]["explanations"]
    except FileNotFoundError:
        raise InvalidInputError(path, "no such file (an lvseg explain --metrics output)") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = f"not an lvseg explain --metrics output ({type(error).__name__})"
        raise InvalidInputError(path, reason) from None
    return {"source": str(path), "means": means}


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in CSV_COLUMNS})
    return buffer.getvalue()


def placement_summary(rows: Sequence[dict[str, Any]], crop: str) -> dict[str, Any]:
    """How the crops were placed: the rule, and the slices per outcome (``stack``: the heart
    located in the patient's stack; ``slice``: located on a single frame; ``image``: centred
    on the image, as asked or for want of an LV)."""
    counts = Counter(row["crop"] for row in rows)
    return {"crop": crop, "slices_by_placement": {k: counts.get(k, 0) for k in PLACEMENTS}}


def evaluate(
    model_spec: str | Path,
    data: str | Path,
    out: str | Path | None = None,
    *,
    format: str = "auto",
    split: str = "held-out",
    crop: str = "located",
    tta: bool = False,
    largest_component: bool = True,
    explanations: str | Path | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    worst: int = WORST_SLICES,
    batch_size: int = BATCH_SIZE,
    progress: ProgressCallback | None = None,
    device: str = "cpu",
    write: bool = True,
    keep_masks: bool = False,
    quality: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate ``model_spec`` on the labelled slices of ``data``; returns ``metrics.json``'s
    content with ``rows`` (one per slice) and ``out`` added, and with ``keep_masks`` the
    predicted masks (``masks``: record key to the mask on the source grid).

    With ``write=False`` nothing is written (the cross-validation benchmark pools the rows of
    several folds itself). Bad input raises :class:`InvalidInputError` before anything is
    written. ``quality`` is a quality-control score file to judge the slices with instead of
    the model's (``metrics.json``'s ``quality`` says how well it predicted their Dice).
    """
    if crop not in CROPS:
        raise InvalidInputError(None, f"unknown crop {crop!r}; choose {' or '.join(CROPS)}")
    out = Path(out) if out is not None else default_out(model_spec)
    if write:
        atomic.check_output_folder(out, overwrite, keep=(model_spec, data, explanations))
    model = open_scored_model(model_spec, device)
    scorer = read_quality_model(quality) if quality is not None else model.quality
    if scorer is not None:
        chosen = scorer.for_tta(tta)
        if chosen is None and quality is not None:
            raise InvalidInputError(quality, mode_mismatch(scorer, tta))
        scorer = chosen
    explained = _explanations(explanations)
    try:
        dataset = labelled_dataset(data, format)
    except InvalidInputError as error:
        if error.reason.startswith("no slice with"):
            raise InvalidInputError(data, f"{error.reason}: nothing to evaluate") from None
        raise
    train, val, how = training_split(model.split, model.train_config, dataset, data)
    patients, excluded, split_note = choose_patients(dataset, train, split, how)
    records = dataset.subset(patients).records[:limit]
    positions = summary.slice_positions(records)

    rows: list[tuple[int, dict[str, Any]]] = []
    own: list[FrameSignals | None] = [None] * len(records)
    predicted_of: dict[str, np.ndarray] = {}
    worst_heap: list[tuple[float, int, report.SliceView]] = []
    if progress is not None:
        progress(0, len(records))
    segmenter = Segmenter(
        model.network,
        model.plan,
        crop=crop,
        batch_size=batch_size,
        tta=tta,
        largest_component=largest_component,
    )
    for index, result in segmenter.iter_segment(records, progress):
        record, predicted = result.record, result.mask
        reference = np.asarray(record.masks[LV], bool)
        scores = score_slice(predicted, reference, record.pixel_spacing_mm).to_dict()
        row = _row(record, positions.get(record.key), scores)
        row["crop"] = result.placement.scope
        rows.append((index, row))
        if scorer is not None:
            own[index] = own_signals(result)
        predicted_of[record.key] = predicted
        if worst and reference.any():
            item = (-row["dice"], index, _view(record, predicted, row))
            if len(worst_heap) < worst:
                heapq.heappush(worst_heap, item)
            elif item > worst_heap[0]:
                heapq.heapreplace(worst_heap, item)
    ordered = [row for _, row in sorted(rows, key=lambda pair: pair[0])]
    judged = None
    if scorer is not None and ordered:
        signals = with_stack_signals(records, own)  # type: ignore[arg-type]
        judgement = judge(scorer, records, signals)
        for i, row in enumerate(ordered):
            for column, values in (
                ("predicted_dice", judgement.predicted_dice),
                ("predicted_dice_low", judgement.dice_low),
                ("predicted_dice_high", judgement.dice_high),
            ):
                value = float(values[i])  # type: ignore[index]
                row[column] = round(value, 4) if np.isfinite(value) else None
            row["flagged"] = int(judgement.flagged[i])
        judged = assess(judgement, [row["dice"] for row in ordered])
        judged["score"] = {"source": scorer.source, "fitted_on": scorer.fitted_on, "tta": tta}

    clinical = stacks.clinical_section(records, predicted_of)
    if judged is not None:
        judged["studies"] = assess_studies(judgement, records, signals, clinical)
    in_mm = all(r.pixel_spacing_mm is not None for r in records)
    parameters = model.parameters
    metrics: dict[str, Any] = {
        "lvseg_version": __version__,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": {
            "name": model.name,
            "source": str(model.source),
            "runtime": model.runtime,
            "parameters": parameters,
            "size_mb_fp32": None if parameters is None else round(parameters * 4 / 1e6, 3),
            "train_patients": train,
            "val_patients": val,
            "train_data": model.train_data,
        },
        "data": {
            "path": str(data),
            "format": dataset.format,
            "split": split,
            "split_note": split_note,
            "patients": patients,
            "excluded_patients": excluded,
            "distance_units": "mm" if in_mm else "px",
            "spacing_note": None
            if in_mm
            else "The data store no pixel spacing, so distances are in pixels and the "
            "good-contour thresholds (mm) do not apply.",
        },
        "settings": {
            "good_contour_mm": list(GOOD_CONTOUR_MM),
            "crop": crop,
            "tta": tta,
            "largest_component": largest_component,
            "geometry": "Predictions are mapped back onto each slice's source grid and scored "
            "against the reference there, in the source pixel spacing.",
            "prediction": PREDICTION_NOTES[crop],
            "placement": placement_summary(ordered, crop),
        },
        "summary": summary.summarise(ordered),
        "patients": summary.by_patient(ordered),
        "breakdowns": summary.breakdowns(ordered),
        "clinical": clinical,
        "explanations": explained,
        "quality": judged,
    }
    metrics = json_safe(metrics)
    if write:
        views = [view for *_, view in sorted(worst_heap, reverse=True)]
        with atomic.output_folder(out) as folder:
            atomic.write_text(folder / METRICS_FILE, json.dumps(metrics, indent=1) + "\n")
            atomic.write_text(folder / SLICES_FILE, _csv(ordered))
            report.write_report(folder, metrics, ordered, views)
    found = {**metrics, "rows": ordered, "out": str(out) if write else None}
    if keep_masks:
        found["masks"] = predicted_of
    return found


PREDICTION_NOTES = {
    "located": "As lvseg predict segments: the model's preprocessing plan, the crop centred on "
    "the heart located in each patient's stack of whole images (every slice, up to four "
    "phases), LV probability > 0.5 after mapping back.",
    "centre": "The model's preprocessing plan, a crop at the image centre (not what lvseg "
    "predict does: it locates the heart), LV probability > 0.5 after mapping back.",
}


# ------------------------------------------------------------------------------ comparing


def load_evaluation(path: str | Path) -> dict[str, Any]:
    """An evaluation's ``metrics.json``: given itself, its folder, or a run whose default
    evaluation folder holds it."""
    path = Path(path)
    for candidate in (path, path / METRICS_FILE, path / DEFAULT_FOLDER / METRICS_FILE):
        if candidate.is_file():
            try:
                found = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise InvalidInputError(candidate, f"unreadable ({type(error).__name__})") from None
            if not isinstance(found, dict) or "summary" not in found:
                raise InvalidInputError(candidate, "not an lvseg evaluate metrics.json")
            return found
    raise InvalidInputError(
        path, "no evaluation here (run lvseg evaluate MODEL DATA first: looked for metrics.json)"
    )


def compare(items: Sequence[str | Path], out: str | Path | None = None) -> dict[str, Any]:
    """Several evaluations side by side with the published figures; writes ``compare.html``
    and ``compare.json`` to ``out`` when given."""
    from lvseg.evaluate.compare import compare_markdown, compare_rows, write_compare

    if len(items) < 1:
        raise InvalidInputError(None, "--compare needs at least one evaluation")
    evaluations = []
    for item in items:
        found = load_evaluation(item)
        where = Path(item).resolve()
        while where.name in (METRICS_FILE, DEFAULT_FOLDER) and where.parent != where:
            where = where.parent  # name a run's evaluation after the run
        evaluations.append((f"{found['model']['name']} ({where.name})", found))
    rows = compare_rows(evaluations)
    written = None if out is None else str(write_compare(Path(out), evaluations))
    return {"rows": rows, "markdown": compare_markdown(rows), "out": written}
