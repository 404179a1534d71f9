"""Writing the phantom: DICOM + contour files (Sunnybrook layout) or NIfTI (ACDC layout)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lvseg import atomic
from lvseg.data import contours
from lvseg.data.phantom.generate import (
    DEFAULT_PATIENTS,
    DEFAULT_SEED,
    MAX_PATIENTS,
    PHANTOM_VERSION,
    check_int,
    generate_patient,
)
from lvseg.data.phantom.overrides import check_contrast
from lvseg.data.phantom.patient import PHASES, PhantomPatient
from lvseg.data.records import LV, MYOCARDIUM, RV
from lvseg.errors import InvalidInputError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset as DicomDataset

ACDC_GROUPS = {"N": "NOR", "HF-I": "MINF", "HF-NI": "DCM", "HYP": "HCM"}
"""Phantom group -> the ACDC ``Group:`` written in NIfTI ``Info.cfg``."""
FORMATS = ("dicom", "nifti")
MANIFEST = "phantom.json"
DEFAULT_FORMAT = "dicom"
SERIES_DESCRIPTION = "CINE SAX lvseg phantom"
ACDC_LABELS = {RV: 1, MYOCARDIUM: 2, LV: 3}


def write_phantom(
    out_dir: str | Path,
    patients: int = DEFAULT_PATIENTS,
    seed: int = DEFAULT_SEED,
    format: str = DEFAULT_FORMAT,
    overwrite: bool = False,
    *,
    downscale: int = 1,
    contrast: str = "ssfp",
) -> Path:
    """Write the phantom in a real on-disk layout, atomically; returns the folder.

    ``format="dicom"``: the Sunnybrook layout (``link.csv``, ``dicoms/<patient_id>/<N>.dcm``,
    ``contourfiles/<original_id>/{i,o}-contours/``); ``format="nifti"``: the ACDC layout
    (``patientNNN/patientNNN_4d.nii.gz``, ED/ES frames with ``_gt`` labels, ``Info.cfg``). Both
    get a ``phantom.json`` manifest. A non-empty folder is refused unless ``overwrite``, and even
    then unless lvseg wrote it (:func:`lvseg.atomic.check_output_folder`).
    """
    check_int("patients", patients, 1, MAX_PATIENTS)
    check_int("seed", seed, 0, 2**63 - 1)
    check_int("downscale", downscale, 1, 8)
    if format not in FORMATS:
        raise InvalidInputError(None, f"unknown phantom format {format!r}; choose dicom or nifti")
    check_contrast(contrast)
    out_dir = Path(out_dir)
    atomic.check_output_folder(out_dir, overwrite)
    entries = []
    with atomic.output_folder(out_dir) as folder:
        link_lines = ["patient_id,original_id,group"]
        for index in range(patients):
            patient = generate_patient(index, seed, downscale=downscale, contrast=contrast)
            if format == "dicom":
                write_dicom_patient(patient, folder)
                link_lines.append(f"{patient.patient_id},{patient.original_id},{patient.group}")
                location = f"dicoms/{patient.patient_id}"
            else:
                location = _write_nifti_patient(patient, folder)
            entries.append(_manifest_entry(patient, location))
            del patient
        if format == "dicom":
            (folder / "link.csv").write_text("\n".join(link_lines) + "\n", encoding="utf-8")
        manifest = {
            "generator": "lvseg.data.phantom",
            "version": PHANTOM_VERSION,
            "seed": seed,
            "format": format,
            "downscale": downscale,
            "contrast": contrast,
            "phases": PHASES,
            "patients": entries,
        }
        (folder / MANIFEST).write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    return out_dir


def _manifest_entry(patient: PhantomPatient, location: str) -> dict[str, Any]:
    entry = {
        "index": patient.index,
        "patient_id": patient.patient_id,
        "original_id": patient.original_id,
        "nifti_id": f"patient{patient.index + 1:03d}",
        "location": location,
        "group": patient.group,
        "ed_phase": patient.ed_phase,
        "es_phase": patient.es_phase,
        "slices": patient.slices,
        "rows": patient.shape[0],
        "cols": patient.shape[1],
        "pixel_spacing_mm": list(patient.pixel_spacing_mm),
        "slice_thickness_mm": patient.slice_thickness_mm,
        "slice_spacing_mm": patient.slice_spacing_mm,
        "ejection_fraction": patient.ejection_fraction,
    }
    volumes = patient.label_volumes_ml()
    if volumes is not None and volumes[0] > 0:
        edv, esv = volumes
        entry |= {
            "label_edv_ml": round(edv, 2),
            "label_esv_ml": round(esv, 2),
            "label_ejection_fraction": round(1.0 - esv / edv, 4),
        }
    return entry


def _uid(patient: PhantomPatient, *parts: object) -> str:
    from pydicom.uid import generate_uid

    sources = ["lvseg-phantom", PHANTOM_VERSION, str(patient.seed), patient.patient_id]
    return generate_uid(entropy_srcs=sources + [str(p) for p in parts])


def write_dicom_patient(patient: PhantomPatient, folder: Path) -> None:
    """One patient's cine as DICOM files, and its ED/ES contours, in the Sunnybrook layout."""
    dicom_folder = folder / "dicoms" / patient.patient_id
    dicom_folder.mkdir(parents=True)
    uids = {name: _uid(patient, name) for name in ("study", "series", "frame-of-reference")}
    for s in range(patient.slices):
        for phase in patient.phase_indices:
            number = patient.instance_number(s, phase)
            ds = _dicom_instance(patient, uids, number)
            _set_image(ds, patient, s, phase)
            ds.save_as(dicom_folder / f"{number}.dcm", enforce_file_format=True)
    _write_contours(patient, folder / "contourfiles" / patient.original_id)


