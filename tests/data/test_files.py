"""What readers may open: regular files inside the input folder, each folder once
(:mod:`lvseg.data.files`), and the readers that go through it, on FIFOs and links."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from builders import invoke, linked_layout, within
from PIL import Image

from lvseg.data.files import inside, is_input_file, regular_files, walk


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ with a file, a FIFO, a hidden file, a sub-folder, a link to a sibling file outside
    the root, a link loop back to root, and a link to a folder inside the root."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "sub" / "b.txt").write_text("b")
    (root / ".hidden.txt").write_text("h")
    os.mkfifo(root / "pipe.txt")
    (tmp_path / "secret.txt").write_text("outside")
    (root / "out.txt").symlink_to(tmp_path / "secret.txt")
    (root / "loop").symlink_to(root)
    (root / "up").symlink_to("..")
    (root / "also-sub").symlink_to(root / "sub")
    (root / "in.txt").symlink_to(root / "a.txt")
    return root


def test_walk_finds_regular_files_inside_the_root_once(tree: Path) -> None:
    found = regular_files(tree)
    names = sorted(path.relative_to(tree).as_posix() for path in found)
    # The folder linked inside the root is walked once, under the name met first.
    assert names == ["a.txt", "also-sub/b.txt", "in.txt"]
    assert all(is_input_file(path, tree) for path in found)


def test_fifos_links_out_and_loops_are_not_input_files(tree: Path) -> None:
    assert not is_input_file(tree / "pipe.txt", tree)
    assert not is_input_file(tree / "out.txt", tree)
    assert not is_input_file(tree / "up" / "secret.txt", tree)
    assert not inside(tree / "up", tree)
    assert inside(tree / "loop", tree) and inside(tree, tree)
    assert regular_files(tree, recursive=False) == [tree / "a.txt", tree / "in.txt"]
    folders = [folder for folder, _, _ in walk(tree)]
    assert len(folders) == len({os.path.realpath(f) for f in folders}) == 2


def write_folders_dataset(root: Path) -> Path:
    for index in range(2):
        image = np.full((16, 16), 50, np.uint8)
        image[4:12, 4:12] = 200
        for folder, array in (("Images", image), ("Labels", (image > 100).astype(np.uint8))):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / folder / f"P1-IM-0001-{index + 1:04d}.png")
    return root


def test_a_fifo_or_a_link_loop_in_an_input_folder_never_hangs_a_reader(tmp_path: Path) -> None:
    folders = write_folders_dataset(tmp_path / "folders")
    os.mkfifo(folders / "Images" / "P1-IM-0001-0003.png")
    (folders / "Images" / "loop").symlink_to("..")
    with within(30):
        result = invoke("data", "inspect", folders, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["slices"] == 2  # the FIFO is not an image, the loop no folder

    linked = linked_layout(tmp_path / "linked")
    os.mkfifo(linked / "dicoms" / "SCD0000101" / "99.dcm")
    contours = linked / "contourfiles" / "SC-HF-I-1" / "i-contours"
    os.mkfifo(contours / "IM-0001-0099-icontour-manual.txt")
    (linked / "dicoms" / "SCD0000101" / "loop").symlink_to("..")
    with within(30):
        result = invoke("data", "inspect", linked, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["slices"] == 4


def test_a_mask_linked_from_outside_the_labels_folder_is_not_read(tmp_path: Path) -> None:
    folders = write_folders_dataset(tmp_path / "folders")
    mask = folders / "Labels" / "P1-IM-0001-0001.png"
    outside = tmp_path / "elsewhere.png"
    mask.rename(outside)
    mask.symlink_to(outside)
    result = invoke("data", "inspect", folders)
    assert result.exit_code == 2
    assert "P1-IM-0001-0001.png: no mask at" in result.output and "Traceback" not in result.output
