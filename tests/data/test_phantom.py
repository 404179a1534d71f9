"""The synthetic phantom: determinism, plausibility, real on-disk formats, round trips."""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from lvseg.data import contours, phantom
from lvseg.data.phantom.anatomy import sample_anatomy
from lvseg.data.records import ED, ES, LV, MYOCARDIUM, RV
from lvseg.errors import InvalidInputError

SMALL = 4  # downscale for the fast tests: same anatomy, a quarter of the matrix


def _has_reader(name: str) -> bool:
    return importlib.util.find_spec(f"lvseg.data.{name}") is not None


needs_sunnybrook = pytest.mark.skipif(
    not _has_reader("sunnybrook"), reason="lvseg.data.sunnybrook (Sunnybrook reader) not present"
)
needs_nifti = pytest.mark.skipif(
    not _has_reader("nifti"), reason="lvseg.data.nifti (NIfTI reader) not present"
)


@pytest.fixture(scope="module")
def cohort() -> list[phantom.PhantomPatient]:
    """Two patients per group, all 20 phases, half resolution."""
    return [phantom.generate_patient(index, seed=0, downscale=2) for index in range(8)]


@pytest.fixture(scope="module")
def dicom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("phantom") / "dicom"
    return phantom.write_phantom(folder, patients=2, seed=3, format="dicom", downscale=SMALL)


@pytest.fixture(scope="module")
def nifti_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("phantom") / "nifti"
    return phantom.write_phantom(folder, patients=2, seed=3, format="nifti", downscale=SMALL)


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _wall_mm(patient: phantom.PhantomPatient, row: int, s: int) -> float:
    """Mean wall thickness of a slice from the areas of the LV and of the epicardium."""
    lv_area = patient.lv[row, s].sum()
    epi_area = lv_area + patient.myocardium[row, s].sum()
    return (np.sqrt(epi_area / np.pi) - np.sqrt(lv_area / np.pi)) * patient.pixel_spacing_mm[0]


def _volume(patient: phantom.PhantomPatient, masks: np.ndarray) -> np.ndarray:
    """Per-phase volume (mm^3) of a [phase, slice, row, col] mask."""
    row_mm, col_mm = patient.pixel_spacing_mm
    return masks.sum(axis=(1, 2, 3)) * row_mm * col_mm * patient.slice_spacing_mm


# --------------------------------------------------------------------------------------------
# Determinism


def test_same_seed_same_patient_and_different_seed_differs() -> None:
    first = phantom.generate_patient(1, seed=5, phases=[0, 7], downscale=SMALL)
    again = phantom.generate_patient(1, seed=5, phases=[0, 7], downscale=SMALL)
    other = phantom.generate_patient(1, seed=6, phases=[0, 7], downscale=SMALL)
    assert np.array_equal(first.images, again.images)
    assert np.array_equal(first.lv, again.lv) and np.array_equal(first.rv, again.rv)
    assert first.images.shape != other.images.shape or not np.array_equal(
        first.images, other.images
    )


def test_patient_does_not_depend_on_cohort_size_or_rendered_phases() -> None:
    one = phantom.phantom_dataset(patients=1, seed=2, downscale=SMALL)
    three = phantom.phantom_dataset(patients=3, seed=2, downscale=SMALL)
    firsts = [r for r in three if r.patient_id == one[0].patient_id]
    assert [r.key for r in firsts] == [r.key for r in one]
    for a, b in zip(one, firsts, strict=True):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.masks[LV], b.masks[LV])
    full = phantom.generate_patient(0, seed=2, downscale=SMALL)
    ed_es = phantom.generate_patient(0, seed=2, phases="ed_es", downscale=SMALL)
    assert ed_es.phase_indices == (0, full.es_phase)
    for phase in ed_es.phase_indices:
        assert np.array_equal(full.images[full.row(phase)], ed_es.images[ed_es.row(phase)])


