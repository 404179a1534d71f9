"""Training data: load a dataset, split it by patient, plan the preprocessing, cache both sets.

The training set is cached around the heart with room for the plan's jitter (random crops move
the heart about as far off-centre as an image-centred crop will find it). The validation set is
cached the way inference sees an image: a crop at the *image* centre, no mask used, so the
validation Dice is the Dice a user gets, not an optimistic heart-centred one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lvseg.config import DataConfig
from lvseg.data.errors import InvalidInputError
from lvseg.data.load import load_dataset
from lvseg.data.phantom import cache_dir
from lvseg.data.preprocess import (
    CachedSlices,
    Fingerprint,
    PreprocessPlan,
    build_cache,
    fingerprint,
    plan_preprocessing,
)
from lvseg.data.records import LV, Dataset
from lvseg.data.splits import Split, kfold, patient_groups, split_patients

STRUCTURES = (LV,)
"""What the network segments: the LV blood pool (class 1); everything else is background."""


@dataclass
class TrainingData:
    train: CachedSlices
    val: CachedSlices | None
    split: Split
    plan: PreprocessPlan
    fingerprint: Fingerprint
    source: str

    @property
    def train_indices(self) -> np.ndarray:
        return self.train.indices_of(self.split.train)


def labelled_dataset(path: str, format: str) -> Dataset:
    """The dataset's slices that have an LV annotation (possibly empty: no LV on that slice)."""
    dataset = load_dataset(path, format)
    records = [r for r in dataset.records if LV in r.masks]
    if not records:
        raise InvalidInputError(path, "no slice with an LV annotation to train on")
    return Dataset(records=records, format=dataset.format, root=dataset.root)


def make_split(dataset: Dataset, config: DataConfig, seed: int) -> Split:
    groups = patient_groups(dataset)
    if config.folds:
        if len(groups) < config.folds:
            raise InvalidInputError(
                dataset.root, f"{len(groups)} patients cannot make {config.folds} folds"
            )
        return kfold(groups, config.folds, seed=seed)[config.fold]
    if config.val_fraction and len(groups) < 2:
        raise InvalidInputError(dataset.root, "one patient cannot be split into train and val")
    return split_patients(groups, val_fraction=config.val_fraction, test_fraction=0.0, seed=seed)


def prepare(config: DataConfig, seed: int, *, cache_root: Path | None = None) -> TrainingData:
    """Everything the loop needs. Caches are keyed by content: a second call (another rank of
    a distributed run, a resumed run) opens what the first one built."""
    dataset = labelled_dataset(config.path, config.format)
    split = make_split(dataset, config, seed)
    sets = split.apply(dataset)
    spacing = config.target_spacing_mm
    found = fingerprint(sets["train"].records)
    plan = plan_preprocessing(
        found,
        target_spacing_mm=None if spacing is None else (spacing, spacing),
    )
    plan = PreprocessPlan.from_dict({**plan.to_dict(), "structures": list(STRUCTURES)})
    root = cache_root or cache_dir() / "preprocessed"
    train = build_cache(sets["train"].records, plan, root, centre="heart")
    val = (
        build_cache(sets["val"].records, plan, root, centre="image")
        if len(sets["val"].records)
        else None
    )
    return TrainingData(train, val, split, plan, found, dataset.root)
