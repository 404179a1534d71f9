import shutil

import numpy as np
import pydicom
import pytest
from builders import disc, linked_layout, write_dicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless

from lvseg.data import sunnybrook
from lvseg.data.dicom import dicom_pixels, read_dicom
from lvseg.data.folders import read as read_folders
from lvseg.data.records import ED, ES, LV, MYOCARDIUM
from lvseg.errors import InvalidInputError

# --- the real 5-patient DICOM set -------------------------------------------------------------


def test_real_dicom_counts(dicom_dataset):
    assert dicom_dataset.patients == [
        "SC-HF-I-01",
        "SC-HF-I-02",
        "SC-HF-I-04",
        "SC-HF-I-05",
        "SC-HF-I-06",
    ]
    assert len(dicom_dataset) == 96
    assert sum(LV in r.masks for r in dicom_dataset) == 96
    assert sum(MYOCARDIUM in r.masks for r in dicom_dataset) == 46
    assert dicom_dataset.skipped == []


def test_real_dicom_geometry_phase_and_group(dicom_dataset):
    for record in dicom_dataset:
        assert record.image.dtype == np.float32 and record.image.shape == (256, 256)
        assert 1.2891 <= record.pixel_spacing_mm[0] <= 1.3672
        assert record.pixel_spacing_mm[0] == record.pixel_spacing_mm[1]
        assert 8 <= record.slice_thickness_mm <= 10
        assert record.group == "HF-I"
        instance = int(record.annotation_sources[0].split("-")[-3])
        assert (record.slice_index, record.phase_index) == divmod(instance - 1, 20)
        assert record.source.endswith(f"/{instance}.dcm")
        # Epicardial contours exist at end-diastole only.
        assert record.phase in (ED, ES)
        if MYOCARDIUM in record.masks:
            assert record.phase == ED
            assert not (record.masks[MYOCARDIUM] & record.masks[LV]).any()
    first = dicom_dataset[0]
    assert first.key == "SC-HF-I-01/s2/p7" and first.phase == ES
    assert first.pixel_spacing_mm == (1.367188, 1.367188)


def test_real_dicom_slice_positions_follow_slice_index(dicom_dataset):
    for records in dicom_dataset.by_patient().values():
        positions = {}
        for record in records:
            positions.setdefault(record.slice_index, record.slice_position_mm)
            assert positions[record.slice_index] == pytest.approx(record.slice_position_mm)
        ordered = [positions[i] for i in sorted(positions)]
        steps = np.diff(ordered)
        assert (np.abs(steps) > 5).all() and (np.sign(steps) == np.sign(steps[0])).all()


def test_filled_icontours_agree_with_the_published_png_masks(dicom_dataset, sunnybrook_png):
    png = {(r.patient_id, r.slice_index, r.phase_index): r for r in read_folders(sunnybrook_png)}
    dices = []
    for record in dicom_dataset:
        reference = png[(record.patient_id, record.slice_index, record.phase_index)].masks[LV]
        mask = record.masks[LV]
        dices.append(2 * (mask & reference).sum() / (mask.sum() + reference.sum()))
    assert len(dices) == 96
    assert min(dices) >= 0.99
    assert np.mean(dices) == 1.0  # the PNG masks were filled with the same rule


# --- a synthetic linked layout ----------------------------------------------------------------


@pytest.fixture
def linked(tmp_path):
    return linked_layout(tmp_path / "sb")


def test_linked_layout_records(linked):
    dataset = sunnybrook.read(linked)
    assert [r.key for r in dataset] == [
        "SC-HF-I-01/s0/p0",
        "SC-HF-I-01/s0/p8",
        "SC-HF-I-01/s1/p0",
        "SC-HF-I-01/s1/p8",
    ]
    assert [r.phase for r in dataset] == [ED, ES, ED, ES]
    ed = dataset[0]
    np.testing.assert_array_equal(ed.masks[LV], disc((32, 32), (16, 16), 8))
    np.testing.assert_array_equal(
        ed.masks[MYOCARDIUM], disc((32, 32), (16, 16), 11) & ~disc((32, 32), (16, 16), 8)
    )
    assert MYOCARDIUM not in dataset[1].masks
    assert ed.pixel_spacing_mm == (1.5, 1.5) and ed.slice_thickness_mm == 8
    assert ed.slice_spacing_mm == 10
    assert [r.slice_position_mm for r in dataset] == [0, 0, 10, 10]
    assert ed.image[16, 16] == 800 and ed.image[0, 0] == 100