@pytest.mark.parametrize("fmt", ["dicom", "nifti"])
def test_written_bytes_are_reproducible(tmp_path: Path, fmt: str) -> None:
    a = phantom.write_phantom(tmp_path / "a", patients=1, seed=4, format=fmt, downscale=8)
    b = phantom.write_phantom(tmp_path / "b", patients=1, seed=4, format=fmt, downscale=8)
    c = phantom.write_phantom(tmp_path / "c", patients=1, seed=5, format=fmt, downscale=8)
    digests_a, digests_c = _digests(a), _digests(c)
    assert digests_a == _digests(b)
    assert digests_a != digests_c


# --------------------------------------------------------------------------------------------
# Anatomy and motion


def test_groups_rotate_and_ids_follow_the_sunnybrook_pattern(cohort) -> None:
    assert [p.group for p in cohort[:4]] == list(phantom.GROUPS)
    assert cohort[0].patient_id == "PH0000101" and cohort[0].original_id == "PH-N-01"
    assert cohort[5].patient_id == "PH0000601" and cohort[5].original_id == "PH-HF-I-06"


def test_structures_are_disjoint_and_lv_sits_inside_the_myocardium(cohort) -> None:
    for patient in cohort:
        assert not (patient.lv & patient.myocardium).any()
        assert not (patient.rv & (patient.lv | patient.myocardium)).any()
        for i in range(len(patient.phase_indices)):
            for s in range(patient.slices):
                lv = patient.lv[i, s]
                if lv.any():
                    ring = ndimage.binary_dilation(lv) & ~lv
                    # the LV is enclosed: its rim is myocardium (papillary muscles count as LV)
                    assert patient.myocardium[i, s][ring].all()


def test_systole_shrinks_the_cavity_and_thickens_the_wall(cohort) -> None:
    for patient in cohort:
        ed, es = patient.row(patient.ed_phase), patient.row(patient.es_phase)
        lv_volume = _volume(patient, patient.lv)
        assert lv_volume[es] < lv_volume[ed]
        assert lv_volume[ed] == lv_volume.max() and lv_volume[es] == lv_volume.min()
        myo_volume = _volume(patient, patient.myocardium)
        assert abs(myo_volume[es] - myo_volume[ed]) < 0.2 * myo_volume[ed]
        mid = int(np.argmax(patient.lv[ed].sum(axis=(1, 2))))

        assert _wall_mm(patient, es, mid) > _wall_mm(patient, ed, mid)


def test_label_volumes_are_the_disc_sums_of_the_masks_at_ed_and_es(cohort) -> None:
    for patient in cohort:
        volume_ml = _volume(patient, patient.lv) / 1000.0
        edv, esv = patient.label_volumes_ml()
        assert edv == pytest.approx(volume_ml[patient.row(patient.ed_phase)])
        assert esv == pytest.approx(volume_ml[patient.row(patient.es_phase)])
    only_ed = phantom.generate_patient(0, seed=0, phases=[0], downscale=4)
    assert only_ed.label_volumes_ml() is None


def test_groups_differ_in_ejection_fraction_and_wall(cohort) -> None:
    for patient in cohort:
        ed, es = patient.row(patient.ed_phase), patient.row(patient.es_phase)
        volume = _volume(patient, patient.lv)
        ef = (volume[ed] - volume[es]) / volume[ed]
        if patient.group in ("HF-I", "HF-NI"):
            assert ef < 0.45, (patient.group, ef)
        else:
            assert ef > 0.5, (patient.group, ef)
    hyp = [p for p in cohort if p.group == "HYP"]
    normal = [p for p in cohort if p.group == "N"]
    assert min(_volume(p, p.myocardium)[0] / _volume(p, p.lv)[0] for p in hyp) > max(
        _volume(p, p.myocardium)[0] / _volume(p, p.lv)[0] for p in normal
    )


