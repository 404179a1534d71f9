"""The model card written beside every export: what the model takes, how it was trained and
measured, how big and fast it is, and what it is not for (Markdown for people, JSON for tools).

It follows the sections of Mitchell et al., "Model Cards for Model Reporting" (2019), cut to
what lvseg knows for certain: nothing here is typed by hand, every figure comes from the
checkpoint, the run's ``lvseg evaluate`` output where there is one, and the export's own checks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lvseg import __version__, atomic, layout
from lvseg.errors import InvalidInputError
from lvseg.evaluate.run import evaluation_file, load_evaluation
from lvseg.formatting import number_text
from lvseg.jsonsafe import json_safe, not_in_json
from lvseg.model.classes import CLASS_NAMES, LV_CLASS
from lvseg.runs.checkpoint import LoadedModel

INTENDED_USE = (
    "Research and teaching: segmenting the left-ventricular blood pool in short-axis cine MRI, "
    "measuring volumes and ejection fraction on research data, and studying how a small CNN "
    "learns. NOT FOR CLINICAL USE: not a medical device, not validated for diagnosis or "
    "treatment decisions."
)
LIMITATIONS = (
    "Trained from scratch on few patients (see training data); expect lower accuracy on other "
    "scanners, field strengths, sequences and pathologies than measured here. Apical and "
    "end-systolic slices (small cavities) are the least accurate. Papillary muscles count as "
    "blood pool, as in the Sunnybrook challenge. Only the LV blood pool is segmented: no "
    "myocardium, so no LV mass."
)


@dataclass
class ExportChecks:
    """How every exported variant compares with PyTorch on the check slices, keyed by variant
    (``"pytorch"``, ``"pytorch tta"``, ``"onnx fp32"``, ``"onnx int8"``, ``"ort fp32"``...)."""

    checks: str
    """Where the check (and calibration) slices come from."""
    check_slices: int
    calibration_slices: int
    validation_dice: dict[str, float] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``{variant: {"file": name, "bytes": size}}``."""
    parity: dict[str, dict[str, float]] = field(default_factory=dict)
    """:func:`lvseg.deploy.export.parity` of each variant against PyTorch."""
    latency_ms_1_thread: dict[str, float] = field(default_factory=dict)
    tta: bool = False
    quality_model: dict[str, Any] | None = None
    """The embedded quality-control score: its source, frames fitted on and modes."""


@dataclass
class CardModel:
    """What was exported: the model, its checkpoint, and how."""

    name: str
    parameters: int
    checkpoint: str
    epoch: int | None
    format: str
    int8: bool
    tta: bool
    members: list[str]
    """The models of an ensemble (empty for one model)."""


@dataclass
class ModelCard:
    """``model-card.json``: the exported model, its inputs, preprocessing, training data,
    evaluation and export checks, and what it is for; and the folder written."""

    lvseg_version: str
    created: str
    model: CardModel
    inputs: dict[str, Any]
    preprocessing: dict[str, Any]
    training: dict[str, Any]
    evaluation: dict[str, Any] | None
    """The run's ``lvseg evaluate`` summary of this checkpoint, where there is one."""
    export_checks: ExportChecks
    intended_use: str
    limitations: str
    out: str | None = not_in_json(default=None)


def evaluation_summary(source: Path, given: str | Path | None = None) -> dict[str, Any] | None:
    """The summary of an ``lvseg evaluate`` of this checkpoint for its card: ``given`` (an
    evaluation folder or its metrics.json, ``lvseg export --evaluation``), which must be one
    and must have scored this very checkpoint (else a one-line error); without, the run's
    default evaluation folder where there is one of this checkpoint (else None)."""
    folder = layout.run_of_checkpoint(source) / layout.EVALUATION if given is None else Path(given)
    try:
        metrics = evaluation_file(folder)
        found = load_evaluation(metrics)
        scored = Path(found["model"]["source"])
    except (InvalidInputError, KeyError, TypeError) as error:
        if given is None:
            return None
        if isinstance(error, InvalidInputError):
            raise
        raise InvalidInputError(
            folder, "its metrics.json does not say which model it scored"
        ) from None
    if scored.resolve() != source.resolve():
        if given is None:
            return None  # the evaluation scored another checkpoint of the run
        raise InvalidInputError(
            folder,
            f"it scored {scored}, not the model exported ({source}): evaluate that model, or "
            "leave --evaluation out",
        )
    summary = found["summary"]
    keep = ("slices", "patients", "dice_mean", "dice_median", "iou_mean", "hd95_mm_mean")
    keep += ("apd_mm_mean", "detection_rate", "good_contour_rate_5mm")
    return {
        "file": str(metrics),
        "data": found.get("data", {}).get("path"),
        "split": found.get("data", {}).get("split_note"),
        "crop": (found.get("settings") or {}).get("crop", "centre"),
        "distance_units": found.get("data", {}).get("distance_units"),
        **{key: summary.get(key) for key in keep},
        "ejection_fraction": ((found.get("clinical") or {}).get("agreement") or {}).get("ef"),
    }


