"""NIfTI reader: ACDC, M&Ms-1, M&Ms-2 and generic layouts, label mappings, and bad input.

Every fixture is written here with nibabel into ``tmp_path``; no binary files are kept.
"""

from __future__ import annotations

import gzip
import struct
import tempfile
from pathlib import Path
from unittest import mock

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lvseg.data import nifti
from lvseg.data.load import READERS, detect_format, load_dataset, reader
from lvseg.data.records import ED, ES, LV, MYOCARDIUM, RV
from lvseg.errors import InvalidInputError

X, Y, Z = 12, 10, 4
ZOOMS = (1.5, 1.25, 8.0)
ORIGIN = (-7.0, 3.0, -20.0)
ACDC_LABEL = {RV: 1, MYOCARDIUM: 2, LV: 3}
MNMS_LABEL = {LV: 1, MYOCARDIUM: 2, RV: 3}


def save(path: Path, array: np.ndarray, zooms=ZOOMS, origin=ORIGIN) -> Path:
    """Write ``array`` as NIfTI with a diagonal affine of ``zooms`` and translation ``origin``."""
    affine = np.diag([*zooms[:3], 1.0])
    affine[:3, 3] = origin
    image = nib.Nifti1Image(array, affine)
    image.header.set_zooms((*zooms[:3], *(1.0,) * max(0, array.ndim - 3))[: array.ndim])
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)
    return path


def heart_labels(values: dict[str, int], shape=(X, Y, Z)) -> np.ndarray:
    """Slice 0 empty; 1: LV, myocardium, RV; 2: LV, myocardium; 3: RV only."""
    labels = np.zeros(shape, np.uint8)
    labels[3:6, 2:5, 1:3] = values[MYOCARDIUM]
    labels[4, 3, 1:3] = values[LV]
    labels[2, 7, 1:3] = values[LV]  # the asymmetric marker: voxel (i=2, j=7)
    labels[8:11, 6:9, 1] = values[RV]
    labels[8:11, 6:9, 3] = values[RV]
    return labels


def cine_image(shape, seed: int = 0) -> np.ndarray:
    image = np.random.default_rng(seed).integers(0, 200, shape).astype(np.int16)
    image[2, 7, ...] = 1000  # the same marker in the image
    return image


def write_acdc(root: Path) -> Path:
    """patient001 (training, Info.cfg: ED 1, ES 12, DCM) and patient002 (testing, no Info.cfg)."""
    for split, patient, frames, info in (
        (
            "training",
            "patient001",
            (1, 12),
            "ED: 1\nES: 12\nGroup: DCM\nHeight: 180\nNbFrame: 30\n",
        ),
        ("testing", "patient002", (1, 10), None),
    ):
        folder = root / split / patient
        for frame in frames:
            save(folder / f"{patient}_frame{frame:02d}.nii.gz", cine_image((X, Y, Z), frame))
            save(folder / f"{patient}_frame{frame:02d}_gt.nii.gz", heart_labels(ACDC_LABEL))
        save(folder / f"{patient}_4d.nii.gz", cine_image((X, Y, Z, 3)))
        if info:
            (folder / "Info.cfg").write_text(info)
    return root


MNMS_CSV = (
    ",External code,VendorName,Vendor,Centre,ED,ES,Age,Pathology,Sex,Height,Weight\n"
    "0,A0S9V9,Siemens,A,1,0,3,45,HCM,M,180,80\n"
    "1,Z9Z9Z9,Philips,B,2,0,9,50,NOR,F,165,60\n"
)


def write_mnms(root: Path, csv_text: str | None = MNMS_CSV, csv_name: str = "") -> Path:
    """One labelled 4D case (labels at frames 0 and 3), one unlabelled, and the information CSV."""
    folder = root / "Training" / "Labeled" / "A0S9V9"
    shape = (X, Y, Z, 5)
    labels = np.zeros(shape, np.uint8)
    labels[..., 0] = heart_labels(MNMS_LABEL)
    labels[..., 3] = heart_labels(MNMS_LABEL)
    labels[8:11, 6:9, 3, 3] = 0  # at ES the RV-only slice is not labelled
    save(folder / "A0S9V9_sa.nii.gz", cine_image(shape))
    save(folder / "A0S9V9_sa_gt.nii.gz", labels)
    save(root / "Training" / "Unlabeled" / "B1C2D3" / "B1C2D3_sa.nii.gz", cine_image(shape))
    if csv_text is not None:
        name = csv_name or "211230_M&Ms_Dataset_information_diagnosis_opendataset.csv"
        (root / name).write_text(csv_text)
    return root


