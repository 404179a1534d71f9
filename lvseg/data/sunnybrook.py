"""Sunnybrook Cardiac Data: DICOM cine series with expert contour text files.

Two layouts are read (see ``../shared/data/README.md``):

**Linked layout** (the 5-patient set, and what ``lvseg data phantom --format dicom`` writes)::

    ROOT/link.csv                                   patient_id,original_id[,group]
    ROOT/dicoms/<patient_id>/<N>.dcm                N = InstanceNumber
    ROOT/contourfiles/<original_id>/i-contours/IM-0001-NNNN-icontour-manual.txt
    ROOT/contourfiles/<original_id>/o-contours/IM-0001-NNNN-ocontour-manual.txt

**Cardiac Atlas Project layout** (the official download)::

    ROOT/SCD_DeidentifiedImages/SCD00000NN/CINESAX_NNN/IM-SSSS-NNNN.dcm
    ROOT/SCD_ManualContours/SC-XX-NN/contours-manual/IRCCI-expert/IM-0001-NNNN-{i,o,p1,p2}contour-manual.txt
    ROOT/scd_patientdata.csv                        PatientID,OriginalID,...,Pathology

The CSV (``scd_patientdata.csv``, exported from the spreadsheet of the download, or a
``link.csv``) maps the de-identified ids to the contour folders; the trailing number is compared
without zero padding (``SC-HF-I-1`` = ``SC-HF-I-01``). In a patient with several ``CINESAX_*``
series, the one holding the most images is the cine.

Conventions:

- Contour ``IM-0001-NNNN`` belongs to the image with InstanceNumber NNNN of the short-axis cine.
- Slice and phase from the instance number and the DICOM tags: with P = CardiacNumberOfImages
  (20 in Sunnybrook), slice = (N - 1) // P and phase = (N - 1) % P; the slice position is the
  ImagePositionPatient projected on the slice normal (SliceLocation where orientation is absent).
- Masks: LV blood pool = filled i-contour; myocardium = filled o-contour minus filled i-contour
  (rasterised as documented in :mod:`lvseg.data.contours`). Papillary contours (p1/p2) are not
  used: papillary muscles count as blood pool, as in the challenge.
- ED/ES: the two contoured phases of a patient, ED being the one with the larger LV area
  (:func:`lvseg.data.records.label_ed_es_by_area`).
- Patient ids are the original ids zero-padded to two digits (``SC-HF-I-01``), the names the PNG
  release uses, so the same patient has the same id in both.
- Group: a ``group`` column of the CSV, else a ``Pathology`` column, else the ``SC-<GROUP>-NN``
  pattern of the id (HF-I, HF-NI, HYP, N).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lvseg.data.contours import CONTOUR_NAME, fill_contour, read_contour
from lvseg.data.dicom import SliceTags, dicom_pixels, instance_number, read_dicom, tag
from lvseg.data.files import inside, regular_files
from lvseg.data.records import LV, MYOCARDIUM, Dataset, Geometry, SliceRecord, label_ed_es_by_area
from lvseg.errors import InvalidInputError, Skipped
from lvseg.progress import track

LINK_FILE = "link.csv"
CAP_PATIENT_FILE = "scd_patientdata.csv"
CAP_IMAGES, CAP_CONTOURS = "SCD_DeidentifiedImages", "SCD_ManualContours"
DEFAULT_PHASES = 20
ID_NUMBER = re.compile(r"^(?P<stem>.*?)-?(?P<number>\d+)$")
ID_GROUP = re.compile(r"^[A-Z]+-(?P<group>HF-I|HF-NI|HYP|N)-\d+$")
PATHOLOGY_GROUPS = {
    "heart failure with infarct": "HF-I",
    "heart failure without infarct": "HF-NI",
    "lv hypertrophy": "HYP",
    "hypertrophy": "HYP",
    "normal": "N",
}
CAP_IMAGE_NAME = re.compile(r"^IM-\d{4}-(?P<instance>\d{4})\.dcm$", re.IGNORECASE)


@dataclass
class _Patient:
    patient_id: str
    group: str | None
    images: dict[int, Path]
    """InstanceNumber -> DICOM file of the short-axis cine."""
    contours: dict[tuple[int, str], Path]
    """(InstanceNumber, 'i' | 'o') -> contour file."""


def looks_like(path: Path) -> bool:
    if not path.is_dir():
        return False
    linked = (path / LINK_FILE).is_file() and (path / "dicoms").is_dir()
    return linked or ((path / CAP_IMAGES).is_dir() and (path / CAP_CONTOURS).is_dir())


def read(path: str | Path, *, skip_invalid: bool = False) -> Dataset:
    """Read every contoured image of a Sunnybrook folder into a :class:`Dataset`."""
    root = Path(path)
    if not root.is_dir():
        raise InvalidInputError(root, "not a folder")
    if (root / LINK_FILE).is_file() and (root / "dicoms").is_dir():
        patients = _linked_patients(root)
    elif (root / CAP_IMAGES).is_dir() and (root / CAP_CONTOURS).is_dir():
        patients = _cap_patients(root)
    else:
        raise InvalidInputError(
            root,
            f"expected {LINK_FILE} + dicoms/ + contourfiles/, or {CAP_IMAGES}/ + {CAP_CONTOURS}/",
        )

    records: list[SliceRecord] = []
    skipped: list[Skipped] = []
    work = [(p, n) for p in patients for n in sorted({number for number, _ in p.contours})]
    for patient, instance in track(work, f"Reading {root.name}"):
        try:
            records.append(_read_instance(patient, instance))
        except InvalidInputError as error:
            if not skip_invalid:
                raise
            skipped.append(Skipped(error.path or "", error.reason))
    if not records:
        raise InvalidInputError(root, "no contoured images found")
    records.sort(key=lambda r: (r.patient_id, r.slice_index, r.phase_index))
    return Dataset(
        label_ed_es_by_area(records), format="sunnybrook", root=str(root), skipped=skipped
    )


def normalise_id(original_id: str) -> str:
    """``SC-HF-I-1`` -> ``SC-HF-I-01``: the trailing number zero-padded to two digits."""
    found = ID_NUMBER.match(original_id.strip())
    if not found or not found["stem"]:
        return original_id.strip()
    return f"{found['stem']}-{int(found['number']):02d}"


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            # Cells beyond the header's columns (DictReader's restkey None) are ignored.
            rows = [
                {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
                for row in csv.DictReader(stream)
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InvalidInputError(path, f"cannot read CSV ({type(error).__name__})") from None
    return rows


def _group(row: dict[str, str], patient_id: str) -> str | None:
    if row.get("group"):
        return row["group"]
    pathology = row.get("pathology", "").lower()
    if pathology in PATHOLOGY_GROUPS:
        return PATHOLOGY_GROUPS[pathology]
    found = ID_GROUP.match(patient_id)
    return found["group"] if found else None


def _id_columns(path: Path, rows: list[dict[str, str]], pairs: tuple[tuple[str, str], ...]):
    for image_column, contour_column in pairs:
        if rows and image_column in rows[0] and contour_column in rows[0]:
            return image_column, contour_column
    raise InvalidInputError(path, f"expected columns {pairs[0][0]},{pairs[0][1]}")


def _contour_files(folder: Path) -> dict[tuple[int, str], Path]:
    """Endo- and epicardial contour files below ``folder``, keyed by (instance, kind)."""
    found: dict[tuple[int, str], Path] = {}
    for file in regular_files(folder, lambda name: name.endswith("contour-manual.txt")):
        name = CONTOUR_NAME.match(file.name)
        if name and name["kind"] in ("i", "o"):
            found[(int(name["instance"]), name["kind"])] = file
    return found


def _folder_name(link: Path, line: int, column: str, value: str) -> str:
    """A link.csv id that names a folder: one plain name, nothing that walks elsewhere."""
    if not value or value in (".", "..") or any(c in value for c in "/\\\0") or ":" in value:
        raise InvalidInputError(
            link, f"line {line}: {column} {value[:40]!r} is not a plain folder name"
        )
    return value


def _linked_patients(root: Path) -> list[_Patient]:
    link = root / LINK_FILE
    rows = _read_csv(link)
    image_column, contour_column = _id_columns(link, rows, (("patient_id", "original_id"),))
    patients = []
    lines: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        image_id = _folder_name(link, line, image_column, row[image_column])
        contour_id = _folder_name(link, line, contour_column, row[contour_column])
        patient_id = normalise_id(contour_id)
        for key in (f"image {image_id}", f"patient {patient_id}"):
            if key in lines:
                raise InvalidInputError(
                    link, f"line {line}: {key} is listed twice (first on line {lines[key]})"
                )
            lines[key] = line
        folder = root / "dicoms" / image_id
        if not folder.is_dir() or not inside(folder, root):
            raise InvalidInputError(folder, f"image folder of {image_id} is missing")
        images = {}
        for file in regular_files(folder, lambda name: name.endswith(".dcm"), recursive=False):
            if file.stem.isdigit():
                images[int(file.stem)] = file
        contour_folder = root / "contourfiles" / contour_id
        contours = _contour_files(contour_folder) if inside(contour_folder, root) else {}
        patients.append(_Patient(patient_id, _group(row, patient_id), images, contours))
    return patients


def _cap_patients(root: Path) -> list[_Patient]:
    table = next((f for f in (root / CAP_PATIENT_FILE, root / LINK_FILE) if f.is_file()), None)
    if table is None:
        raise InvalidInputError(
            root,
            f"{CAP_PATIENT_FILE} (exported from the download's spreadsheet) is needed to match "
            f"{CAP_IMAGES} to {CAP_CONTOURS}",
        )
    rows = _read_csv(table)
    image_column, contour_column = _id_columns(
        table, rows, (("patientid", "originalid"), ("patient_id", "original_id"))
    )
    contour_folders = {
        normalise_id(folder.name): folder
        for folder in (root / CAP_CONTOURS).iterdir()
        if folder.is_dir() and inside(folder, root)
    }
    patients = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        patient_id = normalise_id(row[contour_column])
        contour_folder = contour_folders.get(patient_id)
        if contour_folder is None:
            continue  # a patient of the table that this download does not hold
        image_id = _folder_name(table, line, image_column, row[image_column])
        image_folder = root / CAP_IMAGES / image_id
        if not image_folder.is_dir() or not inside(image_folder, root):
            continue  # nor its images
        if patient_id in seen:
            raise InvalidInputError(
                table,
                f"line {line}: patient {patient_id} is listed twice (first on line "
                f"{seen[patient_id]})",
            )
        seen[patient_id] = line
        series = [
            s for s in image_folder.glob("CINESAX_*") if s.is_dir() and inside(s, image_folder)
        ]
        if not series:
            raise InvalidInputError(image_folder, "no CINESAX_* short-axis cine series")
        images: dict[int, Path] = {}
        dicoms = {
            s: regular_files(
                s, lambda name: CAP_IMAGE_NAME.match(name) is not None, recursive=False
            )
            for s in series
        }
        for folder in sorted(series, key=lambda s: (-len(dicoms[s]), s.name))[:1]:
            for file in dicoms[folder]:
                name = CAP_IMAGE_NAME.match(file.name)
                if name:
                    images[int(name["instance"])] = file
        expert = contour_folder / "contours-manual" / "IRCCI-expert"
        contours = _contour_files(expert if expert.is_dir() else contour_folder)
        patients.append(_Patient(patient_id, _group(row, patient_id), images, contours))
    if not patients:
        raise InvalidInputError(table, "no patient of this table has both images and contours")
    return patients


def _read_instance(patient: _Patient, instance: int) -> SliceRecord:
    endo_file = patient.contours.get((instance, "i"))
    epi_file = patient.contours.get((instance, "o"))
    contour_file = endo_file or epi_file
    if endo_file is None:
        raise InvalidInputError(epi_file, "epicardial contour without an endocardial contour")
    image_file = patient.images.get(instance)
    if image_file is None:
        raise InvalidInputError(contour_file, f"its image (instance {instance}) is missing")
    dicom = read_dicom(image_file)
    stored = tag(dicom, "InstanceNumber")
    if stored not in (None, "") and instance_number(stored) != instance:
        raise InvalidInputError(
            image_file, f"InstanceNumber is {str(stored)[:40]}, the file name says {instance}"
        )
    image = dicom_pixels(dicom, image_file)
    endocardium = fill_contour(read_contour(endo_file, image.shape), image.shape)
    masks = {LV: endocardium}
    annotation_sources = [str(endo_file)]
    if epi_file is not None:
        epicardium = fill_contour(read_contour(epi_file, image.shape), image.shape)
        masks[MYOCARDIUM] = epicardium & ~endocardium
        annotation_sources.append(str(epi_file))

    place = SliceTags.of(dicom)
    slice_index, phase_index = divmod(instance - 1, place.cardiac_images or DEFAULT_PHASES)
    spacing = place.pixel_spacing
    return SliceRecord(
        image=image,
        masks=masks,
        patient_id=patient.patient_id,
        source=str(image_file),
        geometry=Geometry(
            original_shape=image.shape,
            source_pixel_spacing_mm=spacing,
            image_position_mm=place.image_position,
            image_orientation=place.orientation,
        ),
        slice_index=slice_index,
        slice_position_mm=_slice_position(place),
        phase_index=phase_index,
        pixel_spacing_mm=spacing,
        slice_thickness_mm=place.slice_thickness,
        slice_spacing_mm=place.slice_spacing,
        group=patient.group,
        annotation_sources=tuple(annotation_sources),
    )


def _slice_position(place: SliceTags) -> float | None:
    if place.image_position is not None and place.orientation is not None:
        normal = np.cross(place.orientation[:3], place.orientation[3:])
        return float(np.dot(normal, place.image_position))
    return place.slice_location
