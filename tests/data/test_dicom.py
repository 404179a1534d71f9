import doctest

import numpy as np
import pytest
from builders import write_dicom

from lvseg.data import dicom
from lvseg.data.errors import InvalidInputError


def test_doctests():
    assert doctest.testmod(dicom).failed == 0


def test_headers_only_reads_no_pixels_and_bad_files_are_one_line(tmp_path):
    path = write_dicom(tmp_path / "1.dcm", np.arange(12, dtype=np.int16).reshape(3, 4), 1)
    assert dicom.is_dicom_file(path)
    header = dicom.read_dicom(path, headers_only=True)
    assert "PixelData" not in header and dicom.pixel_spacing(header) == (1.5, 1.5)
    full = dicom.read_dicom(path)
    np.testing.assert_array_equal(dicom.dicom_pixels(full, path), np.arange(12).reshape(3, 4))
    with pytest.raises(InvalidInputError, match="has no pixel data"):
        dicom.dicom_pixels(header, path)
    (tmp_path / "x.dcm").write_bytes(b"not dicom")
    with pytest.raises(InvalidInputError, match="x.dcm: not a DICOM file"):
        dicom.read_dicom(tmp_path / "x.dcm")
