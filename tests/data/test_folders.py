import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lvseg.data import folders
from lvseg.data.records import ED, ES, LV, MYOCARDIUM, RV
from lvseg.errors import InvalidInputError


def test_real_png_counts(png_dataset):
    assert len(png_dataset.patients) == 30
    assert len(png_dataset) == 526
    assert all(r.structures == (LV,) and r.masks[LV].any() for r in png_dataset)
    # The PNGs store no spacing; Sunnybrook patients get their scans' 1.33 mm by name.
    assert {r.pixel_spacing_mm for r in png_dataset} == {folders.SUNNYBROOK_SPACING_MM}
    assert {r.geometry.source_pixel_spacing_mm for r in png_dataset} == {(1.33, 1.33)}
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
    assert [r.pixel_spacing_mm for r in dataset] == [None, None]  # no spacing, no guess


def test_sunnybrook_names_get_their_spacing_unless_one_is_given(tree):
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    write_pair(tree, "SC-HYP-03-IM-0001-0021.dcm.png", image, image > 30)
    found = {r.patient_id: r.pixel_spacing_mm for r in folders.read(tree)}
    assert found == {"P01": None, "P02": None, "SC-HYP-03": (1.33, 1.33)}
    given = folders.read(tree, pixel_spacing_mm=(0.9, 0.9))
    assert {r.pixel_spacing_mm for r in given} == {(0.9, 0.9)}


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


def broken_png(path) -> None:
    """A PNG whose image data is split in two IDAT chunks with a junk chunk between them: Pillow
    opens it and fails while decoding ("broken PNG file", a SyntaxError)."""
    import io
    import struct
    import zlib

    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64)).astype(np.uint8)
    Image.fromarray(noise).save(buffer, "PNG")
    data = buffer.getvalue()
    start = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[start : start + 4])[0]
    payload, rest = data[start + 8 : start + 8 + length], data[start + 12 + length :]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    half = len(payload) // 2
    junk = struct.pack(">I", 5) + b"\x00\x01\x02\x03" + b"xxxxx" + b"\0\0\0\0"
    path.write_bytes(
        data[:start] + chunk(b"IDAT", payload[:half]) + junk + chunk(b"IDAT", payload[half:]) + rest
    )


def test_hostile_image_files_are_one_line(tree, monkeypatch):
    """Cases the reliability fuzzing found: a broken PNG chunk, a header claiming more pixels
    than Pillow decodes, NaN pixels in a float image, and a name pattern whose instance group
    matches letters."""
    image = tree / "Images" / "Part1" / "P01-IM-0001-0021.dcm.png"
    original = image.read_bytes()
    broken_png(image)
    with pytest.raises(InvalidInputError, match="cannot read image \\(SyntaxError\\)"):
        folders.read(tree)
    image.write_bytes(original)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 16)  # 8x8 = 64 > 2 x 16: a "bomb"
    with pytest.raises(InvalidInputError, match="too large to decode"):
        folders.read(tree)
    monkeypatch.undo()
    floats = tree / "Images" / "Part1" / "P03-IM-0001-0001.dcm.tif"
    Image.fromarray(np.full((8, 8), np.nan, np.float32)).save(floats)
    Image.fromarray(np.ones((8, 8), np.uint8)).save(
        tree / "Labels" / "Part1" / "P03-IM-0001-0001.dcm.tif"
    )
    with pytest.raises(InvalidInputError, match="P03.*not finite"):
        folders.read(tree)
    floats.unlink()
    (tree / "Labels" / "Part1" / "P03-IM-0001-0001.dcm.tif").unlink()
    with pytest.raises(InvalidInputError, match="the name's instance 'IM' is not a number"):
        folders.read(tree, name_pattern=r"^(?P<patient>P\d+)-(?P<instance>IM)")
    with pytest.raises(InvalidInputError, match="instances count from 1"):
        folders.read(tree, name_pattern=r"^(?P<patient>P\d+)-IM-(?P<instance>0)")


def test_a_mask_drawn_only_in_the_alpha_channel_is_read(tree):
    """An annotation tool's RGBA mask: black, transparent outside the LV, opaque inside. The
    colour channels are all 0; the alpha channel holds the drawing."""
    alpha = np.zeros((8, 8), np.uint8)
    alpha[1:4, 1:7] = 255
    rgba = np.dstack([np.zeros((8, 8, 3), np.uint8), alpha])
    Image.fromarray(rgba, "RGBA").save(tree / "Labels" / "Part1" / "P01-IM-0001-0021.dcm.png")
    record = folders.read(tree)[0]
    np.testing.assert_array_equal(record.masks[LV], alpha > 0)
    # an opaque colour mask keeps its first channel, as before
    opaque = np.dstack([np.stack([alpha] * 3, -1), np.full((8, 8), 255, np.uint8)])
    Image.fromarray(opaque, "RGBA").save(tree / "Labels" / "Part1" / "P01-IM-0001-0021.dcm.png")
    record = folders.read(tree)[0]
    assert record.masks[LV].sum() == 18
