"""Single slice files as inputs: an image with its Labels/ partner, a bare DICOM, bad paths."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lvseg.data.inputs import is_dicom_file, read_inputs, read_single_slice
from lvseg.data.records import LV
from lvseg.errors import InvalidInputError


def test_an_image_under_images_finds_its_mask_under_labels(tmp_path):
    (tmp_path / "Images" / "part").mkdir(parents=True)
    (tmp_path / "Labels" / "part").mkdir(parents=True)
    image = np.zeros((16, 16), np.uint8)
    image[4:8, 4:8] = 200
    Image.fromarray(image).save(tmp_path / "Images" / "part" / "SC-N-02-IM-0001-0048.dcm.png")
    Image.fromarray((image > 0).astype(np.uint8) * 255).save(
        tmp_path / "Labels" / "part" / "SC-N-02-IM-0001-0048.dcm.png"
    )
    record = read_single_slice(tmp_path / "Images" / "part" / "SC-N-02-IM-0001-0048.dcm.png")
    assert record.patient_id == "SC-N-02"
    assert int(record.masks[LV].sum()) == 16 and record.image.dtype == np.float32
    # instance 48 of a 20-phase cine: slice 2, phase 7 (0-based)
    assert (record.slice_index, record.phase_index) == (2, 7)

    lone = tmp_path / "lone.png"
    Image.fromarray(image).save(lone)
    record = read_single_slice(lone)
    assert record.masks == {} and record.patient_id == "lone.png"
    assert not is_dicom_file(lone)


def test_a_bare_dicom_slice_keeps_its_pixel_spacing(sunnybrook_dicom):
    path = next(iter(sorted((sunnybrook_dicom / "dicoms").rglob("*.dcm"))))
    assert is_dicom_file(path)
    record = read_single_slice(path)
    assert record.masks == {} and record.image.ndim == 2
    assert record.pixel_spacing_mm is not None and min(record.pixel_spacing_mm) > 0


def test_read_inputs_refuses_missing_paths_and_empty_inputs(tmp_path):
    with pytest.raises(InvalidInputError, match="no such file or folder"):
        read_inputs([tmp_path / "absent.png"])
    with pytest.raises(InvalidInputError, match="no slices"):
        read_inputs([])