def write_generic(root: Path, values=None) -> Path:
    values = values or {LV: 5, RV: 7, MYOCARDIUM: 6}
    save(root / "case01.nii.gz", cine_image((X, Y, Z)))
    save(root / "case01_gt.nii.gz", heart_labels(values))
    return root


# --------------------------------------------------------------------------- ACDC


def test_acdc_counts_phases_groups_and_labels(tmp_path):
    dataset = nifti.read(write_acdc(tmp_path))
    assert dataset.format == "nifti"
    assert dataset.patients == ["patient001", "patient002"]
    assert len(dataset) == 2 * 2 * 3  # patients x frames x labelled slices (slice 0 is empty)
    assert len({record.key for record in dataset}) == len(dataset)
    assert dataset.skipped == []

    first = [r for r in dataset if r.patient_id == "patient001"]
    assert {(r.phase_index, r.phase) for r in first} == {(0, ED), (11, ES)}
    assert {r.group for r in first} == {"DCM"}
    second = [r for r in dataset if r.patient_id == "patient002"]
    assert {(r.phase_index, r.phase) for r in second} == {(0, None), (9, None)}
    assert {r.group for r in second} == {None}

    by_slice = {r.slice_index: r for r in first if r.phase == ED}
    assert sorted(by_slice) == [1, 2, 3]
    assert by_slice[1].structures == (LV, MYOCARDIUM, RV)
    assert by_slice[2].structures == (LV, MYOCARDIUM)
    assert by_slice[3].structures == (RV,)  # an RV-only slice is kept, with no LV mask
    labels = heart_labels(ACDC_LABEL)
    for name, value in ACDC_LABEL.items():
        np.testing.assert_array_equal(by_slice[1].masks[name], labels[:, :, 1].T == value)


def test_acdc_geometry_spacing_and_transposition(tmp_path):
    write_acdc(tmp_path)
    dataset = nifti.read(tmp_path)
    record = next(r for r in dataset if r.patient_id == "patient001" and r.slice_index == 1)
    assert record.image.dtype == np.float32 and record.image.shape == (Y, X)
    assert record.image[7, 2] == 1000  # volume[i=2, j=7, k] -> image[row=7, col=2]
    assert record.masks[LV][7, 2] and record.masks[LV].sum() == 2
    assert record.masks[LV].shape == (Y, X) and record.masks[LV].dtype == bool
    assert record.pixel_spacing_mm == (ZOOMS[1], ZOOMS[0])
    assert record.slice_thickness_mm == record.slice_spacing_mm == ZOOMS[2]
    assert record.slice_position_mm == pytest.approx(ORIGIN[2] + 1 * ZOOMS[2])
    assert record.geometry.original_shape == (Y, X)
    assert record.geometry.source_pixel_spacing_mm == (ZOOMS[1], ZOOMS[0])
    assert record.geometry.volume_index == 1
    assert record.geometry.affine.shape == (4, 4)
    np.testing.assert_allclose(record.geometry.affine[:3, 3], ORIGIN)
    source = tmp_path / "training" / "patient001" / f"patient001_frame{record.phase_index + 1:02d}"
    assert record.source == f"{source}.nii.gz"
    assert record.annotation_sources == (f"{source}_gt.nii.gz",)


def test_slice_position_follows_a_flipped_affine(tmp_path):
    affine = np.diag([1.0, 1.0, -5.0, 1.0])  # slices run towards -z: normal is -z
    labels = nib.Nifti1Image(heart_labels(ACDC_LABEL), affine)
    nib.save(labels, tmp_path / "patient001_frame01_gt.nii.gz")
    nib.save(nib.Nifti1Image(cine_image((X, Y, Z)), affine), tmp_path / "patient001_frame01.nii.gz")
    positions = [r.slice_position_mm for r in nifti.read(tmp_path)]
    assert positions == pytest.approx([5.0, 10.0, 15.0])


