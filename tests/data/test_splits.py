import json
from collections import Counter

import pytest

from lvseg.data.splits import Split, kfold, split_patients, stratified_order
from lvseg.errors import InvalidInputError

GROUPS = {f"{g}-{i:02d}": g for g, n in (("HF", 12), ("HYP", 8), ("N", 8)) for i in range(n)}


def test_split_is_deterministic_complete_and_disjoint():
    a = split_patients(GROUPS, val_fraction=0.25, test_fraction=0.25, seed=3)
    assert a == split_patients(GROUPS, val_fraction=0.25, test_fraction=0.25, seed=3)
    assert a != split_patients(GROUPS, val_fraction=0.25, test_fraction=0.25, seed=4)
    assert sorted(a.train + a.val + a.test) == sorted(GROUPS)
    assert (len(a.train), len(a.val), len(a.test)) == (14, 7, 7)


def test_split_is_stratified_by_group():
    for seed in range(10):
        split = split_patients(GROUPS, val_fraction=0.25, test_fraction=0.25, seed=seed)
        for members in (split.val, split.test):
            counts = Counter(GROUPS[p] for p in members)
            assert counts["HF"] == 3 and counts["HYP"] == 2 and counts["N"] == 2


def test_kfold_val_sets_partition_the_patients():
    folds = kfold(GROUPS, 4, seed=1, test=["N-00"])
    vals = [p for split in folds for p in split.val]
    assert sorted(vals) == sorted(set(GROUPS) - {"N-00"})
    for split in folds:
        assert split.test == ("N-00",)
        assert Counter(GROUPS[p] for p in split.val)["HF"] == 3
    assert folds == kfold(GROUPS, 4, seed=1, test=["N-00"])


def test_stratified_order_handles_unknown_groups():
    order = stratified_order({"a": None, "b": None, "c": "X"}, seed=0)
    assert sorted(order) == ["a", "b", "c"]


def test_leakage_is_refused_naming_the_patient():
    with pytest.raises(InvalidInputError, match="patient 'P7' is in both train and test"):
        Split(train=("P1", "P7"), val=("P2",), test=("P7",))
    with pytest.raises(InvalidInputError, match="patient 'P1' is twice in val"):
        Split(train=(), val=("P1", "P1"))


def test_split_file_round_trip_and_leaky_file(tmp_path):
    split = split_patients(GROUPS, seed=0)
    split.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json") == split
    leaky = tmp_path / "leaky.json"
    leaky.write_text(json.dumps({"train": ["A", "B"], "val": ["B"]}))
    with pytest.raises(InvalidInputError, match="leaky.json: patient 'B' is in both train and val"):
        Split.load(leaky)
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(InvalidInputError, match="cannot read split file"):
        Split.load(tmp_path / "bad.json")


