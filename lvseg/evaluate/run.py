"""``lvseg evaluate``: score a model on every labelled slice of a dataset, per slice and per
patient, with the clinical volumes where the data allow, and write the report.

One function, :func:`evaluate`, does what the command line asks:

1. load the model and the dataset's slices with an LV reference;
2. leave out the patients the model was trained on (``split="held-out"``, the default): the
   split is read from the checkpoint, or rebuilt from the training config saved in it when the
   data are the ones it trained on. A model is never scored on its own training patients unless
   ``split="all"`` says so, and the report then says it;
3. segment each slice exactly as inference does (the model's preprocessing plan, a crop at the
   image centre), map the LV probability back onto the **source** grid
   (:func:`lvseg.data.preprocess.to_source_grid`) and threshold it at 0.5, so every measure is
   taken against the reference as it was drawn, in the source pixel spacing;
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
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lvseg import __version__
from lvseg.data import atomic
from lvseg.data.errors import InvalidInputError
from lvseg.data.load import EMBEDDED_PHANTOM, labelled_dataset
from lvseg.data.records import LV, Dataset, SliceRecord
from lvseg.data.splits import split_for
from lvseg.evaluate import report, stacks, summary
from lvseg.evaluate.metrics import GOOD_CONTOUR_MM, score_slice
from lvseg.jsonsafe import json_safe

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each batch of slices."""

METRICS_FILE = "metrics.json"
SLICES_FILE = "slices.csv"
DEFAULT_FOLDER = "evaluation"
BATCH_SIZE = 16
WORST_SLICES = 12
WORST_MARGIN_PX = 16
SPLITS = ("held-out", "all")
LV_CLASS = 1
"""Channel of the LV blood pool in every registered model's score maps."""
CSV_COLUMNS = (
    "key", "patient_id", "group", "slice_index", "phase_index", "phase", "position", "source",
    "reference_pixels", "predicted_pixels", "dice", "iou", "precision", "recall",
    "pixel_accuracy", "background_accuracy", "hd95", "assd", "apd", "good_contour_5mm",
    "good_contour_4mm", "detected", "false_positive",
)  # fmt: skip


def default_out(model_spec: str | Path) -> Path:
    """Where results go without ``--out``: ``RUN/evaluation`` for a run, else ``./evaluation``."""
    model_path = Path(model_spec)
    return model_path / DEFAULT_FOLDER if model_path.is_dir() else Path(DEFAULT_FOLDER)


def _same_data(a: str | Path, b: str | Path) -> bool:
    if EMBEDDED_PHANTOM in (str(a), str(b)):
        return str(a) == str(b)
    return Path(a).resolve() == Path(b).resolve()


def training_split(
    checkpoint: dict[str, Any], dataset: Dataset, data: str | Path
) -> tuple[list[str] | None, list[str] | None, str]:
    """The model's training and validation patients, and how we know them.

    Checkpoints written since the evaluation landed carry their split; for older ones the split
    is rebuilt from the saved training config and the training data (``data`` itself when it is
    the data the model trained on, else the training data's path where it still exists): the
    split is a deterministic function of patients, groups, folds and seed. Patient ids are
    compared across formats, so a model trained on the Sunnybrook PNGs evaluated on the same
    patients' DICOMs still leaves its training patients out. Otherwise: unknown.
    """
    saved = checkpoint.get("split")
    if isinstance(saved, dict) and "train" in saved:
        return list(saved["train"]), list(saved.get("val", [])), "the split saved in the checkpoint"
    config = checkpoint.get("train_config") or {}
    data_config = config.get("data") or {}
    trained_on = data_config.get("path")
    source = None
    if trained_on and _same_data(trained_on, data):
        source = dataset
    elif trained_on and (trained_on == EMBEDDED_PHANTOM or Path(trained_on).exists()):
        try:  # the same patients in another format (Sunnybrook DICOM and PNG share ids)
            source = labelled_dataset(trained_on, data_config.get("format", "auto"))
        except InvalidInputError:
            source = None
    if source is not None:
        split = split_for(
            source,
            folds=data_config.get("folds") or 0,
            fold=data_config.get("fold") or 0,
            val_fraction=data_config.get("val_fraction", 0.2),
            seed=config.get("seed", 0),
            exclude=data_config.get("exclude_patients") or (),
        )
        return list(split.train), list(split.val), "the split rebuilt from the training config"
    return None, None, "unknown: the checkpoint does not say and its training data are not here"


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


# ------------------------------------------------------------------------------ inference


def _model_channels(model: torch.nn.Module) -> int:
    return int(getattr(getattr(model, "config", None), "in_channels", 1))