def test_single_file_path_reads_its_pair(tmp_path):
    write_acdc(tmp_path)
    folder = tmp_path / "training" / "patient001"
    for path in (folder / "patient001_frame12.nii.gz", folder / "patient001_frame12_gt.nii.gz"):
        dataset = nifti.read(path)
        assert {(r.phase, r.group) for r in dataset} == {(ES, "DCM")}
        assert len(dataset) == 3
    with pytest.raises(InvalidInputError, match="no label volume"):
        nifti.read(folder / "patient001_4d.nii.gz")


# --------------------------------------------------------------------------- M&Ms


def test_mnms_4d_with_csv(tmp_path):
    dataset = nifti.read(write_mnms(tmp_path))
    assert dataset.patients == ["A0S9V9"]
    assert len(dataset) == 3 + 2  # ED: slices 1-3; ES: slices 1-2; unlabelled case left out
    assert {(r.phase_index, r.phase) for r in dataset} == {(0, ED), (3, ES)}
    assert {r.group for r in dataset} == {"HCM"}
    rv_only = next(r for r in dataset if r.slice_index == 3)
    assert rv_only.structures == (RV,)
    record = next(r for r in dataset if r.slice_index == 1 and r.phase == ES)
    assert record.masks[LV][7, 2] and record.image[7, 2] == 1000
    labels = heart_labels(MNMS_LABEL)
    np.testing.assert_array_equal(record.masks[MYOCARDIUM], labels[:, :, 1].T == 2)
    np.testing.assert_array_equal(record.masks[RV], labels[:, :, 1].T == 3)


def test_mnms_without_csv_has_no_phases(tmp_path):
    dataset = nifti.read(write_mnms(tmp_path, csv_text=None))
    assert {(r.phase_index, r.phase, r.group) for r in dataset} == {
        (0, None, None),
        (3, None, None),
    }


@pytest.mark.parametrize(
    "name, header",
    [
        ("info.csv", "external code,ed,es,pathology"),
        ("M&Ms information.csv", "Code,x,ED,ES,Pathology"),
        ("mnms.csv", "External_Code,Ed,Es,PATHOLOGY"),
    ],
)
def test_mnms_csv_names_and_columns_are_found_leniently(tmp_path, name, header):
    columns = [c.strip().lower().replace("_", " ") for c in header.split(",")]
    row = {"ed": "0", "es": "3", "pathology": "DCM", "x": "?"}
    values = [row.get(c, "A0S9V9") for c in columns]
    write_mnms(tmp_path, f"{header}\n{','.join(values)}\n", csv_name=name)
    dataset = nifti.read(tmp_path)
    assert {(r.phase, r.group) for r in dataset} == {(ED, "DCM"), (ES, "DCM")}


def test_mnms_csv_above_the_folder_read(tmp_path):
    write_mnms(tmp_path)
    dataset = nifti.read(tmp_path / "Training")
    assert {r.phase for r in dataset} == {ED, ES}


def test_only_labelled_frames_of_a_4d_image_are_read(tmp_path):
    write_mnms(tmp_path)
    with mock.patch.object(nifti.volumes, "read_frame", wraps=nifti.read_frame) as read_frame:
        nifti.read(tmp_path)
    assert [c.args[2] for c in read_frame.call_args_list] == [0, 3]


def test_mnms2_phase_from_name_and_long_axis_left_out(tmp_path):
    folder = tmp_path / "001"
    for phase in ("ED", "ES"):
        save(folder / f"001_SA_{phase}.nii.gz", cine_image((X, Y, Z)))
        save(folder / f"001_SA_{phase}_gt.nii.gz", heart_labels(MNMS_LABEL))
        save(folder / f"001_LA_{phase}.nii.gz", cine_image((X, Y, 1)))
        save(folder / f"001_LA_{phase}_gt.nii.gz", heart_labels(MNMS_LABEL)[:, :, 1:2])
    save(folder / "001_SA_CINE.nii.gz", cine_image((X, Y, Z, 3)))
    (tmp_path / "dataset_information.csv").write_text("SUBJECT_CODE,DISEASE\n1,ARR\n")
    dataset = nifti.read(tmp_path)
    assert len(dataset) == 2 * 3
    assert {(r.phase_index, r.phase, r.group) for r in dataset} == {(0, ED, "ARR"), (1, ES, "ARR")}
    record = next(r for r in dataset if r.slice_index == 2)
    assert record.masks[LV][7, 2]  # the mnms convention: 1 is LV
    assert all("_LA_" not in r.source for r in dataset)


# --------------------------------------------------------------------------- label mappings