def test_slices_run_from_base_to_apex(cohort) -> None:
    for patient in cohort:
        areas = patient.lv[patient.row(patient.ed_phase)].sum(axis=(1, 2))
        peak = int(np.argmax(areas))
        apical = areas[peak:]
        assert np.all(np.diff(apical) <= 0.02 * areas[peak]), areas  # shrinking toward the apex
        assert areas[-1] == 0  # the most apical slice shows no cavity
        assert patient.rv[0].any()  # the RV wraps the septum at ED


def test_images_look_like_bssfp(cohort) -> None:
    for patient in cohort:
        for s in range(patient.slices):
            image, lv, myo = patient.images[0, s], patient.lv[0, s], patient.myocardium[0, s]
            if lv.sum() < 50:
                continue
            pool = ndimage.binary_erosion(lv, iterations=2)
            core = ndimage.binary_erosion(myo)
            if pool.any() and core.any():
                assert np.median(image[pool]) > 1.5 * np.median(image[core])  # bright blood
        assert patient.images.dtype == np.float32
        assert patient.images.min() >= 0 and np.array_equal(patient.images, np.rint(patient.images))


def test_every_patient_has_its_own_anatomy_and_acquisition(cohort) -> None:
    shapes = {p.shape for p in cohort}
    spacings = {p.pixel_spacing_mm for p in cohort}
    assert len(spacings) > 3 and len(shapes) > 1
    for p in cohort:
        assert 1.2 <= p.pixel_spacing_mm[0] / p.downscale <= 2.0


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10**6), index=st.integers(0, 400))
def test_any_patient_has_consistent_labels(seed: int, index: int) -> None:
    patient = phantom.generate_patient(index, seed, phases="ed_es", downscale=8)
    assert not (patient.lv & patient.myocardium).any() and not (patient.rv & patient.lv).any()
    assert patient.lv[0].sum() > patient.lv[1].sum()
    assert (0, 0) in patient.endocardium or patient.lv[0, 0].sum() == 0


# --------------------------------------------------------------------------------------------
# In-memory dataset


def test_phantom_dataset_records_are_complete() -> None:
    dataset = phantom.phantom_dataset(patients=2, seed=0, downscale=SMALL)
    assert dataset.format == "phantom" and dataset.patients == ["PH-HF-I-02", "PH-N-01"]
    assert {r.phase for r in dataset} == {ED, ES}
    for record in dataset:
        assert set(record.masks) == {LV, MYOCARDIUM, RV} and record.masks[LV].any()
        assert record.image.shape == record.masks[LV].shape == record.geometry.original_shape
        assert record.pixel_spacing_mm == record.geometry.source_pixel_spacing_mm
        assert record.slice_thickness_mm and record.slice_spacing_mm >= record.slice_thickness_mm
        assert record.slice_position_mm is not None and record.group in phantom.GROUPS
        assert record.geometry.affine.shape == (4, 4)
    everything = phantom.phantom_dataset(patients=1, seed=0, labelled_phases="all", downscale=8)
    assert len({r.phase_index for r in everything}) == phantom.PHASES


def test_contours_reproduce_the_masks(cohort) -> None:
    patient = cohort[2]
    for (phase, s), points in patient.endocardium.items():
        i = patient.row(phase)
        assert np.array_equal(contours.fill_contour(points, patient.shape), patient.lv[i, s])
        # the library's mask -> contour -> mask path stays close too
        refilled = contours.fill_contour(contours.mask_to_contour(patient.lv[i, s]), patient.shape)
        overlap = (
            2 * (refilled & patient.lv[i, s]).sum() / (refilled.sum() + patient.lv[i, s].sum())
        )
        assert overlap >= 0.97 or patient.lv[i, s].sum() < 30


