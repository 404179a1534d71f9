"""Whole cine studies for prediction: DICOM folders, NIfTI files, image files, and bad input.

Every DICOM fixture is written here by :func:`write_cine` (pydicom datasets saved to tmp_path,
file names and instance numbers shuffled); NIfTI and image fixtures are written with nibabel and
Pillow. Pixel values encode where a frame belongs: ``1000 * slice + 100 * phase + 3 * row + col``,
with ``slice`` the order in which :func:`write_cine` placed it along the slice normal.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from builders import write_dicom
from PIL import Image
from pydicom.uid import generate_uid

from lvseg.data.nifti import slice_positions_of
from lvseg.data.study import NOT_AN_INPUT, CineStudy, read_study
from lvseg.errors import InvalidInputError

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # normal +z
TWO_CHAMBER = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # normal +y
FOUR_CHAMBER = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # normal -x
ROWS, COLS = 24, 20
TRIGGER_STEP_MS = 40.0


def pattern(rows: int = ROWS, cols: int = COLS) -> np.ndarray:
    return 3 * np.arange(rows)[:, None] + np.arange(cols)[None, :]


def oblique_orientation() -> tuple[float, ...]:
    """Row and column directions of a rotated plane, rounded as a DICOM header stores them."""
    a, b, c = np.radians([30.0, -20.0, 55.0])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    rotation = rz @ ry @ rx
    return tuple(round(float(v), 6) for v in (*rotation[:, 0], *rotation[:, 1]))


def write_cine(
    folder: Path,
    *,
    slices: int = 3,
    phases: int = 4,
    rows: int = ROWS,
    cols: int = COLS,
    orientation: tuple[float, ...] = AXIAL,
    spacing: tuple[float, float] = (1.5, 1.25),
    origin: tuple[float, float, float] = (10.0, -20.0, 30.0),
    gap_mm: float = 8.0,
    thickness_mm: float = 8.0,
    patient: str = "P1",
    study_uid: str | None = None,
    description: str = "sax cine",
    series_per_slice: bool = False,
    phase_counts: list[int] | None = None,
    seed: int = 0,
) -> list[Path]:
    """A cine of ``slices`` x ``phases`` MR frames (one series, or one series per slice).

    Slice s sits at ``origin + s * gap_mm * normal``; phase p at TriggerTime ``40 p + 0.5 s`` ms.
    Files get random names and instance numbers a random permutation, so neither tells the order.
    """
    rng = np.random.default_rng(seed)
    row = np.array(orientation[:3])
    normal = np.cross(row, orientation[3:])
    study_uid = study_uid or generate_uid(entropy_srcs=[patient, "study"])
    series = [generate_uid(entropy_srcs=[str(folder), description, str(s)]) for s in range(slices)]
    counts = phase_counts or [phases] * slices
    frames = [(s, p) for s in range(slices) for p in range(counts[s])]
    instances = rng.permutation(len(frames)) + 1
    paths = []
    for (s, p), instance in zip(frames, instances, strict=True):
        position = [round(float(v), 4) for v in np.asarray(origin) + s * gap_mm * normal]
        pixels = pattern(rows, cols) + 1000 * s + 100 * p
        paths.append(
            write_dicom(
                folder / f"{uuid.uuid4().hex[:12]}.dcm",
                pixels,
                int(instance),
                PatientID=patient,
                StudyInstanceUID=study_uid,
                SeriesInstanceUID=series[s] if series_per_slice else series[0],
                SeriesNumber=1 + (s if series_per_slice else 0),
                SeriesDescription=f"{description} {s}" if series_per_slice else description,
                ImageOrientationPatient=list(orientation),
                ImagePositionPatient=position,
                SliceLocation=round(float(normal @ position), 4),
                PixelSpacing=list(spacing),
                SliceThickness=thickness_mm,
                TriggerTime=TRIGGER_STEP_MS * p + 0.5 * s,
                CardiacNumberOfImages=max(counts),
            )
        )
    return paths


def write_long_axis(folder: Path, orientation=TWO_CHAMBER, phases: int = 30, **options):
    """A single-position long-axis cine with more frames than the short-axis stack."""
    return write_cine(
        folder, slices=1, phases=phases, orientation=orientation, description="2ch cine", **options
    )


def header(path: str | Path) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


def edit(path: Path, **tags) -> None:
    """Change (or, given None, delete) tags of a written DICOM file."""
    dicom = pydicom.dcmread(path)
    for name, value in tags.items():
        if value is None:
            delattr(dicom, name)
        else:
            setattr(dicom, name, value)
    dicom.save_as(path)


def only(studies: list[CineStudy]) -> CineStudy:
    assert len(studies) == 1
    return studies[0]


# --- DICOM: ordering and stack choice ---------------------------------------------------------


@pytest.mark.parametrize("gap_mm", [8.0, -8.0])
@pytest.mark.parametrize("series_per_slice", [False, True])
def test_slices_ascend_and_phases_follow_trigger_time(tmp_path, gap_mm, series_per_slice):
    write_cine(tmp_path / "cine", gap_mm=gap_mm, series_per_slice=series_per_slice)
    study = only(read_study(tmp_path))

    assert study.kind == "dicom" and study.patient_id == "P1" and study.name == "P1"
    assert study.images.dtype == np.float32 and study.images.shape == (3, 4, ROWS, COLS)
    assert study.shape == (ROWS, COLS)
    # Written slice s lands at index s when the gap is positive, at 2 - s when it is negative.
    written = [0, 1, 2] if gap_mm > 0 else [2, 1, 0]
    for index, s in enumerate(written):
        for p in range(4):
            expected = pattern() + 1000 * s + 100 * p
            np.testing.assert_array_equal(study.images[index, p], expected)
            assert study.trigger_times_ms[index, p] == pytest.approx(40 * p + 0.5 * s)
    assert np.all(np.diff(study.slice_positions_mm) == pytest.approx(8.0))
    assert study.slice_spacing_mm == pytest.approx(8.0)
    assert study.pixel_spacing_mm == (1.5, 1.25) and study.slice_thickness_mm == 8.0
    for s in range(3):
        for p in range(4):
            assert header(study.sources[s][p]).InstanceNumber == study.instance_numbers[s, p]
    assert study.notes == []
    if series_per_slice:  # the description of the first of the three series
        assert study.series_description in {"sax cine 0", "sax cine 1", "sax cine 2"}
    else:
        assert study.series_description == "sax cine"


def test_short_axis_stack_is_picked_over_long_axis_views(tmp_path):
    write_cine(tmp_path / "sax")
    write_long_axis(tmp_path / "2ch")
    write_long_axis(tmp_path / "4ch", orientation=FOUR_CHAMBER, seed=1)
    study = only(read_study(tmp_path))
    assert study.images.shape == (3, 4, ROWS, COLS)
    assert study.series_description == "sax cine"


def test_a_stack_described_as_short_axis_wins_over_a_larger_stack(tmp_path):
    write_cine(tmp_path / "sa", slices=3, description="cine_SA")
    write_cine(tmp_path / "other", slices=5, orientation=TWO_CHAMBER, description="tra cine")
    assert only(read_study(tmp_path)).series_description == "cine_SA"


def test_without_a_short_axis_description_the_stack_with_most_slices_wins(tmp_path):
    write_cine(tmp_path / "a", slices=3, description="cine a")
    write_cine(tmp_path / "b", slices=5, orientation=TWO_CHAMBER, description="cine b")
    study = only(read_study(tmp_path))
    assert study.series_description == "cine b" and study.images.shape[0] == 5


def test_single_phase_series_are_not_cines(tmp_path):
    cine = write_cine(tmp_path / "cine", slices=2)
    write_cine(tmp_path / "stack", slices=6, phases=1, description="sax t1")
    study = only(read_study(tmp_path))
    assert study.images.shape == (2, 4, ROWS, COLS)
    assert {s for row in study.sources for s in row} == {str(p) for p in cine}


def test_two_studies_in_one_folder_sorted_by_patient(tmp_path):
    write_cine(tmp_path / "b", patient="B")
    write_cine(tmp_path / "a1", patient="A/x 1", slices=2)
    write_cine(tmp_path / "a2", patient="A/x 1", slices=4, study_uid=generate_uid())
    studies = read_study(tmp_path)
    assert [s.patient_id for s in studies] == ["A/x 1", "A/x 1", "B"]
    assert [s.name for s in studies] == ["A_x_1_1", "A_x_1_2", "B"]
    assert sorted(s.images.shape[0] for s in studies[:2]) == [2, 4]


def test_slices_with_fewer_phases_truncate_the_study_with_a_note(tmp_path):
    write_cine(tmp_path, phase_counts=[4, 3, 4])
    study = only(read_study(tmp_path))
    assert study.images.shape == (3, 3, ROWS, COLS)
    assert study.trigger_times_ms.shape == (3, 3)
    assert any(note.startswith("phases truncated to 3: slice 1 has 3") for note in study.notes)


def test_duplicate_frames_keep_the_lower_instance_number(tmp_path):
    paths = write_cine(tmp_path)
    original = paths[5]
    copy = tmp_path / "zz-copy.dcm"
    shutil.copy(original, copy)
    edit(copy, InstanceNumber=999)
    study = only(read_study(tmp_path))
    assert study.images.shape == (3, 4, ROWS, COLS)
    sources = {s for row in study.sources for s in row}
    assert str(original) in sources and str(copy) not in sources
    assert any("1 duplicate frame" in note and "zz-copy.dcm" in note for note in study.notes)


def test_a_repeated_slice_keeps_one_series(tmp_path):
    write_cine(tmp_path / "stack", series_per_slice=True)
    repeat = write_cine(tmp_path / "repeat", slices=1, description="sax repeat")
    for path in repeat:
        edit(path, SeriesNumber=9)
    study = only(read_study(tmp_path))
    assert study.images.shape == (3, 4, ROWS, COLS)
    assert set(study.sources[0]) == {str(p) for p in repeat}
    assert any("kept series 9" in note for note in study.notes)


def test_a_single_dicom_file_is_a_one_frame_study(tmp_path):
    path = write_long_axis(tmp_path, phases=2)[0]
    study = only(read_study(path))
    assert study.kind == "dicom" and study.images.shape == (1, 1, ROWS, COLS)
    assert study.sources == [[str(path)]] and study.pixel_spacing_mm == (1.5, 1.25)
    assert study.name.startswith("P1")


# --- DICOM: errors ----------------------------------------------------------------------------


def test_folder_without_dicom_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidInputError, match="no DICOM files") as error:
        read_study(tmp_path)
    assert error.value.path == str(tmp_path)


def test_study_without_a_short_axis_cine(tmp_path):
    write_long_axis(tmp_path / "la")
    write_long_axis(tmp_path / "la4", orientation=FOUR_CHAMBER, seed=1)
    with pytest.raises(InvalidInputError, match="no short-axis cine: 2 image series") as error:
        read_study(tmp_path)
    assert error.value.path == str(tmp_path)


def test_images_of_different_sizes_in_the_stack(tmp_path):
    write_cine(tmp_path, slices=3)
    odd = write_cine(tmp_path, slices=1, phases=1, rows=16, origin=(10.0, -20.0, 50.0))[0]
    with pytest.raises(InvalidInputError, match=r"16x20 .* are 24x20") as error:
        read_study(tmp_path)
    assert error.value.path == str(odd)


def test_a_frame_without_slice_position(tmp_path):
    paths = write_cine(tmp_path)
    edit(paths[3], ImagePositionPatient=None, ImageOrientationPatient=None, SliceLocation=None)
    with pytest.raises(InvalidInputError, match="no slice position") as error:
        read_study(tmp_path)
    assert error.value.path == str(paths[3])


def test_positions_from_slice_location_where_orientation_is_absent(tmp_path):
    paths = write_cine(tmp_path, gap_mm=-8.0)
    for path in paths:
        edit(path, ImagePositionPatient=None, ImageOrientationPatient=None)
    study = only(read_study(tmp_path))
    assert np.all(np.diff(study.slice_positions_mm) == pytest.approx(8.0))
    np.testing.assert_array_equal(study.images[0, 0], pattern() + 2000)
    assert any("plain scaling" in note for note in study.notes)


def test_corrupt_dicom_file_is_named(tmp_path):
    write_cine(tmp_path)
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"not a dicom file at all")
    with pytest.raises(InvalidInputError, match="not a DICOM file") as error:
        read_study(tmp_path)
    assert error.value.path == str(bad)


def test_skip_invalid_leaves_out_a_junk_file_and_a_frame_that_does_not_fit(tmp_path):
    """One junk file, a frame with unreadable pixels and a frame with no position: without
    skip_invalid the first is the error; with it the stack is built from the other frames, each
    left-out file listed with its reason. The torn frame's slice goes whole (a slice short of
    one phase would put its later phases out of step); the frame without a position cannot be
    placed, so its slice keeps its other phases and the stack is cut to the phases all have."""
    paths = write_cine(tmp_path, slices=4, phases=4)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"DICM" + bytes(200))
    no_position = paths[15]  # slice 3, the last phase
    edit(no_position, ImagePositionPatient=None, ImageOrientationPatient=None, SliceLocation=None)
    torn = paths[6]  # slice 1
    dicom = pydicom.dcmread(torn)
    dicom.PixelData = dicom.PixelData[:10]
    dicom.save_as(torn)
    with pytest.raises(InvalidInputError):
        read_study(tmp_path)

    skipped: list = []
    study = only(read_study(tmp_path, skip_invalid=True, skipped=skipped))
    assert {item.path for item in skipped} == {str(junk), str(no_position), str(torn)}
    assert study.images.shape[:2] == (3, 3)
    np.testing.assert_allclose(study.slice_positions_mm - study.slice_positions_mm[0], [0, 16, 24])
    assert any(note.startswith(f"slice at 38.00 mm left out: its frame {torn.name}")
               for note in study.notes)  # fmt: skip
    assert any("phases truncated to 3" in note for note in study.notes)
    assert any(note.startswith("slice gap: slices 0 and 1") for note in study.notes)
    sources = {source for row in study.sources for source in row}
    assert not sources & {str(junk), str(no_position), str(torn)}


def test_skip_invalid_leaves_out_a_study_without_a_cine_and_keeps_the_others(tmp_path):
    write_cine(tmp_path / "good", patient="GOOD")
    write_long_axis(tmp_path / "bad", patient="BAD")
    skipped: list = []
    study = only(read_study(tmp_path, skip_invalid=True, skipped=skipped))
    assert study.patient_id == "GOOD"
    assert len(skipped) == 1 and "no short-axis cine" in skipped[0].reason
    with pytest.raises(InvalidInputError, match="no readable short-axis cine study"):
        read_study(tmp_path / "bad", skip_invalid=True)


@pytest.mark.parametrize("junk", [b"Infinity", b"NaN ", b"junk", b"99999999999999999999"])
def test_a_junk_instance_number_reads_as_absent(tmp_path, junk):
    """pydicom raises on some of these (OverflowError for "Infinity"): the frame is still
    read, ordered by trigger time, and the study has no instance numbers."""
    from pydicom.dataelem import DataElement
    from pydicom.uid import ImplicitVRLittleEndian

    paths = write_cine(tmp_path, slices=2, phases=3)
    dicom = pydicom.dcmread(paths[1])
    dicom[0x00200013] = DataElement(0x00200013, "OB", junk)  # InstanceNumber, raw bytes
    dicom.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    dicom.save_as(paths[1], enforce_file_format=True)
    study = only(read_study(tmp_path))
    assert study.images.shape[:2] == (2, 3) and study.instance_numbers is None
    np.testing.assert_array_equal(study.images[0, 1], pattern() + 100)


def test_a_missing_middle_slice_is_noted(tmp_path):
    paths = write_cine(tmp_path, slices=5, phases=2)
    for path in paths:
        if round(float(header(path).ImagePositionPatient[2]) - 30.0, 3) == 16.0:  # slice 2
            path.unlink()
    study = only(read_study(tmp_path))
    assert study.images.shape[:2] == (4, 2)
    (note,) = [note for note in study.notes if note.startswith("slice gap")]
    assert "slices 1 and 2 are 16.0 mm apart, the others 8.0 mm" in note
    complete = only(read_study(write_cine(tmp_path / "x", slices=5, phases=2)[0].parent))
    assert not any(note.startswith("slice gap") for note in complete.notes)


def test_other_inputs_are_refused(tmp_path):
    text = tmp_path / "readme.txt"
    text.write_text("hello")
    with pytest.raises(InvalidInputError, match=NOT_AN_INPUT):
        read_study(text)
    with pytest.raises(InvalidInputError, match="no such file or folder"):
        read_study(tmp_path / "missing")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.int16), np.eye(4)), tmp_path / "a.nii.gz")
    with pytest.raises(InvalidInputError, match="give a .nii/.nii.gz file itself"):
        read_study(tmp_path)


# --- DICOM: geometry --------------------------------------------------------------------------


def test_dicom_nifti_voxels_sit_on_their_dicom_pixels(tmp_path):
    orientation = oblique_orientation()
    write_cine(
        tmp_path, slices=4, orientation=orientation, spacing=(1.5, 1.25), gap_mm=-7.5, seed=3
    )
    study = only(read_study(tmp_path))
    nib.save(study.to_nifti(study.images), tmp_path / "out.nii.gz")
    image = nib.load(tmp_path / "out.nii.gz")
    data = np.asarray(image.dataobj)

    assert data.shape == (COLS, ROWS, 4, 4)
    np.testing.assert_array_equal(data, study.images.transpose(3, 2, 0, 1))
    assert image.header.get_zooms()[3] == pytest.approx(TRIGGER_STEP_MS)
    assert image.header["sform_code"] == 1 and image.header["qform_code"] == 1
    np.testing.assert_allclose(image.affine, study.affine, atol=1e-5)
    for s in range(4):
        dicom = header(study.sources[s][0])
        ipp = np.array(dicom.ImagePositionPatient, float)
        row_direction = np.array(dicom.ImageOrientationPatient[:3], float)
        col_direction = np.array(dicom.ImageOrientationPatient[3:], float)
        row_spacing, col_spacing = (float(v) for v in dicom.PixelSpacing)
        for r, c in [(0, 0), (ROWS - 1, 0), (0, COLS - 1), (ROWS - 1, COLS - 1), (7, 11)]:
            lps = ipp + c * col_spacing * row_direction + r * row_spacing * col_direction
            ras = lps * [-1, -1, 1]
            world = image.affine @ [c, r, s, 1]
            np.testing.assert_allclose(world[:3], ras, atol=1e-3)
    masks = study.to_nifti(study.images > 2000)
    assert masks.get_data_dtype() == np.uint8 and masks.shape == (COLS, ROWS, 4, 4)


def test_to_nifti_refuses_a_volume_of_another_shape(tmp_path):
    write_cine(tmp_path)
    study = only(read_study(tmp_path))
    with pytest.raises(ValueError, match="volume is"):
        study.to_nifti(np.zeros((3, 4, ROWS, ROWS)))


# --- NIfTI ------------------------------------------------------------------------------------


def oblique_affine() -> np.ndarray:
    affine = np.eye(4)
    rotation = np.array(oblique_orientation()).reshape(2, 3).T
    normal = np.cross(rotation[:, 0], rotation[:, 1])
    affine[:3, :3] = np.column_stack([rotation[:, 0] * 1.5, rotation[:, 1] * 1.25, normal * 8.0])
    affine[:3, 3] = (-30.0, 12.0, 40.0)
    return affine


@pytest.mark.parametrize("shape", [(20, 24, 5), (20, 24, 5, 3)])
def test_nifti_round_trip_gives_back_the_input(tmp_path, shape):
    rng = np.random.default_rng(0)
    data = rng.integers(-500, 2000, size=shape).astype(np.int16)
    source = nib.Nifti1Image(data, oblique_affine())
    source.header.set_slope_inter(0.5, 10.0)
    source.header.set_xyzt_units("mm", "msec")
    if len(shape) == 4:
        source.header.set_zooms((*source.header.get_zooms()[:3], 35.0))
    path = tmp_path / "case_sa.nii.gz"
    nib.save(source, path)
    stored = nib.load(path)

    study = only(read_study(path))
    phases = shape[3] if len(shape) == 4 else 1
    assert study.kind == "nifti" and study.name == "case_sa" and study.patient_id == "case_sa"
    assert study.images.shape == (5, phases, 24, 20)
    volume = stored.get_fdata().reshape(*shape[:3], phases)
    for k in range(5):
        for t in range(phases):
            np.testing.assert_array_equal(study.images[k, t], volume[:, :, k, t].T)
    zooms = stored.header.get_zooms()
    assert study.pixel_spacing_mm == pytest.approx((zooms[1], zooms[0]))
    assert study.slice_thickness_mm == pytest.approx(8.0, abs=1e-4)
    np.testing.assert_allclose(study.slice_positions_mm, slice_positions_of(stored.affine, 5, 8.0))
    assert np.all(np.diff(study.slice_positions_mm) > 0)
    np.testing.assert_array_equal(study.affine, stored.affine)
    if phases > 1:
        np.testing.assert_allclose(study.trigger_times_ms[2], [0.0, 35.0, 70.0], rtol=1e-6)
    else:
        assert study.trigger_times_ms is None

    nib.save(study.to_nifti(study.images), tmp_path / "back.nii.gz")
    back = nib.load(tmp_path / "back.nii.gz")
    assert back.shape == stored.shape
    np.testing.assert_array_equal(back.affine, stored.affine)
    np.testing.assert_array_equal(back.get_fdata(), stored.get_fdata())
    masks = study.to_nifti(study.images > 500)
    assert masks.get_data_dtype() == np.uint8 and masks.shape == stored.shape
    np.testing.assert_array_equal(np.asarray(masks.dataobj), stored.get_fdata() > 500)


@pytest.mark.parametrize(
    ("array", "reason"),
    [
        (np.zeros((6, 5), np.float32), "expected a 3D or 4D volume, got shape 6x5"),
        (np.zeros((6, 5, 2, 3, 2), np.float32), "expected a 3D or 4D volume"),
        (np.full((6, 5, 2), np.nan, np.float32), "non-finite intensities in slice 0, frame 0"),
    ],
)
def test_bad_nifti_files(tmp_path, array, reason):
    path = tmp_path / "bad.nii"
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)
    with pytest.raises(InvalidInputError, match=reason) as error:
        read_study(path)
    assert error.value.path == str(path)


def test_unreadable_nifti_file(tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(InvalidInputError, match="cannot read NIfTI header") as error:
        read_study(path)
    assert error.value.path == str(path)


# --- image files ------------------------------------------------------------------------------


def test_image_files(tmp_path):
    picture = (pattern() * 2).astype(np.uint8)
    Image.fromarray(picture).save(tmp_path / "SC-HF-I-01-IM-0001-0048.dcm.png")
    Image.fromarray(picture).save(tmp_path / "other image.tif")

    single = only(read_study(tmp_path / "other image.tif"))
    assert single.kind == "image" and single.name == "other_image"
    np.testing.assert_array_equal(single.images[0, 0], picture)
    assert single.images.shape == (1, 1, ROWS, COLS) and single.pixel_spacing_mm is None
    assert single.slice_spacing_mm is None and single.trigger_times_ms is None

    studies = read_study(tmp_path)
    assert [s.patient_id for s in studies] == ["SC-HF-I-01", "other image"]
    assert studies[0].name == "SC-HF-I-01-IM-0001-0048.dcm"
    nifti = studies[0].to_nifti(studies[0].images)
    assert nifti.shape == (COLS, ROWS, 1, 1)
    np.testing.assert_array_equal(nifti.affine, np.eye(4))


# --- the real Sunnybrook set ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sunnybrook_studies(sunnybrook_dicom) -> list[CineStudy]:
    return read_study(sunnybrook_dicom)


@pytest.mark.shared_data
def test_real_sunnybrook_studies(sunnybrook_studies, sunnybrook_dicom):
    patients = [f"SCD0000{n}01" for n in range(1, 6)]
    assert [s.patient_id for s in sunnybrook_studies] == patients
    assert [s.name for s in sunnybrook_studies] == patients
    for study in sunnybrook_studies:
        files = len(list((sunnybrook_dicom / "dicoms" / study.patient_id).glob("*.dcm")))
        assert study.images.shape == (files // 20, 20, 256, 256)
        assert study.notes == []
        # Positions descend as the instance number grows: slice 0 here holds the last 20 files.
        slices = study.images.shape[0]
        expected = [[(slices - 1 - s) * 20 + p + 1 for p in range(20)] for s in range(slices)]
        np.testing.assert_array_equal(study.instance_numbers, expected)
        assert all(
            Path(f).stem == str(n)
            for f, n in zip(
                (f for row in study.sources for f in row),
                study.instance_numbers.ravel(),
                strict=True,
            )
        )
        assert np.all(np.diff(study.trigger_times_ms, axis=1) > 0)

    first = sunnybrook_studies[0]
    assert first.images.shape == (12, 20, 256, 256)
    assert first.pixel_spacing_mm == pytest.approx((1.367188, 1.367188))
    assert first.slice_thickness_mm == 10
    np.testing.assert_allclose(np.diff(first.slice_positions_mm), 10.0, atol=0.01)
    assert first.slice_spacing_mm == pytest.approx(10.0, abs=0.01)


@pytest.mark.shared_data
def test_real_sunnybrook_single_patient(sunnybrook_dicom, sunnybrook_studies):
    study = only(read_study(sunnybrook_dicom / "dicoms" / "SCD0000101"))
    assert study.images.shape == (12, 20, 256, 256)
    np.testing.assert_array_equal(study.images, sunnybrook_studies[0].images)