def test_bad_fractions_and_folds():
    with pytest.raises(InvalidInputError, match="sum below 1"):
        split_patients(GROUPS, val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(InvalidInputError, match="too few"):
        split_patients({"a": None, "b": None}, val_fraction=0.5, test_fraction=0.4)
    with pytest.raises(InvalidInputError, match="cannot make 40 folds of 28 patients"):
        kfold(GROUPS, 40)


def test_split_applies_to_real_patients_without_leakage(png_dataset):
    split = split_patients(png_dataset, val_fraction=0.2, test_fraction=0.2, seed=0)
    parts = split.apply(png_dataset)
    assert sum(len(p) for p in parts.values()) == 526
    patients = [set(part.patients) for part in parts.values()]
    assert not (patients[0] & patients[1]) and not (patients[0] & patients[2])
    assert {r.group for r in parts["val"]} == {"HF-I", "HF-NI", "HYP", "N"}
    with pytest.raises(InvalidInputError, match="of the data is in no set"):
        Split(train=split.train, val=split.val).apply(png_dataset)


def _dataset(groups):
    import numpy as np

    from lvseg.data.records import Dataset, Geometry, SliceRecord

    records = [
        SliceRecord(
            image=np.zeros((4, 4), np.float32), masks={}, patient_id=patient, source=patient,
            geometry=Geometry((4, 4)), group=group,
        )
        for patient, group in groups.items()
    ]  # fmt: skip
    return Dataset(records=records, format="test", root="data")


def test_excluded_patients_are_kept_out_of_training_and_validation():
    from lvseg.data.splits import split_for

    excluded = ["HF-00", "HF-01", "N-03"]
    dataset = _dataset(GROUPS)
    for folds, fold in ((0, 0), (4, 2)):
        split = split_for(
            dataset, folds=folds, fold=fold, val_fraction=0.2, seed=0, exclude=excluded
        )
        assert split.test == tuple(sorted(excluded))
        assert not set(excluded) & set(split.train + split.val)
        assert sorted(split.train + split.val + split.test) == sorted(GROUPS)
    # Excluding nobody gives the split training always had.
    plain = split_for(dataset, folds=4, fold=2, val_fraction=0.2, seed=0)
    assert plain == kfold(GROUPS, 4, seed=0)[2]
    with pytest.raises(InvalidInputError, match="'HF-99' to exclude is not in the data"):
        split_for(dataset, folds=0, fold=0, val_fraction=0.2, seed=0, exclude=["HF-99"])


def test_fewer_training_patients_are_nested_stratified_and_leave_val_alone():
    from lvseg.data.splits import patient_groups, split_for

    dataset = _dataset(GROUPS)
    full = split_for(dataset, folds=4, fold=1, val_fraction=0.2, seed=0)
    chosen = []
    for count in (2, 4, 8, len(full.train)):
        split = split_for(dataset, folds=4, fold=1, val_fraction=0.2, seed=0, train_patients=count)
        assert split.val == full.val and len(split.train) == count
        assert set(split.train) <= set(full.train)
        assert set(split.test) == set(full.train) - set(split.train)  # held out, not lost
        assert len(split.apply(dataset)["train"].patients) == count
        chosen.append(set(split.train))
    assert all(a <= b for a, b in zip(chosen, chosen[1:], strict=False))  # nested
    assert chosen[-1] == set(full.train)
    groups = patient_groups(dataset)
    four = sorted(groups[p] for p in chosen[1])
    assert len(set(four)) == min(4, len(set(groups.values())))  # one of each group first
    with pytest.raises(InvalidInputError, match="train_patients is 99, but the split has"):
        split_for(dataset, folds=4, fold=1, val_fraction=0.2, seed=0, train_patients=99)


def test_a_fixed_split_is_used_as_it_is_and_holds_out_everyone_else():
    from lvseg.data.splits import split_for

    dataset = _dataset(GROUPS)
    written = split_patients(GROUPS, val_fraction=0.25, test_fraction=0.25, seed=5)
    fixed = {"fixed_train": written.train, "fixed_val": written.val}
    # folds, fold and val_fraction are not used: the file's lists are the split
    for folds, fold in ((0, 0), (4, 3)):
        split = split_for(dataset, folds=folds, fold=fold, val_fraction=0.5, seed=9, **fixed)
        assert split == written  # its test patients, in neither list, are held out
        assert sorted(split.train + split.val + split.test) == sorted(GROUPS)
    # an excluded patient leaves the set it was in, for the test set
    dropped = written.train[0]
    split = split_for(
        dataset, folds=0, fold=0, val_fraction=0.2, seed=0, exclude=[dropped], **fixed
    )
    assert dropped in split.test and split.train == written.train[1:]
    # and fewer training patients are drawn from the file's
    split = split_for(dataset, folds=0, fold=0, val_fraction=0.2, seed=0, train_patients=4, **fixed)
    assert set(split.train) < set(written.train) and split.val == written.val
    with pytest.raises(InvalidInputError, match="patient 'HF-99' of the fixed split is not in"):
        split_for(dataset, folds=0, fold=0, val_fraction=0.2, seed=0, fixed_train=["HF-99"])
    with pytest.raises(InvalidInputError, match="fixed split: patient 'HF-00' is in both"):
        split_for(
            dataset, folds=0, fold=0, val_fraction=0.2, seed=0,
            fixed_train=["HF-00"], fixed_val=["HF-00"],
        )  # fmt: skip