def segment(
    model: torch.nn.Module,
    records: Sequence[SliceRecord],
    plan: Any,
    device: str | torch.device = "cpu",
) -> list[np.ndarray]:
    """The predicted LV mask of each record, on the record's own (source) grid."""
    from lvseg.data.preprocess import preprocess_record, to_source_grid

    prepared = [preprocess_record(r, plan, centre="image") for r in records]
    images = torch.from_numpy(np.stack([p.image for p in prepared])[:, None]).to(device)
    with torch.no_grad():
        logits = model(images).logits  # every registered model returns a SegmentationOutput
        lv_probability = logits.float().softmax(dim=1)[:, LV_CLASS].cpu().numpy()
    return [
        to_source_grid(probability, p.geometry) > 0.5
        for probability, p in zip(lv_probability, prepared, strict=True)
    ]


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


def evaluate(
    model_spec: str | Path,
    data: str | Path,
    out: str | Path | None = None,
    *,
    format: str = "auto",
    split: str = "held-out",
    explanations: str | Path | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    worst: int = WORST_SLICES,
    batch_size: int = BATCH_SIZE,
    progress: ProgressCallback | None = None,
    device: str = "cpu",
    write: bool = True,
) -> dict[str, Any]:
    """Evaluate ``model_spec`` on the labelled slices of ``data``; returns ``metrics.json``'s
    content with ``rows`` (one per slice) and ``out`` added.

    With ``write=False`` nothing is written (the cross-validation benchmark pools the rows of
    several folds itself). Bad input raises :class:`InvalidInputError` before anything is
    written.
    """
    from lvseg.data.preprocess import PreprocessPlan
    from lvseg.model.checkpoint import load_model

    out = Path(out) if out is not None else default_out(model_spec)
    if write:
        atomic.check_output_folder(out, overwrite)
    loaded = load_model(model_spec, device=device)
    try:
        plan = PreprocessPlan.from_dict(loaded.plan)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(loaded.source, f"unusable preprocessing plan ({error})") from None
    if _model_channels(loaded.model) != 1:
        raise InvalidInputError(
            loaded.source,
            f"the model takes {_model_channels(loaded.model)} input channels; MRI slices have 1",
        )
    explained = _explanations(explanations)
    try:
        dataset = labelled_dataset(data, format)
    except InvalidInputError as error:
        if error.reason.startswith("no slice with"):
            raise InvalidInputError(data, f"{error.reason}: nothing to evaluate") from None
        raise
    train, val, how = training_split(loaded.checkpoint, dataset, data)
    patients, excluded, split_note = choose_patients(dataset, train, split, how)
    records = dataset.subset(patients).records[:limit]
    positions = summary.slice_positions(records)

    rows: list[dict[str, Any]] = []
    predicted_of: dict[str, np.ndarray] = {}
    worst_heap: list[tuple[float, int, report.SliceView]] = []
    if progress is not None:
        progress(0, len(records))
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        for i, (record, predicted) in enumerate(
            zip(chunk, segment(loaded.model, chunk, plan, device), strict=True)
        ):
            reference = np.asarray(record.masks[LV], bool)
            scores = score_slice(predicted, reference, record.pixel_spacing_mm).to_dict()
            row = _row(record, positions.get(record.key), scores)
            rows.append(row)
            predicted_of[record.key] = predicted
            if worst and reference.any():
                item = (-row["dice"], start + i, _view(record, predicted, row))
                if len(worst_heap) < worst:
                    heapq.heappush(worst_heap, item)
                elif item > worst_heap[0]:
                    heapq.heapreplace(worst_heap, item)
        if progress is not None:
            progress(min(start + batch_size, len(records)), len(records))

    in_mm = all(r.pixel_spacing_mm is not None for r in records)
    parameters = sum(p.numel() for p in loaded.model.parameters())
    metrics: dict[str, Any] = {
        "lvseg_version": __version__,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": {
            "name": loaded.name,
            "source": str(loaded.source),
            "parameters": parameters,
            "size_mb_fp32": round(parameters * 4 / 1e6, 3),
            "train_patients": train,
            "val_patients": val,
            "train_data": (loaded.checkpoint.get("train_config") or {}).get("data", {}).get("path"),
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
            "geometry": "Predictions are mapped back onto each slice's source grid and scored "
            "against the reference there, in the source pixel spacing.",
            "prediction": "The model's preprocessing plan, a crop at the image centre, LV "
            "probability > 0.5 after mapping back.",
        },
        "summary": summary.summarise(rows),
        "patients": summary.by_patient(rows),
        "breakdowns": summary.breakdowns(rows),
        "clinical": stacks.clinical_section(records, predicted_of),
        "explanations": explained,
    }
    metrics = json_safe(metrics)
    if write:
        views = [view for *_, view in sorted(worst_heap, reverse=True)]
        with atomic.atomic_directory(out, overwrite=True) as folder:
            atomic.write_text(folder / METRICS_FILE, json.dumps(metrics, indent=1) + "\n")
            atomic.write_text(folder / SLICES_FILE, _csv(rows))
            report.write_report(folder, metrics, rows, views)
    return {**metrics, "rows": rows, "out": str(out) if write else None}


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
