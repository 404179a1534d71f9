import doctest

import numpy as np
import pytest
from builders import write_dicom
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lvseg.data import dicom
from lvseg.errors import InvalidInputError


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


STACK_TAGS = (
    "InstanceNumber", "CardiacNumberOfImages", "ImagePositionPatient", "ImageOrientationPatient",
    "SliceLocation", "PixelSpacing", "SliceThickness", "SpacingBetweenSlices",
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@example(values={"InstanceNumber": b"12", "PixelSpacing": b"1.5\\1.25", "SliceLocation": b"-3"})
@given(
    values=st.dictionaries(
        st.sampled_from(STACK_TAGS),
        st.one_of(
            st.binary(max_size=24),
            st.sampled_from([b"NaN", b"inf", b"-Infinity", b"1e400", b"9" * 30, b"1\\2\\3"]),
        ),
    )
)
def test_any_bytes_in_the_stack_tags_read_as_a_value_in_range_or_none(values) -> None:
    """Whatever bytes a damaged or foreign file holds in the tags that place an image (stored
    raw, read back as each tag's own VR), SliceTags.of never raises, and each value it gives is
    finite and in range."""
    import pydicom
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import DataElement
    from pydicom.filebase import DicomBytesIO

    source = pydicom.Dataset()
    for name, raw in values.items():
        tag = tag_for_keyword(name)
        source[tag] = DataElement(tag, "OB", raw + b" " * (len(raw) % 2))
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = True, True
    pydicom.filewriter.write_dataset(buffer, source)
    parsed = pydicom.filereader.read_dataset(
        DicomBytesIO(buffer.getvalue()), is_implicit_VR=True, is_little_endian=True
    )
    place = dicom.SliceTags.of(parsed)
    if place.instance_number is not None:
        assert 1 <= place.instance_number <= dicom.MAX_INSTANCE
    if place.cardiac_images is not None:
        assert place.cardiac_images >= 1
    for value in (place.image_position, place.orientation, place.pixel_spacing):
        assert value is None or all(np.isfinite(value))
    for value in (place.slice_location, place.slice_thickness, place.slice_spacing):
        assert value is None or np.isfinite(value)
    assert place.pixel_spacing is None or min(place.pixel_spacing) > 0
    if values.get("InstanceNumber") == b"12":  # good values still read as they are
        assert place.instance_number == 12
        assert place.pixel_spacing == (1.5, 1.25) and place.slice_location == -3.0