def build(
    loaded: LoadedModel,
    results: ExportChecks,
    *,
    format: str,
    int8: bool,
    members: Sequence[str | Path] = (),
    evaluation: dict[str, Any] | None = None,
) -> ModelCard:
    """The card's data from the loaded model and the export's checks (``members``: the models
    of an ensemble; its training facts are those of the first; ``evaluation``: the model's
    :func:`evaluation_summary`, None where none is known, as for an ensemble)."""
    checkpoint = loaded.checkpoint
    config = checkpoint.train_config
    data = None if config is None else config.data
    split = checkpoint.split
    plan = loaded.plan
    spacing = plan.target_spacing_mm
    parameters = loaded.parameters
    model = CardModel(
        name=loaded.name,
        parameters=parameters,
        checkpoint=str(loaded.source),
        epoch=checkpoint.epoch,
        format=format,
        int8=int8,
        tta=bool(results.tta),
        members=[str(m) for m in members] if len(members) > 1 else [],
    )
    return ModelCard(
        lvseg_version=__version__,
        created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        model=model,
        inputs={
            "tensor": "image: float32 (batch, 1, height, width); batch and size are dynamic",
            "outputs": f"logits: float32 (batch, {len(CLASS_NAMES)}, height, width); channel "
            f"{LV_CLASS} is the LV blood pool (softmax, then > 0.5)",
            "trained_size": plan.crop_size,
        },
        preprocessing={
            "embedded": "the plan below is stored in the model file's metadata; lvseg predict "
            "applies it (resample, normalise, locate the heart, crop, map back)",
            "target_spacing_mm": None if spacing is None else list(spacing),
            "spacing_note": None
            if spacing
            else "the training images had no pixel spacing: inputs keep their pixel grid, "
            "so give images at the training data's resolution",
            "crop_size_px": plan.crop_size,
            "intensity": f"clip to the image's {list(plan.clip_percentiles)} percentiles, then "
            "z-score over the whole image",
            "image_interpolation_order": plan.image_order,
            "plan": plan.to_dict(),
        },
        training={
            "data": None if data is None else data.path,
            "format": None if data is None else data.format,
            "folds": None if data is None else data.folds,
            "fold": None if data is None else data.fold,
            "excluded_patients": [] if data is None else list(data.exclude_patients),
            "train_patients": 0 if split is None else len(split.train),
            "val_patients": 0 if split is None else len(split.val),
            "seed": None if config is None else config.seed,
            "epochs": None if config is None else config.optim.epochs,
            "initialised_from": None if config is None else config.model.init,
            "checkpoint_metrics": checkpoint.metrics,
        },
        evaluation=evaluation,
        export_checks=results,
        intended_use=INTENDED_USE,
        limitations=LIMITATIONS,
    )


def _header(card: ModelCard) -> list[str]:
    model = card.model
    lines = [
        f"# Model card: {model.name} ({model.format}{', int8' if model.int8 else ''})",
        "",
        "> **Not for clinical use.** Research software; not a medical device.",
        "",
        f"Exported by lvseg {card.lvseg_version} on {card.created} from `{model.checkpoint}`"
        + (f" (epoch {model.epoch})" if model.epoch is not None else "")
        + f"; {model.parameters:,} parameters.",
        "",
    ]
    if model.members:
        lines += [
            f"An ensemble: the mean class probability of {len(model.members)} models "
            f"({', '.join(f'`{m}`' for m in model.members)}); parameters and latency are "
            "those of all of them together. Training facts below are the first member's.",
            "",
        ]
    return lines


def _inputs_and_preprocessing(card: ModelCard) -> list[str]:
    pre = card.preprocessing
    spacing = pre["target_spacing_mm"]  # the JSON keeps it exact; the text shows 4 digits
    shown = " x ".join(f"{mm:.4g}" for mm in spacing) + " mm" if spacing else pre["spacing_note"]
    return [
        "## Inputs and outputs",
        f"- {card.inputs['tensor']}",
        f"- {card.inputs['outputs']}",
        f"- trained on {card.inputs['trained_size']} px square crops",
        "",
        "## Preprocessing (embedded in the model file)",
        f"- spacing: {shown}",
        f"- crop: {pre['crop_size_px']} px around the located heart",
        f"- intensity: {pre['intensity']}",
        "",
    ]


def _training(train: dict[str, Any]) -> list[str]:
    lines = [
        "## Training data",
        f"- data: `{train['data']}` ({train['format']}); {train['train_patients']} training and "
        f"{train['val_patients']} validation patients (patient-level split"
        + (f", fold {train['fold']} of {train['folds']}" if train["folds"] else "")
        + ")",
    ]
    if train["excluded_patients"]:
        lines.append(f"- kept out entirely: {', '.join(train['excluded_patients'])}")
    lines.append(f"- seed {train['seed']}, {train['epochs']} epochs planned")
    if train.get("initialised_from"):
        lines.append(
            f"- started from the weights of `{train['initialised_from']}` (fine-tuned), not "
            "from scratch"
        )
    metrics = train["checkpoint_metrics"] or {}
    if "val_dice" in metrics:
        lines.append(f"- validation Dice at this checkpoint: {number_text(metrics['val_dice'], 4)}")
    return lines


