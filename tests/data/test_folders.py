import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lvseg.data import folders
from lvseg.data.errors import InvalidInputError
from lvseg.data.records import ED, ES, LV, MYOCARDIUM, RV


def test_real_png_counts(png_dataset):
    assert len(png_dataset.patients) == 30
    assert len(png_dataset) == 526
    assert all(r.structures == (LV,) and r.masks[LV].any() for r in png_dataset)
    assert all(r.pixel_spacing_mm is None for r in png_dataset)
    assert png_dataset.skipped == []


def test_real_png_ids_slices_phases_groups(png_dataset):
    first = png_dataset[0]
    assert first.patient_id == "SC-HF-I-01" and first.key == "SC-HF-I-01/s2/p7"
    assert first.image.dtype == np.float32 and first.image.shape == (256, 256)
    groups = {r.patient_id: r.group for r in png_dataset}
    assert sorted(set(groups.values())) == ["HF-I", "HF-NI", "HYP", "N"]
    assert groups["SC-HYP-03"] == "HYP" and groups["SC-N-40"] == "N"
    assert {r.phase for r in png_dataset} == {ED, ES}
    for records in png_dataset.by_patient().values():
        ed = sum(r.masks[LV].sum() for r in records if r.phase == ED)
        es = sum(r.masks[LV].sum() for r in records if r.phase == ES)
        assert ed > es


def write_pair(root, name, image, mask, sub="Part1"):
    for folder, array in (("Images", image), ("Labels", mask)):
        path = root / folder / sub / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)
    return root / "Images" / sub / name


@pytest.fixture
def tree(tmp_path):
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 3:6] = 255
    write_pair(tmp_path, "P01-IM-0001-0021.dcm.png", image, mask)
    write_pair(tmp_path, "P02-IM-0001-0005.dcm.png", np.stack([image] * 3, -1), mask)
    return tmp_path


def test_synthetic_tree(tree):
    dataset = folders.read(tree)
    assert [r.key for r in dataset] == ["P01/s1/p0", "P02/s0/p4"]
    np.testing.assert_array_equal(dataset[1].image, np.arange(64).reshape(8, 8))
    assert dataset[0].masks[LV].sum() == 9 and dataset[0].phase is None


def test_custom_name_pattern_and_spacing(tree):
    pattern = r"^(?P<patient>P\d+)-IM-\d+-00(?P<slice>\d)(?P<phase>\d)"
    dataset = folders.read(tree, name_pattern=pattern, pixel_spacing_mm=(1.25, 1.25))
    assert [r.key for r in dataset] == ["P01/s2/p1", "P02/s0/p5"]
    assert dataset[0].pixel_spacing_mm == (1.25, 1.25)
    with pytest.raises(InvalidInputError, match="has no \\(\\?P<patient>"):
        folders.read(tree, name_pattern=r"(?P<who>P\d+)")
    with pytest.raises(InvalidInputError, match="invalid name pattern"):
        folders.read(tree, name_pattern=r"(?P<patient>")
    with pytest.raises(InvalidInputError, match="does not match the name pattern"):
        folders.read(tree, name_pattern=r"^(?P<patient>Q\d+)")


def test_multi_label_masks(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[1, 1], mask[2, 2], mask[3, 3] = 1, 2, 3
    write_pair(tmp_path, "A-IM-0001-0001.png", np.zeros((8, 8), np.uint8), mask)
    record = folders.read(tmp_path, label_values={3: LV, 2: MYOCARDIUM, 1: RV})[0]
    assert record.structures == (LV, MYOCARDIUM, RV)
    assert record.masks[RV][1, 1] and record.masks[LV].sum() == 1


def test_size_mismatch_missing_mask_and_unreadable_image(tree):
    bad = write_pair(
        tree, "P03-IM-0001-0001.png", np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8)
    )
    with pytest.raises(InvalidInputError, match="mask is 9x8, image is 8x8"):
        folders.read(tree)
    dataset = folders.read(tree, skip_invalid=True)
    assert len(dataset) == 2 and dataset.skipped[0].path == str(tree / "Labels/Part1" / bad.name)
    (tree / "Labels/Part1" / bad.name).unlink()
    with pytest.raises(InvalidInputError, match="no mask at"):
        folders.read(tree)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tree / "Labels/Part1" / bad.name)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(InvalidInputError, match="cannot read image") as raised:
        folders.read(tree)
    assert raised.value.path == str(bad)


def test_empty_and_wrong_folders(tmp_path):
    with pytest.raises(InvalidInputError, match="expected 'Images/' and 'Labels/'"):
        folders.read(tmp_path)
    (tmp_path / "Images").mkdir()
    (tmp_path / "Labels").mkdir()
    with pytest.raises(InvalidInputError, match="no image files found"):
        folders.read(tmp_path)


def test_permission_denied_is_one_line(tree, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(folders.Image, "open", refuse)
    with pytest.raises(InvalidInputError, match="cannot read image \\(PermissionError\\)"):
        folders.read(tree)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=st.binary(max_size=400), png_header=st.booleans())
def test_random_image_bytes_raise_only_the_documented_error(tmp_path_factory, image, png_header):
    root = tmp_path_factory.mktemp("random")
    path = write_pair(
        root, "R-IM-0001-0001.png", np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8)
    )
    path.write_bytes((b"\x89PNG\r\n\x1a\n" if png_header else b"") + image)
    try:
        folders.read(root)
    except InvalidInputError as error:
        assert error.path == str(path) and "\n" not in str(error)