def test_cap_layout_gives_the_same_records(linked, tmp_path):
    cap = tmp_path / "cap"
    series = cap / "SCD_DeidentifiedImages" / "SCD0000101" / "CINESAX_300"
    series.mkdir(parents=True)
    (cap / "SCD_DeidentifiedImages" / "SCD0000101" / "CINELAX_301").mkdir()
    for file in (linked / "dicoms" / "SCD0000101").glob("*.dcm"):
        shutil.copy(file, series / f"IM-0003-{int(file.stem):04d}.dcm")
    expert = cap / "SCD_ManualContours" / "SC-HF-I-01" / "contours-manual" / "IRCCI-expert"
    expert.mkdir(parents=True)
    for file in (linked / "contourfiles").rglob("*.txt"):
        shutil.copy(file, expert / file.name)
    (cap / "scd_patientdata.csv").write_text(
        "PatientID,OriginalID,Gender,Age,Pathology\n"
        "SCD0000101,SC-HF-I-1,Male,60,Heart failure with infarct\n"
        "SCD0000201,SC-HF-I-2,Male,70,Heart failure with infarct\n"
    )
    assert sunnybrook.looks_like(cap)
    expected, got = sunnybrook.read(linked), sunnybrook.read(cap)
    assert [r.key for r in got] == [r.key for r in expected]
    assert [r.phase for r in got] == [r.phase for r in expected]
    assert got[0].group == "HF-I"
    for a, b in zip(got, expected, strict=True):
        for name in b.masks:
            np.testing.assert_array_equal(a.masks[name], b.masks[name])
    (cap / "scd_patientdata.csv").unlink()
    with pytest.raises(InvalidInputError, match="scd_patientdata.csv .* is needed"):
        sunnybrook.read(cap)


def test_group_column_of_link_csv_wins(linked):
    (linked / "link.csv").write_text("patient_id,original_id,group\nSCD0000101,SC-HF-I-1,HYP\n")
    assert {r.group for r in sunnybrook.read(linked)} == {"HYP"}


# --- bad input: one line naming the file and the problem --------------------------------------


def contour_path(root, instance, kind="i"):
    folder = root / "contourfiles" / "SC-HF-I-1" / f"{kind}-contours"
    return folder / f"IM-0001-{instance:04d}-{kind}contour-manual.txt"


def expect_error(root, path, message):
    with pytest.raises(InvalidInputError, match=message) as raised:
        sunnybrook.read(root)
    assert raised.value.path == str(path)
    assert "\n" not in str(raised.value)
    dataset = sunnybrook.read(root, skip_invalid=True)
    assert [s.path for s in dataset.skipped] == [str(path)]
    assert len(dataset) == 3


def test_truncated_dicom(linked):
    path = linked / "dicoms" / "SCD0000101" / "9.dcm"
    path.write_bytes(path.read_bytes()[:1000])
    expect_error(linked, path, "pixel data")


def test_non_dicom_file(linked):
    path = linked / "dicoms" / "SCD0000101" / "9.dcm"
    path.write_text("this is not a DICOM file\n" * 20)
    expect_error(linked, path, "not a DICOM file")


def test_dicom_without_pixel_data(linked):
    path = linked / "dicoms" / "SCD0000101" / "9.dcm"
    dicom = pydicom.dcmread(path)
    del dicom.PixelData
    dicom.save_as(path)
    expect_error(linked, path, "DICOM file has no pixel data")


def test_unsupported_transfer_syntax(linked):
    path = linked / "dicoms" / "SCD0000101" / "9.dcm"
    dicom = pydicom.dcmread(path)
    dicom.file_meta.TransferSyntaxUID = JPEG2000Lossless
    dicom.PixelData = encapsulate([b"\x00\x01garbage-not-a-codestream" * 4])
    dicom["PixelData"].VR = "OB"
    dicom.save_as(path)
    expect_error(linked, path, "cannot decode pixel data .*JPEG 2000")


def test_instance_number_disagreeing_with_file_name(linked):
    path = linked / "dicoms" / "SCD0000101" / "9.dcm"
    write_dicom(path, np.zeros((32, 32), np.int16), 10)
    expect_error(linked, path, "InstanceNumber is 10, the file name says 9")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 2\n3 x\n4 5\n", "line 2: expected two numbers"),
        ("1 2\n3 4\n", "at least 3 points"),
        ("1 2\n40 4\n4 5\n", r"point \(40, 4\) lies outside the 32x32 image"),
    ],
)
def test_bad_contour_files(linked, text, message):
    path = contour_path(linked, 9)
    path.write_text(text)
    expect_error(linked, path, message)


def test_contour_whose_image_is_missing(linked):
    (linked / "dicoms" / "SCD0000101" / "9.dcm").unlink()
    expect_error(linked, contour_path(linked, 9), r"its image \(instance 9\) is missing")


def test_epicardial_contour_without_endocardial_contour(linked):
    contour_path(linked, 21).unlink()
    expect_error(linked, contour_path(linked, 21, "o"), "epicardial contour without")