@pytest.mark.parametrize(
    "text, expected",
    [
        ("acdc", {1: RV, 2: MYOCARDIUM, 3: LV}),
        (" MNMS ", {1: LV, 2: MYOCARDIUM, 3: RV}),
        ("lv=3,myocardium=2,rv=1", {1: RV, 2: MYOCARDIUM, 3: LV}),
        ("LV = 255", {255: LV}),
        ("3=lv, myo=2", {2: MYOCARDIUM, 3: LV}),
        ("lv=1,ignore=2,ignore=4", {1: LV, 2: "ignore", 4: "ignore"}),
    ],
)
def test_parse_labels(text, expected):
    assert nifti.parse_labels(text) == expected
    assert nifti.parse_labels(nifti.format_labels(expected)) == expected


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("acdcx", "not name=value"),
        ("lv", "not name=value"),
        ("lv=", "not name=value"),
        ("lv=x", "not an integer"),
        ("lv=1.5", "not an integer"),
        ("lv=0", "1 or more"),
        ("lv=-2", "1 or more"),
        ("lv=1,rv=1", "given twice"),
        ("lv=1,lv=2", "given twice"),
        ("heart=1", "unknown structure"),
        ("ignore=1", "no structure"),
        ("lv=1,,rv=2", "not name=value"),
    ],
)
def test_parse_labels_rejects_bad_strings(text, reason):
    with pytest.raises(InvalidInputError, match=reason) as caught:
        nifti.parse_labels(text)
    assert repr(text) in str(caught.value) and "\n" not in str(caught.value)


def test_label_mapping_accepts_dicts_either_way():
    assert nifti.label_mapping({3: "lv", 1: "rv"}) == {1: RV, 3: LV}
    assert nifti.label_mapping({"lv": 3, "myo": 2}) == {2: MYOCARDIUM, 3: LV}
    with pytest.raises(InvalidInputError):
        nifti.label_mapping({"lv": "three"})
    with pytest.raises(InvalidInputError):
        nifti.label_mapping(3)  # type: ignore[arg-type]


def test_generic_layout_needs_a_label_mapping(tmp_path):
    write_generic(tmp_path)
    with pytest.raises(InvalidInputError, match="labels=") as caught:
        nifti.read(tmp_path)
    assert caught.value.path == str(tmp_path / "case01.nii.gz")
    dataset = nifti.read(tmp_path, labels="lv=5,myocardium=6,rv=7")
    assert dataset.patients == ["case01"] and len(dataset) == 3
    assert {r.phase_index for r in dataset} == {None}
    record = next(r for r in dataset if r.slice_index == 1)
    assert record.structures == (LV, MYOCARDIUM, RV) and record.masks[LV][7, 2]


def test_user_mapping_unexpected_values_and_ignore(tmp_path):
    write_generic(tmp_path)
    with pytest.raises(InvalidInputError, match="unexpected label values 6, 7"):
        nifti.read(tmp_path, labels="lv=5")
    dataset = nifti.read(tmp_path, labels="lv=5,ignore=6,ignore=7")
    assert {r.structures for r in dataset} == {(LV,)}
    assert len(dataset) == 2  # the RV-only slice holds nothing but ignored labels


def test_user_mapping_overrides_the_layout(tmp_path):
    write_acdc(tmp_path)
    dataset = nifti.read(tmp_path, labels="mnms")
    record = next(r for r in dataset if r.slice_index == 3)
    assert record.structures == (LV,)  # ACDC's RV (1) read as LV


def test_generic_files_with_the_same_name_get_distinct_patients(tmp_path):
    for folder in ("a", "b"):
        save(tmp_path / folder / "image.nii.gz", cine_image((X, Y, Z)))
        save(tmp_path / folder / "image_gt.nii.gz", heart_labels(ACDC_LABEL))
    dataset = nifti.read(tmp_path, labels="acdc")
    assert dataset.patients == ["a_image", "b_image"]


def test_generic_4d_frames_are_phases(tmp_path):
    labels = np.stack([heart_labels(ACDC_LABEL)] * 2 + [np.zeros((X, Y, Z), np.uint8)], axis=-1)
    save(tmp_path / "cine.nii", cine_image((X, Y, Z, 3)))
    save(tmp_path / "cine_gt.nii", labels)
    dataset = nifti.read(tmp_path, labels="acdc")
    assert {r.phase_index for r in dataset} == {0, 1} and len(dataset) == 6


