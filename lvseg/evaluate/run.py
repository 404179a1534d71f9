"""``lvseg evaluate``: score a model on every labelled slice of a dataset, per slice and per
patient, with the clinical volumes where the data allow, and write the report.

One function, :func:`evaluate`, does what the command line asks:

1. load the model (a training run or checkpoint, run by PyTorch; or an exported ONNX model, run
   by ONNX Runtime as ``predict`` runs it) and the dataset's slices with an LV reference;
2. leave out the patients the model was trained on (:mod:`lvseg.evaluate.scope`;
   ``split="all"`` scores them too, and the report says so);
3. segment each patient's slices through the one inference path, as ``predict`` does
   (:class:`lvseg.segment.Segmenter`: the model's preprocessing plan, the heart located in the
   patient's stack, or ``crop="centre"``; the LV probability mapped back onto the **source**
   grid and thresholded at 0.5), so every measure is taken against the reference as it was
   drawn, in the source pixel spacing;
4. score each slice (:mod:`lvseg.evaluate.metrics`), summarise (:mod:`lvseg.evaluate.summary`),
   add volumes and EF (:mod:`lvseg.evaluate.stacks`), all in one typed result
   (:mod:`lvseg.evaluate.results`);
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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lvseg import __version__, atomic, layout
from lvseg.data.load import labelled_dataset
from lvseg.data.records import LV, Dataset, SliceRecord
from lvseg.errors import InvalidInputError
from lvseg.evaluate import report, stacks, summary
from lvseg.evaluate.metrics import GOOD_CONTOUR_MM, score_slice
from lvseg.evaluate.quality import QualityAssessment, assess, assess_studies
from lvseg.evaluate.results import DataFacts, Evaluation, ModelFacts, Placements, Settings
from lvseg.evaluate.scope import (
    SPLITS,
    ScoredModel,
    choose_patients,
    is_exported,
    open_scored_model,
    training_split,
)
from lvseg.jsonsafe import json_safe
from lvseg.segment.quality import (
    FrameSignals,
    QualityModel,
    judge,
    mode_mismatch,
    own_signals,
    read_quality_model,
    with_stack_signals,
)
from lvseg.segment.segmenter import CROPS, Segmenter, SliceSegmentation

__all__ = [
    "SPLITS",
    "Comparison",
    "Evaluation",
    "ScoredModel",
    "choose_patients",
    "compare",
    "default_out",
    "evaluate",
    "evaluation_file",
    "is_exported",
    "load_evaluation",
    "open_scored_model",
    "placement_summary",
    "training_split",
]

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each batch of slices."""

METRICS_FILE = layout.EVALUATION_METRICS
SLICES_FILE = "slices.csv"
DEFAULT_FOLDER = layout.EVALUATION
BATCH_SIZE = 16
WORST_SLICES = 12
WORST_MARGIN_PX = 16
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


# ------------------------------------------------------------------------------ the inputs


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


def _scorer(model: ScoredModel, quality: str | Path | None, tta: bool) -> QualityModel | None:
    """The quality score to judge the slices with: ``quality``'s file, else the model's; for
    the mode asked (a file that has no score for it is refused)."""
    scorer = read_quality_model(quality) if quality is not None else model.quality
    if scorer is None:
        return None
    chosen = scorer.for_tta(tta)
    if chosen is None and quality is not None:
        raise InvalidInputError(quality, mode_mismatch(scorer, tta))
    return chosen


@dataclass
class _Scope:
    """What is scored: the data, the patients chosen and why, and the records to score."""

    data: str | Path
    dataset: Dataset
    split: str
    note: str
    patients: list[str]
    excluded: list[str]
    train: list[str] | None
    val: list[str] | None
    records: list[SliceRecord]


def _scope(
    model: ScoredModel, data: str | Path, format: str, split: str, limit: int | None
) -> _Scope:
    """The dataset's labelled slices of the patients to score (the first ``limit``)."""
    try:
        dataset = labelled_dataset(data, format)
    except InvalidInputError as error:
        if error.reason.startswith("no slice with"):
            raise InvalidInputError(data, f"{error.reason}: nothing to evaluate") from None
        raise
    train, val, how = training_split(model.split, model.train_config, dataset, data)
    patients, excluded, note = choose_patients(dataset, train, split, how)
    records = dataset.subset(patients).records[:limit]
    return _Scope(data, dataset, split, note, patients, excluded, train, val, records)