def _dicom_instance(patient: PhantomPatient, uids: dict[str, str], number: int) -> DicomDataset:
    """A DICOM MR image of the series with everything but the slice and phase's own tags
    (pydicom writes the elements in tag order, whatever the order they are set in)."""
    from pydicom.dataset import Dataset as DicomDataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, MRImageStorage

    sop_uid = _uid(patient, "instance", number)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "LVSEG_PHANTOM"
    ds = DicomDataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY", "CARDIAC"]
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20000101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.Modality = "MR"
    ds.Manufacturer = "lvseg"
    ds.StudyDescription = "lvseg synthetic cardiac MRI"
    ds.SeriesDescription = SERIES_DESCRIPTION
    ds.PatientName = patient.patient_id
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.PatientSize = f"{patient.height_cm / 100:.2f}"
    ds.PatientWeight = f"{patient.weight_kg:.1f}"
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = "SS"
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = _ds(patient.slice_thickness_mm)
    ds.SpacingBetweenSlices = _ds(patient.slice_spacing_mm)
    ds.MagneticFieldStrength = "1.5"
    ds.NominalInterval = str(int(round(60000.0 / patient.heart_rate_bpm)))
    ds.HeartRate = str(patient.heart_rate_bpm)
    ds.CardiacNumberOfImages = str(PHASES)
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.StudyID = "1"
    ds.SeriesNumber = "1"
    ds.AcquisitionNumber = "1"
    ds.InstanceNumber = str(number)
    ds.ImageOrientationPatient = [_ds(c) for c in patient.image_orientation]
    ds.FrameOfReferenceUID = uids["frame-of-reference"]
    ds.ImagesInAcquisition = str(patient.slices * PHASES)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = patient.shape
    ds.PixelSpacing = [_ds(c) for c in patient.pixel_spacing_mm]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    return ds


def _set_image(ds: DicomDataset, patient: PhantomPatient, s: int, phase: int) -> None:
    """The tags of slice ``s`` at ``phase``: its time, place, window and pixels."""
    ds.TriggerTime = _ds(patient.trigger_times_ms[phase])
    ds.ImagePositionPatient = [_ds(c) for c in patient.image_positions_mm[s]]
    ds.SliceLocation = _ds(patient.slice_positions_mm[s])
    pixels = patient.images[patient.row(phase), s].astype("<i2")
    ds.WindowCenter = _ds(float(np.percentile(pixels, 99)) / 2 + 1)
    ds.WindowWidth = _ds(float(np.percentile(pixels, 99)) + 2)
    ds.PixelData = pixels.tobytes()


def _write_contours(patient: PhantomPatient, contour_folder: Path) -> None:
    """The ED and ES endocardium (i) and epicardium (o) of every slice with an LV, as
    Sunnybrook contour files named after the image's instance number."""
    for phase in (patient.ed_phase, patient.es_phase):
        for s in range(patient.slices):
            if (phase, s) not in patient.endocardium:
                continue
            number = patient.instance_number(s, phase)
            for kind, polygons in (("i", patient.endocardium), ("o", patient.epicardium)):
                path = (
                    contour_folder
                    / f"{kind}-contours"
                    / (f"IM-0001-{number:04d}-{kind}contour-manual.txt")
                )
                path.parent.mkdir(parents=True, exist_ok=True)
                contours.write_contour(path, polygons[(phase, s)])


def _ds(value: float) -> str:
    """A DICOM decimal string (at most 16 characters)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _write_nifti_patient(patient: PhantomPatient, folder: Path) -> str:
    """One patient in the ACDC layout; returns its folder name."""
    name = f"patient{patient.index + 1:03d}"
    target = folder / name
    target.mkdir()
    affine = patient.affine()
    zooms = (patient.pixel_spacing_mm[1], patient.pixel_spacing_mm[0], patient.slice_spacing_mm)
    cine = patient.images.astype(np.int16).transpose(3, 2, 1, 0)  # -> [col, row, slice, phase]
    _write_nifti(target / f"{name}_4d.nii.gz", cine, affine, (*zooms, 1.0))
    for phase in (patient.ed_phase, patient.es_phase):
        i = patient.row(phase)
        frame = f"{name}_frame{phase + 1:02d}"
        _write_nifti(target / f"{frame}.nii.gz", cine[..., i], affine, zooms)
        labels = np.zeros(patient.images.shape[1:], np.uint8)
        labels[patient.rv[i]] = ACDC_LABELS[RV]
        labels[patient.myocardium[i]] = ACDC_LABELS[MYOCARDIUM]
        labels[patient.lv[i]] = ACDC_LABELS[LV]
        _write_nifti(target / f"{frame}_gt.nii.gz", labels.transpose(2, 1, 0), affine, zooms)
    info = (
        f"ED: {patient.ed_phase + 1}\n"
        f"ES: {patient.es_phase + 1}\n"
        f"Group: {ACDC_GROUPS[patient.group]}\n"
        f"Height: {patient.height_cm:.1f}\n"
        f"NbFrame: {PHASES}\n"
        f"Weight: {patient.weight_kg:.1f}\n"
    )
    (target / "Info.cfg").write_text(info, encoding="utf-8")
    return name


def _write_nifti(
    path: Path, data: np.ndarray, affine: np.ndarray, zooms: tuple[float, ...]
) -> None:
    """A gzipped NIfTI-1 file with a zero gzip timestamp, so the bytes are reproducible."""
    import nibabel as nib

    image = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    image.header.set_zooms(zooms)
    image.header.set_xyzt_units("mm", "sec")
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    image.header["descrip"] = b"lvseg phantom"
    path.write_bytes(gzip.compress(image.to_bytes(), compresslevel=1, mtime=0))
