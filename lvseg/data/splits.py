"""Patient-level splits: train/val/test and k-fold cross-validation, stratified by group.

Slices of one patient are highly correlated, so every split is made over patients, never over
images. Splits are deterministic from a seed, stratified by pathology group where known, and a
split in which a patient appears in two sets is refused with an error naming the patient.

>>> split = split_patients({"a": "N", "b": "N", "c": "HF", "d": "HF"}, val_fraction=0.5, seed=0)
>>> sorted(split.train + split.val)
['a', 'b', 'c', 'd']
>>> Split(train=("a", "b"), val=("b",))
Traceback (most recent call last):
...
lvseg.errors.InvalidInputError: patient 'b' is in both train and val
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lvseg import atomic
from lvseg.data.records import Dataset
from lvseg.errors import InvalidInputError

SETS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Patient ids of each set; validated on creation."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for name in SETS:
            for patient in getattr(self, name):
                if patient in seen:
                    where = (
                        f"twice in {name}"
                        if seen[patient] == name
                        else (f"in both {seen[patient]} and {name}")
                    )
                    raise InvalidInputError(None, f"patient {patient!r} is {where}")
                seen[patient] = name

    def to_dict(self) -> dict[str, list[str]]:
        return {name: list(getattr(self, name)) for name in SETS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Iterable[str]], source: str | None = None) -> Split:
        try:
            return cls(**{name: tuple(str(p) for p in data.get(name, ())) for name in SETS})
        except InvalidInputError as error:
            raise InvalidInputError(source, error.reason) from None

    def save(self, path: str | Path) -> None:
        atomic.write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Split:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InvalidInputError(
                path, f"cannot read split file ({type(error).__name__})"
            ) from None
        if not isinstance(data, dict):
            raise InvalidInputError(path, "a split file holds an object with train/val/test lists")
        return cls.from_dict(data, source=str(path))

    def apply(self, dataset: Dataset) -> dict[str, Dataset]:
        """The dataset cut into its sets; a patient of the dataset in no set is refused."""
        missing = sorted(set(dataset.patients) - set(self.train + self.val + self.test))
        if missing:
            raise InvalidInputError(None, f"patient {missing[0]!r} of the data is in no set")
        return {name: dataset.subset(getattr(self, name)) for name in SETS}


def patient_groups(dataset: Dataset) -> dict[str, str | None]:
    """Patient id -> pathology group (None where unknown)."""
    groups: dict[str, str | None] = {}
    for record in dataset:
        groups.setdefault(record.patient_id, record.group)
    return dict(sorted(groups.items()))


def stratified_order(patients: Mapping[str, str | None], seed: int) -> list[str]:
    """Patients in an order in which every group is spread evenly, shuffled by ``seed``.

    Each group is shuffled, and its i-th of n patients gets the key (i + u) / n with one random
    offset u per group; sorting by the key interleaves the groups in proportion, so any prefix or
    any every-k-th selection is stratified.
    """
    rng = np.random.default_rng(seed)
    by_group: dict[str, list[str]] = defaultdict(list)
    for patient, group in sorted(patients.items()):
        by_group[group or ""].append(patient)
    keyed = []
    for group in sorted(by_group):
        members = [by_group[group][i] for i in rng.permutation(len(by_group[group]))]
        offset = rng.random()
        keyed += [((i + offset) / len(members), rng.random(), p) for i, p in enumerate(members)]
    return [patient for *_, patient in sorted(keyed)]


def split_patients(
    patients: Mapping[str, str | None] | Dataset,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
) -> Split:
    """A stratified, seeded train/val/test split of patients (at least one in val if asked for)."""
    groups = patient_groups(patients) if isinstance(patients, Dataset) else dict(patients)
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise InvalidInputError(None, "val and test fractions must be in [0, 1) and sum below 1")
    order = stratified_order(groups, seed)
    n = len(order)
    n_test = _count(test_fraction, n)
    n_val = _count(val_fraction, n)
    if n - n_test - n_val < 1:
        raise InvalidInputError(None, f"{n} patients are too few for this split")
    return Split(
        train=tuple(sorted(order[n_test + n_val :])),
        val=tuple(sorted(order[n_test : n_test + n_val])),
        test=tuple(sorted(order[:n_test])),
    )


def kfold(
    patients: Mapping[str, str | None] | Dataset,
    folds: int,
    seed: int = 0,
    test: Iterable[str] = (),
) -> list[Split]:
    """``folds`` stratified splits whose val sets partition the patients (``test`` held out)."""
    groups = patient_groups(patients) if isinstance(patients, Dataset) else dict(patients)
    held_out = tuple(sorted(test))
    pool = {p: g for p, g in groups.items() if p not in set(held_out)}
    if folds < 2 or folds > len(pool):
        raise InvalidInputError(None, f"cannot make {folds} folds of {len(pool)} patients")
    # Deal each group's shuffled patients round-robin into the folds, each group starting where
    # the previous one stopped: every fold gets its share of every group, and sizes differ by <= 1.
    rng = np.random.default_rng(seed)
    by_group: dict[str, list[str]] = defaultdict(list)
    for patient, group in sorted(pool.items()):
        by_group[group or ""].append(patient)
    fold_of: dict[str, int] = {}
    start = 0
    for group in sorted(by_group, key=lambda g: (-len(by_group[g]), g)):
        members = by_group[group]
        for j, i in enumerate(rng.permutation(len(members))):
            fold_of[members[i]] = (start + j) % folds
        start = (start + len(members)) % folds
    return [
        Split(
            train=tuple(sorted(p for p in pool if fold_of[p] != fold)),
            val=tuple(sorted(p for p in pool if fold_of[p] == fold)),
            test=held_out,
        )
        for fold in range(folds)
    ]


def split_for(
    dataset: Dataset,
    *,
    folds: int | None,
    fold: int,
    val_fraction: float,
    seed: int,
    exclude: Iterable[str] = (),
    train_patients: int = 0,
    fixed_train: Iterable[str] = (),
    fixed_val: Iterable[str] = (),
) -> Split:
    """The split a training config asks for: a fixed one (``fixed_train`` and ``fixed_val``,
    a split file's lists: every other patient is held out), or fold ``fold`` of ``folds``
    patient folds, or else a stratified train/val split with ``val_fraction`` of the patients
    in val; the ``exclude`` patients are kept out of both (they form the test set).
    ``train_patients`` > 0 trains on only that many of the split's training patients, a
    stratified, seeded choice whose smaller counts are subsets of the larger (learning curves);
    val stays as it is, and the training patients left out join the test set.

    Training and evaluation both call this, so an evaluation can rebuild the exact split a model
    was trained with from the config saved in its checkpoint.
    """
    groups = patient_groups(dataset)
    excluded = tuple(sorted(set(exclude)))
    unknown = [p for p in excluded if p not in groups]
    if unknown:
        raise InvalidInputError(
            dataset.root, f"patient {unknown[0]!r} to exclude is not in the data"
        )
    fixed_train, fixed_val = tuple(fixed_train), tuple(fixed_val)
    if fixed_train:
        split = _fixed_split(dataset, groups, fixed_train, fixed_val, excluded)
        # held out: the excluded, the split's test patients, and any patient it does not name
        excluded = tuple(sorted(set(groups) - set(split.train) - set(split.val)))
    groups = {p: g for p, g in groups.items() if p not in set(excluded)}
    if not fixed_train:
        split = _split_of(dataset, groups, folds, fold, val_fraction, seed)
    train = split.train
    if train_patients:
        if train_patients > len(train):
            raise InvalidInputError(
                dataset.root,
                f"data.train_patients is {train_patients}, but the split has {len(train)} "
                "training patients",
            )
        order = stratified_order({p: groups[p] for p in train}, seed)
        train = tuple(sorted(order[:train_patients]))
        # the training patients left out are held out like the excluded ones
        excluded = tuple(sorted({*excluded, *order[train_patients:]}))
    return Split(train=train, val=split.val, test=excluded)


def _fixed_split(
    dataset: Dataset,
    groups: dict[str, str | None],
    train: tuple[str, ...],
    val: tuple[str, ...],
    excluded: tuple[str, ...],
) -> Split:
    """A split file's train and val lists, every patient of which must be in the data, less
    the ``excluded`` patients."""
    unknown = [p for p in (*train, *val) if p not in groups]
    if unknown:
        raise InvalidInputError(
            dataset.root, f"patient {unknown[0]!r} of the fixed split is not in the data"
        )
    try:
        split = Split(train=tuple(sorted(train)), val=tuple(sorted(val)))
    except InvalidInputError as error:
        raise InvalidInputError(dataset.root, f"fixed split: {error.reason}") from None
    kept = [tuple(p for p in part if p not in excluded) for part in (split.train, split.val)]
    return Split(train=kept[0], val=kept[1])


def _split_of(
    dataset: Dataset,
    groups: dict[str, str | None],
    folds: int | None,
    fold: int,
    val_fraction: float,
    seed: int,
) -> Split:
    if folds:
        if len(groups) < folds:
            raise InvalidInputError(
                dataset.root, f"{len(groups)} patients cannot make {folds} folds"
            )
        return kfold(groups, folds, seed=seed)[fold]
    if val_fraction and len(groups) < 2:
        raise InvalidInputError(dataset.root, "one patient cannot be split into train and val")
    return split_patients(groups, val_fraction=val_fraction, test_fraction=0.0, seed=seed)


def _count(fraction: float, n: int) -> int:
    return 0 if fraction == 0 else max(1, int(round(fraction * n)))