def test_layout_errors(tmp_path, linked):
    with pytest.raises(InvalidInputError, match="expected link.csv"):
        sunnybrook.read(tmp_path)
    (linked / "link.csv").write_text("id,name\nSCD0000101,SC-HF-I-1\n")
    with pytest.raises(InvalidInputError, match="expected columns patient_id,original_id"):
        sunnybrook.read(linked)
    (linked / "link.csv").write_text("patient_id,original_id\nSCD0000999,SC-HF-I-9\n")
    with pytest.raises(InvalidInputError, match="image folder of SCD0000999 is missing"):
        sunnybrook.read(linked)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            "SCD0000101,SC-HF-I-1\nSCD0000101,SC-HF-I-2\n",
            "line 3: image SCD0000101 is listed twice \\(first on line 2\\)",
        ),
        (
            "SCD0000101,SC-HF-I-1\nSCD0000102,SC-HF-I-01\n",
            "line 3: patient SC-HF-I-01 is listed twice",
        ),
        ("../../../../etc,SC-HF-I-1\n", "line 2: patient_id '../../../../etc' is not a plain"),
        ("SCD0000101,../../x\n", "line 2: original_id '../../x' is not a plain folder name"),
        ("..,SC-HF-I-1\n", "is not a plain folder name"),
        ("SCD0000101\n", "original_id '' is not a plain folder name"),
    ],
)
def test_link_csv_ids_are_plain_folder_names_listed_once(linked, rows, message):
    """A patient listed twice would double its slices; an id with a path walks out of the
    dataset. Both are refused, naming link.csv and the line."""
    (linked / "link.csv").write_text("patient_id,original_id\n" + rows)
    with pytest.raises(InvalidInputError, match=message) as raised:
        sunnybrook.read(linked)
    assert raised.value.path == str(linked / "link.csv")


def test_link_csv_cells_beyond_the_header_are_ignored(linked):
    (linked / "link.csv").write_text("patient_id,original_id\nSCD0000101,SC-HF-I-1,x,y\n")
    assert len(sunnybrook.read(linked).records) == 4


def test_a_tag_pydicom_cannot_convert_reads_as_absent(linked):
    """CardiacNumberOfImages "Infinity" makes pydicom raise OverflowError on access: the reader
    takes it as missing (20 phases, Sunnybrook's) instead of failing with a traceback."""
    from pydicom.dataelem import DataElement
    from pydicom.uid import ImplicitVRLittleEndian

    from lvseg.data.dicom import tag

    path = linked / "dicoms" / "SCD0000101" / "29.dcm"
    dicom = pydicom.dcmread(path)
    dicom[0x00181090] = DataElement(0x00181090, "OB", b"Infinity")  # stored as raw bytes
    dicom.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    dicom.save_as(path, enforce_file_format=True)
    with pytest.raises(OverflowError):
        pydicom.dcmread(path).get("CardiacNumberOfImages")
    assert tag(pydicom.dcmread(path), "CardiacNumberOfImages") is None
    record = next(r for r in sunnybrook.read(linked).records if r.source == str(path))
    assert (record.slice_index, record.phase_index) == (1, 8)


def test_a_contour_folder_linked_from_outside_is_not_read(linked, tmp_path):
    contours = linked / "contourfiles" / "SC-HF-I-1"
    elsewhere = tmp_path / "elsewhere"
    contours.rename(elsewhere)
    contours.symlink_to(elsewhere)
    with pytest.raises(InvalidInputError, match="no contoured images found"):
        sunnybrook.read(linked)


def test_unreadable_file_is_reported(linked, monkeypatch):
    path = linked / "dicoms" / "SCD0000101" / "9.dcm"
    real = pydicom.dcmread

    def refuse(target, *args, **kwargs):
        if str(target) == str(path):
            raise PermissionError(13, "Permission denied", str(target))
        return real(target, *args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", refuse)
    expect_error(linked, path, "cannot read file \\(Permission denied\\)")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2000), keep_preamble=st.booleans())
def test_random_bytes_raise_only_the_documented_error(tmp_path_factory, data, keep_preamble):
    path = tmp_path_factory.mktemp("random") / "1.dcm"
    path.write_bytes((b"\x00" * 128 + b"DICM" if keep_preamble else b"") + data)
    try:
        dicom = read_dicom(path)
        dicom_pixels(dicom, path)
    except InvalidInputError as error:
        assert error.path == str(path) and "\n" not in str(error)


@pytest.mark.parametrize("junk", ["twelve", "nan", "inf", "1" * 30])
def test_a_junk_instance_number_is_one_line(tmp_path, junk):
    """Junk text, NaN, infinity or more than 64 bits in InstanceNumber (the reliability fuzzing
    found each as a traceback): the labelled reader names the file; the study reader, which
    orders frames by position and trigger time, reads the cine without instance numbers."""
    import warnings

    from lvseg.data.study import read_study

    root = linked_layout(tmp_path / "layout")
    path = root / "dicoms" / "SCD0000101" / "1.dcm"
    dicom = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LO: pydicom would refuse the junk as an IS value
        dicom["InstanceNumber"] = pydicom.DataElement(0x00200013, "LO", junk)
        dicom.save_as(path)
    with pytest.raises(InvalidInputError, match=f"1.dcm: InstanceNumber is {junk[:10]}"):
        sunnybrook.read(root)
    (study,) = read_study(root / "dicoms")
    assert study.instance_numbers is None and study.images.shape[:2] == (2, 2)


def test_non_finite_rescaled_pixels_are_refused(tmp_path):
    pixels = np.ones((8, 8), np.int16)
    path = write_dicom(tmp_path / "1.dcm", pixels, 1, RescaleSlope="NaN", RescaleIntercept=0)
    dicom = read_dicom(path)
    with pytest.raises(InvalidInputError, match="1.dcm: pixel values are not finite"):
        dicom_pixels(dicom, path)