# --------------------------------------------------------------------------- invalid input


def acdc_pair(folder: Path, image: np.ndarray, labels: np.ndarray, suffix=".nii.gz"):
    return (
        save(folder / f"patient001_frame01{suffix}", image),
        save(folder / f"patient001_frame01_gt{suffix}", labels),
    )


def test_shape_mismatch(tmp_path):
    _, label = acdc_pair(tmp_path, cine_image((X, Y, Z)), heart_labels(ACDC_LABEL, (X, Y + 1, Z)))
    with pytest.raises(InvalidInputError, match="label volume is 12x11x4, image is 12x10x4") as e:
        nifti.read(tmp_path)
    assert e.value.path == str(label)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("which", [0, 1])
def test_truncated_file(tmp_path, suffix, which):
    image = np.random.default_rng(1).normal(size=(64, 64, Z)).astype(np.float32)
    labels = heart_labels(ACDC_LABEL, (64, 64, Z))
    paths = acdc_pair(tmp_path, image, labels, suffix)
    data = paths[which].read_bytes()
    paths[which].write_bytes(data[: len(data) * 3 // 5])
    with pytest.raises(InvalidInputError) as caught:
        nifti.read(tmp_path)
    assert caught.value.path == str(paths[which])
    assert "\n" not in str(caught.value)


def test_non_nifti_file(tmp_path):
    image, _ = acdc_pair(tmp_path, cine_image((X, Y, Z)), heart_labels(ACDC_LABEL))
    image.write_text("not a volume")
    with pytest.raises(InvalidInputError, match="cannot read NIfTI header") as caught:
        nifti.read(tmp_path)
    assert caught.value.path == str(image)


def test_non_integer_labels(tmp_path):
    acdc_pair(tmp_path, cine_image((X, Y, Z)), heart_labels(ACDC_LABEL).astype(np.float32) * 0.5)
    with pytest.raises(InvalidInputError, match="not integers"):
        nifti.read(tmp_path)


def test_float_labels_holding_integers_are_fine(tmp_path):
    acdc_pair(tmp_path, cine_image((X, Y, Z)), heart_labels(ACDC_LABEL).astype(np.float32))
    assert len(nifti.read(tmp_path)) == 3


def test_unexpected_label_value(tmp_path):
    labels = heart_labels(ACDC_LABEL)
    labels[0, 0, 0] = 4
    acdc_pair(tmp_path, cine_image((X, Y, Z)), labels)
    with pytest.raises(InvalidInputError, match=r"unexpected label values 4 \(expected 0 or"):
        nifti.read(tmp_path)


def test_two_dimensional_volume(tmp_path):
    acdc_pair(tmp_path, cine_image((X, Y)), heart_labels(ACDC_LABEL)[:, :, 1])
    with pytest.raises(InvalidInputError, match="expected a 3D or 4D volume, got shape 12x10"):
        nifti.read(tmp_path)


def test_trailing_singleton_axes_are_dropped(tmp_path):
    acdc_pair(tmp_path, cine_image((X, Y, Z, 1)), heart_labels(ACDC_LABEL))
    assert len(nifti.read(tmp_path)) == 3


def _with_stored_spacing(image: Path, value: float) -> None:
    data = bytearray(image.read_bytes())
    data[80:84] = struct.pack("<f", value)  # pixdim[1]: spacing along voxel axis 0
    image.write_bytes(bytes(data))


@pytest.mark.parametrize("bad", [0.0, float("nan"), float("inf")])
def test_bad_spacing(tmp_path, bad):
    image, _ = acdc_pair(tmp_path, cine_image((X, Y, Z)), heart_labels(ACDC_LABEL), ".nii")
    _with_stored_spacing(image, bad)
    with pytest.raises(InvalidInputError, match="voxel spacing .* is not positive and finite"):
        nifti.read(tmp_path)


def test_negative_spacing_is_read_as_its_size(tmp_path):
    image, _ = acdc_pair(tmp_path, cine_image((X, Y, Z)), heart_labels(ACDC_LABEL), ".nii")
    _with_stored_spacing(image, -2.0)  # as nibabel does: |pixdim|
    assert {r.pixel_spacing_mm for r in nifti.read(tmp_path)} == {(ZOOMS[1], 2.0)}


def test_non_finite_intensities(tmp_path):
    image = cine_image((X, Y, Z)).astype(np.float32)
    image[0, 0, 2] = np.nan
    acdc_pair(tmp_path, image, heart_labels(ACDC_LABEL))
    with pytest.raises(InvalidInputError, match="non-finite intensities in slice 2"):
        nifti.read(tmp_path)


def test_oversized_header_is_refused_before_reading(tmp_path):
    acdc_pair(tmp_path, cine_image((X, Y, Z)), heart_labels(ACDC_LABEL))
    with mock.patch.object(nifti.volumes, "MAX_VOLUME_BYTES", 100):
        with pytest.raises(InvalidInputError, match="over the 100 limit"):
            nifti.read(tmp_path)


def test_empty_and_unpaired_folders(tmp_path):
    with pytest.raises(InvalidInputError, match="no NIfTI files"):
        nifti.read(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidInputError, match="no NIfTI files"):
        nifti.read(tmp_path)
    save(tmp_path / "patient001_4d.nii.gz", cine_image((X, Y, Z, 2)))
    with pytest.raises(InvalidInputError, match="1 NIfTI files but no image/label pairs"):
        nifti.read(tmp_path)
    with pytest.raises(InvalidInputError, match="no such file or folder"):
        nifti.read(tmp_path / "missing")


def test_all_empty_labels(tmp_path):
    acdc_pair(tmp_path, cine_image((X, Y, Z)), np.zeros((X, Y, Z), np.uint8))
    with pytest.raises(InvalidInputError, match="no labelled slices in 1 image/label pair"):
        nifti.read(tmp_path)


def test_label_without_image(tmp_path):
    orphan = save(tmp_path / "patient003_frame01_gt.nii.gz", heart_labels(ACDC_LABEL))
    with pytest.raises(InvalidInputError, match="label volume with no image") as caught:
        nifti.read(tmp_path)
    assert caught.value.path == str(orphan)


def test_skip_invalid_lists_skipped_files(tmp_path):
    write_acdc(tmp_path)
    bad_gt = tmp_path / "testing" / "patient002" / "patient002_frame10_gt.nii.gz"
    bad_gt.write_bytes(b"\x1f\x8b garbage")
    orphan = save(
        tmp_path / "training" / "patient009" / "patient009_frame01_gt.nii.gz",
        heart_labels(ACDC_LABEL),
    )
    with pytest.raises(InvalidInputError):
        nifti.read(tmp_path)
    dataset = nifti.read(tmp_path, skip_invalid=True)
    assert sorted(s.path for s in dataset.skipped) == sorted([str(bad_gt), str(orphan)])
    assert len(dataset) == 12 - 3
    assert all(s.reason and "\n" not in s.reason for s in dataset.skipped)


def test_skip_invalid_with_nothing_readable(tmp_path):
    image, _ = acdc_pair(tmp_path, cine_image((X, Y, Z)), heart_labels(ACDC_LABEL))
    image.write_bytes(b"junk")
    with pytest.raises(InvalidInputError, match="no readable image/label pairs"):
        nifti.read(tmp_path, skip_invalid=True)


def test_hidden_files_are_ignored(tmp_path):
    write_acdc(tmp_path)
    (tmp_path / "training" / "patient001" / "._patient001_frame01.nii.gz").write_bytes(b"\0\5")
    assert len(nifti.read(tmp_path)) == 12


# --------------------------------------------------------------------------- random bytes


def _valid_nifti_bytes(array: np.ndarray) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return save(Path(folder) / "v.nii", array).read_bytes()


VALID_IMAGE = _valid_nifti_bytes(cine_image((X, Y, Z)))
VALID_LABELS = _valid_nifti_bytes(heart_labels(ACDC_LABEL))

random_payload = st.one_of(
    st.binary(max_size=1200),
    st.binary(max_size=1200).map(gzip.compress),
    st.binary(max_size=800).map(lambda tail: VALID_IMAGE[:352] + tail),
)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # nibabel casting garbage
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    image=random_payload,
    labels=st.one_of(st.none(), st.just(VALID_LABELS), random_payload),
    suffix=st.sampled_from([".nii", ".nii.gz"]),
)
def test_random_bytes_raise_only_invalid_input(image, labels, suffix):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / f"patient001_frame01{suffix}").write_bytes(image)
        if labels is not None:
            (root / f"patient001_frame01_gt{suffix}").write_bytes(labels)
        with pytest.raises(InvalidInputError):
            nifti.read(root)
        with pytest.raises(InvalidInputError):
            nifti.read(root, skip_invalid=True)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # nibabel casting garbage
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(st.tuples(st.integers(0, 351), st.integers(0, 255)), min_size=1, max_size=6),
    target=st.sampled_from(["image", "labels"]),
    compress=st.booleans(),
)
def test_corrupted_headers_raise_only_invalid_input(edits, target, compress):
    """Valid files with random header bytes either read or raise InvalidInputError."""
    data = {"image": bytearray(VALID_IMAGE), "labels": bytearray(VALID_LABELS)}
    for offset, value in edits:
        data[target][offset] = value
    suffix = ".nii.gz" if compress else ".nii"
    with (
        tempfile.TemporaryDirectory() as folder,
        mock.patch.object(nifti.volumes, "MAX_VOLUME_BYTES", 32 * 1024**2),
    ):
        root = Path(folder)
        for name, payload in (("", data["image"]), ("_gt", data["labels"])):
            payload = gzip.compress(bytes(payload)) if compress else bytes(payload)
            (root / f"patient001_frame01{name}{suffix}").write_bytes(payload)
        try:
            nifti.read(root)
        except InvalidInputError as error:
            assert error.path and "\n" not in str(error)