@pytest.mark.parametrize(
    "call",
    [
        lambda: phantom.phantom_dataset(patients=0),
        lambda: phantom.phantom_dataset(patients=True),
        lambda: phantom.phantom_dataset(patients=1, labelled_phases="some"),
        lambda: phantom.generate_patient(-1),
        lambda: phantom.generate_patient(0, seed=-3),
        lambda: phantom.generate_patient(0, phases=[25]),
        lambda: phantom.generate_patient(0, group="XYZ"),
        lambda: phantom.generate_patient(0, downscale=0),
        lambda: phantom.write_phantom("/tmp/never-written", format="png"),
        lambda: phantom.generate_patient(0, acquisition={"nosie": 0.1}),
        lambda: phantom.generate_patient(0, acquisition={"noise": -0.1}),
        lambda: phantom.generate_patient(0, acquisition={"k_fraction": (0.5,)}),
        lambda: phantom.generate_patient(0, acquisition={"spacing": True}),
        lambda: phantom.generate_patient(0, acquisition={"fov_kind": "square"}),
        lambda: phantom.generate_patient(0, contrast="t1"),
        lambda: phantom.write_phantom("/tmp/never-written", contrast="t1"),
    ],
)
def test_bad_arguments_raise_invalid_input(call) -> None:
    with pytest.raises(InvalidInputError) as caught:
        call()
    assert "\n" not in str(caught.value)


def test_an_acquisition_setting_changes_the_images_and_keeps_the_anatomy() -> None:
    drawn = phantom.generate_patient(2, phases=[0], downscale=4)
    noisy = phantom.generate_patient(2, phases=[0], downscale=4, acquisition={"noise": 0.2})
    assert np.array_equal(noisy.lv, drawn.lv) and np.array_equal(noisy.rv, drawn.rv)
    background = ~(drawn.lv | drawn.myocardium | drawn.rv)
    assert noisy.images[background].std() > drawn.images[background].std()
    coarse = phantom.generate_patient(2, phases=[0], downscale=4, acquisition={"spacing": 2.0})
    assert coarse.pixel_spacing_mm == (8.0, 8.0)  # 2.0 mm times the downscale
    assert coarse.lv.sum() < drawn.lv.sum()  # the same heart in fewer, larger pixels
    turned = phantom.generate_patient(2, phases=[0], downscale=4, acquisition={"rotation": 1.0})
    assert not np.array_equal(turned.lv, drawn.lv)
    # the heart (and the thorax with it) moved to 60 mm above and 80 mm right of the centre
    anatomy = sample_anatomy(np.random.default_rng([phantom.DEFAULT_SEED, 2, 0]), "HF-NI")
    moved = phantom.generate_patient(
        2, phases=[0], downscale=4, acquisition={"heart_offset_mm": (-60.0, 80.0)}
    )
    plane = anatomy.plane
    wanted = np.array([plane.rows / 2 - 0.5 - 60 / plane.spacing, plane.cols / 2 - 0.5])
    wanted[1] += 80 / plane.spacing
    shift = (wanted - np.array(plane.heart_px)) / 4  # in pixels of the downscaled images
    centroid = [np.argwhere(p.lv[0]).mean(axis=0)[1:] for p in (drawn, moved)]  # (row, col)
    np.testing.assert_allclose(centroid[1] - centroid[0], shift, atol=0.5)
    # fixing settings to their drawn values changes nothing
    scanner = anatomy.scanner
    fixed = {"fov_kind": scanner.fov_kind, "noise": scanner.noise, "gamma": anatomy.contrast.gamma}
    same = phantom.generate_patient(2, phases=[0], downscale=4, acquisition=fixed)
    assert np.array_equal(same.images, drawn.images)


