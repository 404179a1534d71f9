"""Training data: load a dataset, split it by patient, plan the preprocessing, cache both sets.

The training set is cached around the heart with room for the plan's jitter (random crops move
the heart about as far off-centre as an image-centred crop will find it). The validation set is
cached with a crop at the *image* centre, no mask used, so the validation Dice is not an
optimistic heart-centred one; it is cheap every epoch, where locating the heart as ``lvseg
evaluate`` and ``predict`` do (:mod:`lvseg.segment`) would cost a whole-image pass.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lvseg.cache import cache_dir
from lvseg.config import DataConfig
from lvseg.data.load import labelled_dataset
from lvseg.data.preprocess import (
    CachedSlices,
    Fingerprint,
    PreprocessPlan,
    build_cache,
    fingerprint,
    plan_preprocessing,
    with_spacing,
)
from lvseg.data.records import LV
from lvseg.data.splits import Split, split_for

TRAINED_STRUCTURES = (LV,)
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


def prepare(config: DataConfig, seed: int, *, cache_root: Path | None = None) -> TrainingData:
    """Everything the loop needs. Caches are keyed by content: a second call (another rank of
    a distributed run, a resumed run) opens what the first one built."""
    dataset = labelled_dataset(config.path, config.format)
    split = split_for(
        dataset,
        folds=config.folds,
        fold=config.fold,
        val_fraction=config.val_fraction,
        seed=seed,
        exclude=config.exclude_patients,
        train_patients=config.train_patients,
        fixed_train=config.split_train,
        fixed_val=config.split_val,
    )
    sets = split.apply(dataset)
    spacing = config.target_spacing_mm
    assumed = None if config.pixel_spacing_mm is None else (config.pixel_spacing_mm,) * 2
    found = fingerprint([with_spacing(r, assumed) for r in sets["train"].records])
    plan = plan_preprocessing(
        found,
        target_spacing_mm=None if spacing is None else (spacing, spacing),
    )
    reach = plan.crop_size // 2 if config.far_crops > 0 else 0
    plan = replace(plan, structures=TRAINED_STRUCTURES, assumed_spacing_mm=assumed, reach_px=reach)
    if reach:
        plan.notes.append(f"far crops: {config.far_crops:.0%} of training crops up to {reach} px")
    if assumed is not None:
        plan.notes.insert(0, f"pixel spacing {assumed[0]:g} mm given to images that store none")
    root = cache_root or cache_dir() / "preprocessed"
    train = build_cache(sets["train"].records, plan, root, centre="heart")
    val = (
        build_cache(sets["val"].records, plan, root, centre="image")
        if len(sets["val"].records)
        else None
    )
    return TrainingData(train, val, split, plan, found, dataset.root)