# --------------------------------------------------------------------------- detection


def test_looks_like(tmp_path):
    assert not nifti.looks_like(tmp_path)
    assert not nifti.looks_like(tmp_path / "missing")
    (tmp_path / "info.csv").write_text("a,b\n")
    (tmp_path / ".hidden.nii.gz").write_bytes(b"")
    assert not nifti.looks_like(tmp_path)
    write_mnms(tmp_path / "deep", csv_text=None)  # files 4 levels down
    assert nifti.looks_like(tmp_path)
    single = tmp_path / "deep" / "Training" / "Labeled" / "A0S9V9" / "A0S9V9_sa.nii.gz"
    assert nifti.looks_like(single)
    assert not nifti.looks_like(tmp_path / "info.csv")


def test_looks_like_search_is_bounded(tmp_path):
    folder = tmp_path.joinpath(*"abcdefg")
    save(folder / "x.nii.gz", cine_image((X, Y, Z)))
    assert not nifti.looks_like(tmp_path)
    assert nifti.looks_like(tmp_path / "a" / "b" / "c")


def test_load_dataset_with_explicit_format_passes_options(tmp_path):
    write_generic(tmp_path)
    dataset = load_dataset(tmp_path, format="nifti", labels="lv=5,myocardium=6,rv=7")
    assert dataset.format == "nifti" and len(dataset) == 3