def test_random_contrast_redraws_every_tissue_and_keeps_the_heart() -> None:
    """Domain randomisation: the same patients, labels and acquisition, tissues of any value."""
    drawn = [phantom.generate_patient(i, phases=[0], downscale=4) for i in range(8)]
    random = [
        phantom.generate_patient(i, phases=[0], downscale=4, contrast="random") for i in range(8)
    ]
    ratios = []
    for ssfp, other in zip(drawn, random, strict=True):
        assert np.array_equal(other.lv, ssfp.lv) and np.array_equal(other.rv, ssfp.rv)
        assert other.pixel_spacing_mm == ssfp.pixel_spacing_mm
        assert not np.array_equal(other.images, ssfp.images)
        blood = other.images[other.lv].mean()
        wall = other.images[other.myocardium].mean()
        ratios.append(wall / blood)
    # SSFP always has a darker wall than blood (partial volume lifts it at this coarse grid);
    # random contrasts need not: here 3 of 8 walls are brighter than their blood
    assert all(
        ssfp.images[ssfp.myocardium].mean() < 0.75 * ssfp.images[ssfp.lv].mean() for ssfp in drawn
    )
    assert sum(r > 1 for r in ratios) == 3 and min(ratios) < 0.5
    again = phantom.generate_patient(1, phases=[0], downscale=4, contrast="random")
    assert np.array_equal(again.images, random[1].images)  # still deterministic


# --------------------------------------------------------------------------------------------
# DICOM (Sunnybrook layout)


