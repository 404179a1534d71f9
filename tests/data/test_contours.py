import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvseg.data.contours import (
    fill_contour,
    mask_to_contour,
    parse_contour,
    read_contour,
    write_contour,
)
from lvseg.errors import InvalidInputError


def test_parse_reads_x_y_pairs_and_ignores_blank_lines():
    points = parse_contour("1.5 2.0\n\n3 4\n5.25 6\n", "c.txt")
    np.testing.assert_array_equal(points, [[1.5, 2.0], [3, 4], [5.25, 6]])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 2\n3 4\n", "at least 3 points, found 2"),
        ("1 2\n3 four\n5 6\n", "line 2: expected two numbers"),
        ("1 2 3\n3 4\n5 6\n", "line 1: expected two numbers"),
        ("1 2\nnan 4\n5 6\n", "line 2: coordinate is not finite"),
        ("", "found 0"),
        ("1 1\n2 2\n3 3\n4 4\n", "encloses no area: its points are collinear"),
        ("5 5\n5 5\n5 5\n", "encloses no area"),
    ],
)
def test_malformed_contours_name_file_and_problem(text, message):
    with pytest.raises(InvalidInputError, match=message) as raised:
        parse_contour(text, "dir/IM-0001-0048-icontour-manual.txt")
    assert str(raised.value).startswith("dir/IM-0001-0048-icontour-manual.txt: ")


def test_points_outside_the_image_are_refused():
    with pytest.raises(InvalidInputError, match=r"point \(300, 5\) lies outside the 256x256"):
        parse_contour("10 5\n300 5\n20 30\n", "c.txt", image_shape=(256, 256))
    # The far edge of the last pixel is still inside: coordinates address pixel corners.
    parse_contour("0 0\n256 0\n0 256\n", "c.txt", image_shape=(256, 256))


def test_unreadable_contour_file(tmp_path):
    with pytest.raises(InvalidInputError, match="cannot read contour file"):
        read_contour(tmp_path / "missing.txt")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(InvalidInputError, match="cannot read contour file"):
        read_contour(binary)


def test_fill_convention_includes_centres_inside_and_on_the_outline():
    # A square (1,1)..(3,3) in corner coordinates: centres inside plus the outline, a 3x3 block.
    mask = fill_contour(np.array([[1, 1], [3, 1], [3, 3], [1, 3]], float), (5, 6))
    expected = np.zeros((5, 6), bool)
    expected[1:4, 1:4] = True
    np.testing.assert_array_equal(mask, expected)
    # x is the column, y the row.
    wide = fill_contour(np.array([[0, 0], [4, 0], [4, 1], [0, 1]], float), (5, 6))
    assert wide[:2, :5].all() and wide.sum() == 10


def test_written_contour_refills_to_the_same_mask(tmp_path):
    yy, xx = np.mgrid[:64, :64]
    mask = (yy - 30) ** 2 / 15**2 + (xx - 34) ** 2 / 11**2 <= 1
    path = tmp_path / "IM-0001-0001-icontour-manual.txt"
    write_contour(path, mask_to_contour(mask))
    refilled = fill_contour(read_contour(path, mask.shape), mask.shape)
    np.testing.assert_array_equal(refilled, mask)
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file is left behind"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="ascii"), max_size=300))
def test_random_contour_text_raises_only_the_documented_error(text):
    try:
        points = parse_contour(text, "random.txt", image_shape=(64, 64))
    except InvalidInputError as error:
        assert "\n" not in str(error)
        return
    assert points.shape[1] == 2 and len(points) >= 3
    assert fill_contour(points, (64, 64)).shape == (64, 64)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_random_contour_bytes_raise_only_the_documented_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("contour") / "IM-0001-0001-icontour-manual.txt"
    path.write_bytes(data)
    try:
        read_contour(path, (64, 64))
    except InvalidInputError:
        pass


@pytest.mark.parametrize("seed", range(20))
def test_contour_round_trip_is_exact_for_random_blobs(seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:96, :96]
    angle = np.arctan2(yy - 48, xx - 47)
    radius = rng.uniform(6, 30) * (
        1 + 0.15 * np.sin(rng.integers(2, 6) * angle + rng.uniform(0, 6))
    )
    mask = np.hypot(yy - 48, (xx - 47) * rng.uniform(0.6, 1.4)) <= radius
    np.testing.assert_array_equal(fill_contour(mask_to_contour(mask), mask.shape), mask)
