"""The workspace's folders, and path confinement: every path a request names resolves inside
the workspace or an allowed folder, or is refused in one line naming it."""

from __future__ import annotations

import os

import pytest

from lvseg.errors import InvalidInputError
from lvseg.workbench.workspace import Workspace, resolve_inside


@pytest.fixture
def space(tmp_path):
    return Workspace.open(tmp_path / "ws")


def test_opening_makes_the_folders(space):
    for folder in (space.datasets, space.runs, space.exports, space.logs):
        assert folder.is_dir()
    assert space.database.parent == space.root


def test_a_path_inside_resolves(space):
    (space.datasets / "acdc").mkdir()
    assert space.resolve("datasets/acdc") == space.datasets / "acdc"
    assert space.resolve(space.datasets / "acdc") == space.datasets / "acdc"
    assert space.resolve("datasets/not-yet") == space.datasets / "not-yet"


@pytest.mark.parametrize("path", ["../outside", "datasets/../../outside", "datasets/../.."])
def test_traversal_is_refused(space, path):
    with pytest.raises(InvalidInputError) as error:
        space.resolve(path)
    assert str(error.value) == f"{path}: outside the workspace and the allowed folders"
    assert "\n" not in str(error.value)


def test_an_absolute_path_elsewhere_is_refused(space, tmp_path):
    with pytest.raises(InvalidInputError, match="outside the workspace"):
        space.resolve(tmp_path / "elsewhere")
    with pytest.raises(InvalidInputError, match="^/etc/passwd: outside"):
        space.resolve("/etc/passwd")


def test_a_symlink_that_points_out_is_refused(space, tmp_path):
    outside = tmp_path / "secret"
    outside.mkdir()
    (space.datasets / "link").symlink_to(outside)
    with pytest.raises(InvalidInputError, match="datasets/link/x: outside"):
        space.resolve("datasets/link/x")
    # A symlink that stays inside is fine: it is where it leads that counts.
    (space.datasets / "real").mkdir()
    (space.datasets / "alias").symlink_to(space.datasets / "real")
    assert space.resolve("datasets/alias") == space.datasets / "real"


def test_an_allowed_folder_is_inside(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    space = Workspace.open(tmp_path / "ws", allowed=[shared])
    assert space.resolve(shared / "data") == shared.resolve() / "data"
    with pytest.raises(InvalidInputError):
        space.resolve(tmp_path / "sharedx")  # a prefix of the name is not inside


def test_an_allowed_root_must_exist(tmp_path):
    with pytest.raises(InvalidInputError, match="an allowed root must be an existing folder"):
        Workspace.open(tmp_path / "ws", allowed=[tmp_path / "missing"])


def test_odd_paths_are_one_line(space):
    with pytest.raises(InvalidInputError) as error:
        space.resolve("../a\nb")
    assert "\n" not in str(error.value)
    with pytest.raises(InvalidInputError, match="not a usable path"):
        space.resolve("datasets/a\0b")


def test_a_symlink_loop_is_refused(space):
    loop = space.datasets / "loop"
    os.symlink(loop, loop)
    with pytest.raises(InvalidInputError):
        space.resolve("datasets/loop/x")


def test_resolve_inside_takes_relative_paths_from_the_first_root(tmp_path):
    assert resolve_inside("a/b", [tmp_path]) == tmp_path.resolve() / "a" / "b"
    with pytest.raises(InvalidInputError):
        resolve_inside("a", [tmp_path], base=tmp_path.parent)