def test_dicom_layout_and_tags(dicom_dir: Path) -> None:
    import pydicom

    manifest = json.loads((dicom_dir / "phantom.json").read_text())
    assert manifest["format"] == "dicom" and manifest["seed"] == 3
    with (dicom_dir / "link.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["patient_id"] for r in rows] == ["PH0000101", "PH0000201"]
    assert [r["group"] for r in rows] == ["N", "HF-I"]

    patient = phantom.generate_patient(0, seed=3, downscale=SMALL)
    files = sorted((dicom_dir / "dicoms" / "PH0000101").glob("*.dcm"), key=lambda p: int(p.stem))
    assert len(files) == patient.slices * phantom.PHASES
    study_uids, sop_uids = set(), set()
    for path in files[:: max(1, len(files) // 25)] + [files[-1]]:
        ds = pydicom.dcmread(path)
        number = int(path.stem)
        s, phase = divmod(number - 1, phantom.PHASES)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID == pydicom.uid.MRImageStorage and ds.Modality == "MR"
        assert ds.InstanceNumber == number and ds.PatientID == "PH0000101"
        assert ds.SeriesDescription == phantom.SERIES_DESCRIPTION
        assert (ds.Rows, ds.Columns) == patient.shape
        assert tuple(float(v) for v in ds.PixelSpacing) == patient.pixel_spacing_mm
        assert float(ds.SliceThickness) == patient.slice_thickness_mm
        assert float(ds.SpacingBetweenSlices) == patient.slice_spacing_mm
        assert int(ds.CardiacNumberOfImages) == phantom.PHASES
        assert float(ds.TriggerTime) == pytest.approx(patient.trigger_times_ms[phase], abs=0.01)
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (
            16,
            16,
            15,
            1,
        )
        orientation = np.array(ds.ImageOrientationPatient, float)
        normal = np.cross(orientation[:3], orientation[3:])
        assert abs(orientation[:3] @ orientation[3:]) < 1e-4
        assert float(ds.SliceLocation) == pytest.approx(
            float(np.array(ds.ImagePositionPatient, float) @ normal), abs=0.01
        )
        assert np.array_equal(ds.pixel_array, patient.images[phase, s].astype(np.int16))
        study_uids.add(ds.StudyInstanceUID)
        sop_uids.add(ds.SOPInstanceUID)
    assert len(study_uids) == 1 and len(sop_uids) > 20
    locations = [
        float(pydicom.dcmread(files[s * phantom.PHASES], stop_before_pixels=True).SliceLocation)
        for s in range(patient.slices)
    ]
    assert np.allclose(np.diff(locations), patient.slice_spacing_mm, atol=0.01)


def test_dicom_contours_are_ed_es_and_refill_to_the_masks(dicom_dir: Path) -> None:
    patient = phantom.generate_patient(1, seed=3, phases="ed_es", downscale=SMALL)
    folder = dicom_dir / "contourfiles" / patient.original_id
    inner = sorted((folder / "i-contours").iterdir())
    outer = sorted((folder / "o-contours").iterdir())
    assert len(inner) == len(outer) == len(patient.endocardium)
    for path in inner + outer:
        found = contours.CONTOUR_NAME.match(path.name)
        assert found
        s, phase = divmod(int(found["instance"]) - 1, phantom.PHASES)
        assert phase in (patient.ed_phase, patient.es_phase)
        i = patient.row(phase)
        filled = contours.fill_contour(contours.read_contour(path, patient.shape), patient.shape)
        if found["kind"] == "i":
            assert np.array_equal(filled, patient.lv[i, s])
        else:
            assert np.array_equal(filled & ~patient.lv[i, s], patient.myocardium[i, s])


def test_existing_folder_is_refused_unless_overwrite_and_lvseg_wrote_it(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    phantom.write_phantom(target, patients=1, downscale=8)  # an empty folder is taken as new
    with pytest.raises(FileExistsError):
        phantom.write_phantom(target, patients=1, downscale=8)
    (target / "keep.txt").write_text("x")
    phantom.write_phantom(target, patients=1, downscale=8, overwrite=True)  # lvseg's own
    assert phantom.looks_like(target) and not (target / "keep.txt").exists()
    assert not phantom.looks_like(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    with pytest.raises(InvalidInputError, match="lvseg did not write it"):
        phantom.write_phantom(mine, patients=1, downscale=8, overwrite=True)
    assert (mine / "keep.txt").read_text() == "x"


# --------------------------------------------------------------------------------------------
# NIfTI (ACDC layout)


def test_nifti_layout_shapes_labels_and_info(nifti_dir: Path) -> None:
    import nibabel as nib

    patient = phantom.generate_patient(1, seed=3, downscale=SMALL)
    folder = nifti_dir / "patient002"
    info = dict(
        line.split(": ", 1) for line in (folder / "Info.cfg").read_text().strip().splitlines()
    )
    assert info["ED"] == "1" and info["ES"] == str(patient.es_phase + 1)
    assert info["Group"] == "MINF" and info["NbFrame"] == "20"
    assert float(info["Height"]) > 100 and float(info["Weight"]) > 30
    rows, cols = patient.shape
    cine = nib.load(folder / "patient002_4d.nii.gz")
    assert cine.shape == (cols, rows, patient.slices, phantom.PHASES)
    assert cine.header.get_zooms()[:3] == pytest.approx(
        (patient.pixel_spacing_mm[1], patient.pixel_spacing_mm[0], patient.slice_spacing_mm)
    )
    assert np.allclose(cine.affine, patient.affine()) and abs(np.linalg.det(cine.affine)) > 0
    data = np.asarray(cine.dataobj)
    assert np.array_equal(data[:, :, 2, 5].T, patient.images[5, 2])
    for phase in (patient.ed_phase, patient.es_phase):
        stem = f"patient002_frame{phase + 1:02d}"
        frame = np.asarray(nib.load(folder / f"{stem}.nii.gz").dataobj)
        labels = np.asarray(nib.load(folder / f"{stem}_gt.nii.gz").dataobj)
        assert frame.shape == labels.shape == (cols, rows, patient.slices)
        assert set(np.unique(labels)) == {0, 1, 2, 3}
        for s in range(patient.slices):
            assert np.array_equal(labels[:, :, s].T == 3, patient.lv[phase, s])
            assert np.array_equal(labels[:, :, s].T == 2, patient.myocardium[phase, s])
            assert np.array_equal(labels[:, :, s].T == 1, patient.rv[phase, s])
    raw = (folder / "patient002_4d.nii.gz").read_bytes()
    assert raw[4:8] == b"\0\0\0\0" and gzip.decompress(raw)[344:348] == b"n+1\0"


# --------------------------------------------------------------------------------------------
# Reading back and the embedded default


def test_manifest_and_read_errors(tmp_path: Path, dicom_dir: Path) -> None:
    manifest = phantom.read_manifest(dicom_dir)
    assert [p["group"] for p in manifest["patients"]] == ["N", "HF-I"]
    assert manifest["version"] == phantom.PHANTOM_VERSION
    with pytest.raises(InvalidInputError):
        phantom.read(tmp_path)
    (tmp_path / "phantom.json").write_text("{not json")
    with pytest.raises(InvalidInputError):
        phantom.read(tmp_path)


def test_cache_location_follows_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LVSEG_CACHE_DIR", str(tmp_path / "a"))
    assert phantom.default_phantom_dir().parent == tmp_path / "a"
    monkeypatch.delenv("LVSEG_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert phantom.default_phantom_dir().parent == tmp_path / "b" / "lvseg"
    assert phantom.PHANTOM_VERSION in phantom.default_phantom_dir().name


def test_ensure_default_phantom_writes_once(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LVSEG_CACHE_DIR", str(tmp_path))
    folder = phantom.ensure_default_phantom(patients=1, seed=0)
    assert phantom.looks_like(folder) and folder.parent == tmp_path
    stamp = (folder / "phantom.json").stat().st_mtime_ns
    assert phantom.ensure_default_phantom(patients=1, seed=0) == folder
    assert (folder / "phantom.json").stat().st_mtime_ns == stamp


def _assert_same_records(read_back, expected, structures) -> None:
    assert len(read_back) == len(expected)
    key = lambda r: (r.patient_id, r.slice_index, r.phase_index)  # noqa: E731
    for got, want in zip(sorted(read_back, key=key), sorted(expected, key=key), strict=True):
        assert key(got) == key(want) and got.phase == want.phase
        assert np.array_equal(got.image, want.image)
        for name in structures:
            empty = np.zeros_like(want.masks[LV])
            assert np.array_equal(got.masks.get(name, empty), want.masks[name]), (name, key(got))
        assert got.group == want.group
        assert got.pixel_spacing_mm == pytest.approx(want.pixel_spacing_mm)
        assert got.slice_position_mm == pytest.approx(want.slice_position_mm, abs=0.01)


@needs_sunnybrook
def test_dicom_phantom_reads_back_identically(dicom_dir: Path) -> None:
    from lvseg.data.load import load_dataset

    dataset = load_dataset(dicom_dir)
    assert dataset.format == "phantom" and dataset.patients == ["PH-HF-I-02", "PH-N-01"]
    expected = phantom.phantom_dataset(patients=2, seed=3, downscale=SMALL)
    _assert_same_records(dataset.records, expected.records, (LV, MYOCARDIUM))
    assert {r.group for r in dataset} == {"N", "HF-I"}


@needs_sunnybrook
def test_unknown_reader_options_are_refused(dicom_dir: Path) -> None:
    with pytest.raises(InvalidInputError, match="no option"):
        phantom.read(dicom_dir, colour="blue")


@needs_nifti
def test_nifti_phantom_reads_back_identically(nifti_dir: Path) -> None:
    from lvseg.data.load import load_dataset

    dataset = load_dataset(nifti_dir)
    assert dataset.format == "phantom" and dataset.patients == ["PH-HF-I-02", "PH-N-01"]
    expected = phantom.phantom_dataset(patients=2, seed=3, downscale=SMALL)
    with_lv = [r for r in dataset if LV in r.masks]
    assert len(with_lv) < len(dataset)  # the reader also keeps slices with only RV/myocardium
    _assert_same_records(with_lv, expected.records, (LV, MYOCARDIUM, RV))


@needs_sunnybrook
def test_literal_phantom_path_reads_the_default(monkeypatch, tmp_path: Path) -> None:
    from lvseg.data.load import load_dataset

    monkeypatch.setenv("LVSEG_CACHE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("lvseg.data.phantom.reader.DEFAULT_PATIENTS", 1)
    dataset = load_dataset("phantom", format="phantom")
    assert dataset.format == "phantom" and len(dataset.patients) == 1