def _all_readers_ready() -> bool:
    """Whether every registered reader imports and has looks_like (others are being written)."""
    try:
        return all(hasattr(reader(name), "looks_like") for name in READERS)
    except Exception:
        return False


@pytest.mark.skipif(not _all_readers_ready(), reason="a registered reader is missing or unfinished")
def test_load_dataset_detects_nifti(tmp_path):
    write_acdc(tmp_path / "acdc")
    write_mnms(tmp_path / "mnms")
    assert detect_format(tmp_path / "acdc") == "nifti"
    assert len(load_dataset(tmp_path / "acdc")) == 12
    assert len(load_dataset(tmp_path / "mnms")) == 5
    single = tmp_path / "acdc" / "training" / "patient001" / "patient001_frame01.nii.gz"
    assert detect_format(single) == "nifti"
    both = load_dataset(tmp_path)  # a folder holding both datasets: conventions per file
    assert both.patients == ["A0S9V9", "patient001", "patient002"]


def test_spacing_in_metres_is_converted_to_mm(tmp_path):
    affine = np.diag([0.0015, 0.00125, 0.008, 1.0])
    for name, array in (("", cine_image((X, Y, Z))), ("_gt", heart_labels(ACDC_LABEL))):
        image = nib.Nifti1Image(array, affine)
        image.header.set_xyzt_units("meter")
        nib.save(image, tmp_path / f"patient001_frame01{name}.nii.gz")
    dataset = nifti.read(tmp_path)
    assert {r.pixel_spacing_mm for r in dataset} == {(1.25, 1.5)}
    assert {r.slice_thickness_mm for r in dataset} == {8.0}
    assert [r.slice_position_mm for r in dataset] == pytest.approx([8.0, 16.0, 24.0])
