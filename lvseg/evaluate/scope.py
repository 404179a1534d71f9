"""What ``lvseg evaluate`` scores: the model, whichever runtime runs it, and the patients it did
not train on.

The training split is read from the checkpoint (or the export's metadata), or rebuilt from the
training config saved in it when the data are the ones it trained on. A model is never scored on
its own training patients unless ``split="all"`` says so, and the report then says it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lvseg import layout
from lvseg.config import TrainConfig
from lvseg.data.load import EMBEDDED_PHANTOM, labelled_dataset
from lvseg.data.preprocess import PreprocessPlan
from lvseg.data.records import Dataset
from lvseg.data.splits import Split, split_for
from lvseg.errors import InvalidInputError
from lvseg.segment.network import Network
from lvseg.segment.quality import QualityModel, default_quality_model

SPLITS = ("held-out", "all")


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
            fixed_train=config.data.split_train,
            fixed_val=config.data.split_val,
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