# ------------------------------------------------------------------------------ scoring


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


@dataclass
class _Scored:
    """Every slice scored: its row, its quality signals, its mask, and the worst few drawn."""

    rows: list[dict[str, Any]]
    """In input order."""
    signals: list[FrameSignals | None]
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    worst: list[tuple[float, int, report.SliceView]] = field(default_factory=list)
    """A heap of (-Dice, index, view): the ``worst`` lowest Dice of the slices with an LV."""

    def keep_worst(self, item: tuple[float, int, report.SliceView], worst: int) -> None:
        if len(self.worst) < worst:
            heapq.heappush(self.worst, item)
        elif item > self.worst[0]:
            heapq.heapreplace(self.worst, item)

    def worst_views(self) -> list[report.SliceView]:
        return [view for *_, view in sorted(self.worst, reverse=True)]


def _score(
    segmented: Iterable[tuple[int, SliceSegmentation]],
    scope: _Scope,
    signals: bool,
    worst: int,
) -> _Scored:
    """Score every segmented slice against its reference; with ``signals``, keep each slice's
    own quality signals for the quality score."""
    positions = summary.slice_positions(scope.records)
    rows: list[tuple[int, dict[str, Any]]] = []
    scored = _Scored([], [None] * len(scope.records))
    for index, result in segmented:
        record, predicted = result.record, result.mask
        reference = np.asarray(record.masks[LV], bool)
        row = {**result.row(), "group": record.group, "position": positions.get(record.key)}
        row.update(score_slice(predicted, reference, record.pixel_spacing_mm).to_dict())
        rows.append((index, row))
        if signals:
            scored.signals[index] = own_signals(result)
        scored.masks[record.key] = predicted
        if worst and reference.any():
            scored.keep_worst((-row["dice"], index, _view(record, predicted, row)), worst)
    scored.rows = [row for _, row in sorted(rows, key=lambda pair: pair[0])]
    return scored


def _judge(
    scorer: QualityModel | None,
    records: Sequence[SliceRecord],
    scored: _Scored,
    clinical: stacks.ClinicalSection | None,
    tta: bool,
) -> QualityAssessment | None:
    """Judge every slice with the quality score: the predicted Dice and flag columns join the
    rows; returns how well the score did (``metrics.json``'s ``quality``)."""
    if scorer is None or not scored.rows:
        return None
    signals = with_stack_signals(records, scored.signals)  # type: ignore[arg-type]
    judgement = judge(scorer, records, signals)
    for i, row in enumerate(scored.rows):
        for column, values in (
            ("predicted_dice", judgement.predicted_dice),
            ("predicted_dice_low", judgement.dice_low),
            ("predicted_dice_high", judgement.dice_high),
        ):
            value = float(values[i])  # type: ignore[index]
            row[column] = round(value, 4) if np.isfinite(value) else None
        row["flagged"] = int(judgement.flagged[i])
    judged = assess(judgement, [row["dice"] for row in scored.rows])
    judged.score = {"source": scorer.source, "fitted_on": scorer.fitted_on, "tta": tta}
    judged.studies = assess_studies(judgement, records, signals, clinical)
    return judged


def placement_summary(rows: Sequence[dict[str, Any]], crop: str) -> Placements:
    """How the crops were placed: the rule, and the slices per outcome."""
    counts = Counter(row["crop"] for row in rows)
    return Placements(crop, {k: counts.get(k, 0) for k in PLACEMENTS})


# ------------------------------------------------------------------------------ the result


def _model_facts(model: ScoredModel, scope: _Scope) -> ModelFacts:
    parameters = model.parameters
    return ModelFacts(
        name=model.name,
        source=str(model.source),
        runtime=model.runtime,
        parameters=parameters,
        size_mb_fp32=None if parameters is None else round(parameters * 4 / 1e6, 3),
        train_patients=scope.train,
        val_patients=scope.val,
        train_data=model.train_data,
    )


def _data_facts(scope: _Scope) -> DataFacts:
    in_mm = all(r.pixel_spacing_mm is not None for r in scope.records)
    return DataFacts(
        path=str(scope.data),
        format=scope.dataset.format,
        split=scope.split,
        split_note=scope.note,
        patients=scope.patients,
        excluded_patients=scope.excluded,
        distance_units="mm" if in_mm else "px",
        spacing_note=None
        if in_mm
        else "The data store no pixel spacing, so distances are in pixels and the "
        "good-contour thresholds (mm) do not apply.",
    )


