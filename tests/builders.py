"""Small builders and helpers for tests: DICOM files and Sunnybrook layouts made by code, not
blobs; the CLI runner; the links of an HTML page."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from lvseg.data.contours import mask_to_contour, write_contour


def invoke(*args, env: dict[str, str] | None = None):
    """Run the ``lvseg`` command line in-process; arguments may be paths or numbers."""
    from typer.testing import CliRunner

    from lvseg.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)


@contextmanager
def within(seconds: int):
    """Fail (TimeoutError) where the block runs longer than ``seconds``: a test of a hang must
    not hang the suite. SIGALRM interrupts even a blocking open() of a FIFO."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: it hangs")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class Links(HTMLParser):
    """Every src and href of a page, and the tags used."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.links.extend(value for name, value in attrs if name in ("src", "href") and value)


def page_links(text: str) -> list[str]:
    parser = Links()
    parser.feed(text)
    return parser.links


def write_dicom(path: Path, pixels: np.ndarray, instance: int, **tags) -> Path:
    """A minimal valid MR image: int16 pixels, spacing 1.5 mm, 20 phases per slice."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
    meta.TransferSyntaxUID = tags.pop("transfer_syntax", ExplicitVRLittleEndian)
    dicom = pydicom.Dataset()
    dicom.file_meta = meta
    dicom.SOPClassUID = MRImageStorage
    dicom.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dicom.Modality = "MR"
    dicom.PatientID = "TEST"
    dicom.InstanceNumber = instance
    dicom.Rows, dicom.Columns = pixels.shape
    dicom.PixelSpacing = [1.5, 1.5]
    dicom.SliceThickness = 8
    dicom.SpacingBetweenSlices = 10
    dicom.CardiacNumberOfImages = 20
    dicom.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    dicom.ImagePositionPatient = [0, 0, 10.0 * ((instance - 1) // 20)]
    dicom.SamplesPerPixel = 1
    dicom.PhotometricInterpretation = "MONOCHROME2"
    dicom.BitsAllocated = dicom.BitsStored = 16
    dicom.HighBit = 15
    dicom.PixelRepresentation = 1
    dicom.PixelData = pixels.astype("<i2").tobytes()
    for name, value in tags.items():
        setattr(dicom, name, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    dicom.save_as(path, enforce_file_format=True)
    return path


def plain_plan(spacing_mm: float | None, crop: int):
    """A preprocessing plan that leaves intensities alone: no clipping (the z-score keeps every
    image's extremes where they were) and linear resampling, so a threshold at the half-way
    level of an image is the edge of a bright disc on a dark ground."""
    from lvseg.data.preprocess import PreprocessPlan

    spacing = None if spacing_mm is None else (spacing_mm, spacing_mm)
    return PreprocessPlan(
        target_spacing_mm=spacing,
        crop_size=crop,
        jitter_px=0,
        clip_percentiles=(0.0, 100.0),
        image_order=1,
    )


def train_tiny_lvnet(data: Path, out: Path, epochs: int) -> Path:
    """A width-8 LVNet trained ``epochs`` epochs on ``data`` (a quarter of the patients held
    out), on the CPU and without the monitor: a real run directory, checkpoints and all. Its
    noise augmentation stays the ``robust`` recipe's: a handful of epochs of the default's
    stronger noise leaves a model this small too rough for the tests that need it to find a
    heart, and the tests should not move when the default recipe does."""
    from lvseg.config import TrainConfig
    from lvseg.train.engine import train

    config = TrainConfig.from_dict(
        {
            "data": {"path": str(data), "val_fraction": 0.25},
            "model": {"options": {"width": 8}},
            "augment": {"p_noise": 0.15, "noise_std_range": [0.0, 0.15]},
            "optim": {"epochs": epochs, "batch_size": 8},
            "runtime": {"device": "cpu"},
            "monitor": {"enabled": False},
        }
    )
    train(config, out)
    return out


def disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def linked_layout(root: Path, instances=(1, 9, 21, 29), size: int = 32) -> Path:
    """A one-patient Sunnybrook linked layout: ED (phase 0) and ES (phase 8) on two slices.

    ED is drawn larger than ES; every instance has an i-contour, ED ones an o-contour too.
    """
    (root / "link.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "link.csv").write_text("patient_id,original_id\nSCD0000101,SC-HF-I-1\n")
    contours = root / "contourfiles" / "SC-HF-I-1"
    for instance in instances:
        phase = (instance - 1) % 20
        radius = 8 if phase == 0 else 5
        lv = disc((size, size), (size / 2, size / 2), radius)
        pixels = np.where(lv, 800, 100).astype(np.int16)
        write_dicom(root / "dicoms" / "SCD0000101" / f"{instance}.dcm", pixels, instance)
        name = f"IM-0001-{instance:04d}"
        write_contour(contours / "i-contours" / f"{name}-icontour-manual.txt", mask_to_contour(lv))
        if phase == 0:
            epi = disc((size, size), (size / 2, size / 2), radius + 3)
            write_contour(
                contours / "o-contours" / f"{name}-ocontour-manual.txt", mask_to_contour(epi)
            )
    return root


def off_centre_phantom(root: Path, patients: int = 2, downscale: int = 4) -> Path:
    """Phantom patients in the Sunnybrook layout with the heart far from the image centre: each
    image gets twice its width of empty background on the right, so the image centre (where a
    centre crop falls) lies a whole image width from the heart. Only the frames the expert
    contours exist for are written (the slices contoured at both ED and ES, at those two
    phases), so the DICOM cine and the labelled dataset hold the same frames."""
    import dataclasses

    from lvseg.data import phantom
    from lvseg.data.phantom.write import write_dicom_patient

    lines = ["patient_id,original_id,group"]
    for index in range(patients):
        patient = phantom.generate_patient(index, 0, phases="ed_es", downscale=downscale)
        phases = (patient.ed_phase, patient.es_phase)
        keep = [
            s for s in range(patient.slices) if all((p, s) in patient.endocardium for p in phases)
        ]
        # Padding on the right leaves the top-left pixel, and so the DICOM positions and the
        # contour coordinates, where they were.
        pad = ((0, 0), (0, 0), (0, 0), (0, 2 * patient.shape[1]))
        arrays = {
            name: np.pad(getattr(patient, name)[:, keep], pad)
            for name in ("images", "lv", "myocardium", "rv")
        }
        contours = {
            name: {
                (p, k): getattr(patient, name)[(p, s)] for k, s in enumerate(keep) for p in phases
            }
            for name in ("endocardium", "epicardium")
        }
        patient = dataclasses.replace(
            patient,
            **arrays,
            **contours,
            slice_positions_mm=tuple(patient.slice_positions_mm[s] for s in keep),
            image_positions_mm=tuple(patient.image_positions_mm[s] for s in keep),
        )
        write_dicom_patient(patient, root)
        lines.append(f"{patient.patient_id},{patient.original_id},{patient.group}")
    (root / "link.csv").write_text("\n".join(lines) + "\n")
    return root