def _evaluation_lines(evaluation: dict[str, Any] | None) -> list[str]:
    lines = ["", "## Evaluation"]
    if not evaluation:
        return lines + [
            "No `lvseg evaluate` output for this checkpoint; run `lvseg evaluate RUN DATA`."
        ]
    units = evaluation.get("distance_units") or "mm"
    return lines + [
        f"From `{evaluation['file']}` ({evaluation['split']} Crop: {evaluation['crop']}.)",
        "",
        "| slices | patients | Dice mean | Dice median | IoU | HD95 | APD | detection |",
        "|---|---|---|---|---|---|---|---|",
        f"| {evaluation['slices']} | {evaluation['patients']} | "
        f"{number_text(evaluation['dice_mean'], 4)} | "
        f"{number_text(evaluation['dice_median'], 4)} | "
        f"{number_text(evaluation['iou_mean'], 4)} | "
        f"{number_text(evaluation['hd95_mm_mean'], 2)} {units} | "
        f"{number_text(evaluation['apd_mm_mean'], 2)} {units} | "
        f"{number_text(evaluation['detection_rate'], 3)} |",
    ]


def _latency(value: float | None) -> str:
    return number_text(value, 2) + " ms" if value is not None else "-"


def _checks(checks: ExportChecks) -> list[str]:
    """The table of every variant against PyTorch: size, parity, Dice and latency."""
    latency = checks.latency_ms_1_thread
    lines = [
        "",
        "## Export checks",
        f"Checked on {checks.check_slices} slices ({checks.checks}).",
        "",
        "| variant | file | size | max logit diff vs PyTorch | mask Dice vs PyTorch | "
        "validation Dice | latency, 1 thread |",
        "|---|---|---|---|---|---|---|",
        f"| pytorch | - | - | - | - | {number_text(checks.validation_dice['pytorch'], 4)} | "
        f"{number_text(latency.get('pytorch'), 2)} ms |",
    ]
    if "pytorch tta" in checks.validation_dice:
        lines.append(
            f"| pytorch + TTA (8 views) | - | - | - | - | "
            f"{number_text(checks.validation_dice['pytorch tta'], 4)} | "
            f"{_latency(latency.get('pytorch tta'))} |"
        )
    for label, file in checks.files.items():
        parity = checks.parity[label]
        lines.append(
            f"| {label} | `{file['file']}` | {file['bytes'] / 1e6:.3f} MB | "
            f"{parity['max_abs_logit_difference']:.3g} | {parity['mask_dice']:.4f} | "
            f"{number_text(checks.validation_dice[label], 4)} | "
            f"{_latency(latency.get(label))} |"
        )
    return lines


def _quality_and_tta(card: ModelCard) -> list[str]:
    scorer = card.export_checks.quality_model
    lines = [
        "",
        "Quality control: "
        + (
            f"`lvseg predict` gives every frame a predicted Dice and flags the doubtful ones, with "
            f"the score embedded in the model file (fitted on {scorer['fitted_on']} frames: "
            f"{scorer['source'] or 'source not recorded'}); "
            + _modes(scorer.get("modes", ["plain"]))
            if scorer
            else "no quality-control score embedded; `lvseg predict` reports no predicted Dice."
        ),
    ]
    if card.model.tta:
        lines += [
            "",
            "Exported with test-time augmentation: `lvseg predict` averages the LV probability "
            "over the 8 flips and quarter turns of each crop (8 network runs per slice, as the "
            "TTA row's latency shows; `--no-tta` turns it off).",
        ]
    return lines


def markdown(card: ModelCard) -> str:
    """The card for people."""
    lines = _header(card) + _inputs_and_preprocessing(card) + _training(card.training)
    lines += _evaluation_lines(card.evaluation) + _checks(card.export_checks)
    lines += _quality_and_tta(card)
    lines += ["", "## Intended use", card.intended_use, "", "## Limitations"]
    lines += [card.limitations, ""]
    return "\n".join(lines)


def write(folder: Path, card: ModelCard) -> None:
    text = json.dumps(json_safe(card), indent=1) + "\n"
    atomic.write_text(folder / layout.CARD_JSON, text)
    atomic.write_text(folder / layout.CARD_MARKDOWN, markdown(card))


def _modes(modes: list[str]) -> str:
    """Which ways of segmenting the embedded quality score can judge."""
    if modes == ["plain"]:
        return "for frames segmented without test-time augmentation only (none with `--tta`)."
    if modes == ["tta"]:
        return "for frames segmented with test-time augmentation only (none with `--no-tta`)."
    return "one score for frames segmented plainly, one for test-time augmentation."