def _settings(crop: str, tta: bool, largest_component: bool, rows: Sequence[dict]) -> Settings:
    return Settings(
        good_contour_mm=list(GOOD_CONTOUR_MM),
        crop=crop,
        tta=tta,
        largest_component=largest_component,
        geometry="Predictions are mapped back onto each slice's source grid and scored "
        "against the reference there, in the source pixel spacing.",
        prediction=PREDICTION_NOTES[crop],
        placement=placement_summary(rows, crop),
    )


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in CSV_COLUMNS})
    return buffer.getvalue()


def _write(out: Path, evaluation: Evaluation, worst: Sequence[report.SliceView]) -> None:
    """``metrics.json``, ``slices.csv`` and the report, into a folder moved into place whole."""
    metrics = json_safe(evaluation)
    with atomic.output_folder(out) as folder:
        atomic.write_text(folder / METRICS_FILE, json.dumps(metrics, indent=1) + "\n")
        atomic.write_text(folder / SLICES_FILE, _csv(evaluation.rows))
        report.write_report(folder, metrics, evaluation.rows, worst)


# ------------------------------------------------------------------------------ the command


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
) -> Evaluation:
    """Evaluate ``model_spec`` on the labelled slices of ``data``: ``metrics.json``'s content
    with the per-slice ``rows``, the folder written (``out``) and, with ``keep_masks``, the
    predicted masks (record key to the mask on the source grid).

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
    scorer = _scorer(model, quality, tta)
    explained = _explanations(explanations)
    scope = _scope(model, data, format, split, limit)
    records = scope.records
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
    scored = _score(segmenter.iter_segment(records, progress), scope, scorer is not None, worst)
    clinical = stacks.clinical_section(records, scored.masks)
    judged = _judge(scorer, records, scored, clinical, tta)
    rows = scored.rows
    evaluation = Evaluation(
        lvseg_version=__version__,
        created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        model=_model_facts(model, scope),
        data=_data_facts(scope),
        settings=_settings(crop, tta, largest_component, rows),
        summary=summary.summarise(rows),
        patients=summary.by_patient(rows),
        breakdowns=summary.breakdowns(rows),
        clinical=clinical,
        explanations=explained,
        quality=judged,
        rows=rows,
        out=str(out) if write else None,
        masks=scored.masks if keep_masks else None,
    )
    if write:
        _write(out, evaluation, scored.worst_views())
    return evaluation


PREDICTION_NOTES = {
    "located": "As lvseg predict segments: the model's preprocessing plan, the crop centred on "
    "the heart located in each patient's stack of whole images (every slice, up to four "
    "phases), LV probability > 0.5 after mapping back.",
    "centre": "The model's preprocessing plan, a crop at the image centre (not what lvseg "
    "predict does: it locates the heart), LV probability > 0.5 after mapping back.",
}


# ------------------------------------------------------------------------------ comparing


def evaluation_file(path: str | Path) -> Path:
    """Where an evaluation's ``metrics.json`` is: ``path`` itself, in its folder, or in a run's
    default evaluation folder; a one-line error where none is."""
    path = Path(path)
    for candidate in (path, path / METRICS_FILE, path / DEFAULT_FOLDER / METRICS_FILE):
        if candidate.is_file():
            return candidate
    raise InvalidInputError(
        path, "no evaluation here (run lvseg evaluate MODEL DATA first: looked for metrics.json)"
    )


def load_evaluation(path: str | Path) -> dict[str, Any]:
    """An evaluation's ``metrics.json`` (found by :func:`evaluation_file`)."""
    file = evaluation_file(path)
    try:
        found = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InvalidInputError(file, f"unreadable ({type(error).__name__})") from None
    if not isinstance(found, dict) or "summary" not in found:
        raise InvalidInputError(file, "not an lvseg evaluate metrics.json")
    return found


@dataclass
class Comparison:
    """Evaluations side by side: one row per model (then the published figures), as a table."""

    rows: list[dict[str, Any]]
    markdown: str
    out: str | None
    """The ``compare.html`` written, None without ``out``."""


def compare(items: Sequence[str | Path], out: str | Path | None = None) -> Comparison:
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
    return Comparison(rows, compare_markdown(rows), written)
