"""Finding input files safely: regular files only, never a link out of the input folder.

Every reader that lists a folder goes through :func:`walk` (or :func:`regular_files`,
:func:`inside`), so the same three rules hold for all of them:

- **Regular files only.** A named pipe (FIFO), socket or device is never opened: reading a FIFO
  blocks until something writes to it, which for a reader means forever. ``Path.is_file`` is
  true only for regular files (after links), which is the test used.
- **Nothing outside the root.** A link (to a file or a folder) is followed only where its target
  resolves inside the input folder; ``loop -> ..`` or ``data -> /etc`` is skipped, so a reader
  never wanders into sibling folders.
- **Each folder once.** A link back to a folder already walked (a loop inside the root) is not
  entered again.

Hidden entries (names starting with ".") are skipped, as the readers always did. Standard
library only: :func:`os.walk` does the walking, these rules sit on top of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path


def inside(path: str | Path, root: str | Path) -> bool:
    """Whether ``path``, links followed, lies in ``root`` (links followed too), or is it."""
    try:
        target = os.path.realpath(path)
        base = os.path.realpath(root)
    except (OSError, RuntimeError, ValueError):  # RuntimeError: a link loop on older Pythons
        return False
    return target == base or target.startswith(base.rstrip(os.sep) + os.sep)


def is_input_file(path: str | Path, root: str | Path) -> bool:
    """A regular file (links followed) that lies inside ``root``: a file a reader may open."""
    try:
        return Path(path).is_file() and inside(path, root)
    except OSError:  # a name too long, a permission error on a parent
        return False


def walk(root: str | Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """``(folder, folder names, file names)`` for ``root`` and every folder below it, in sorted
    order, as :func:`os.walk` gives them (clear the folder names to prune); the file names are
    those of regular files inside ``root`` (module docstring), hidden ones left out."""
    root = Path(root)
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen or not inside(real, root):
            dirs.clear()
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names = [
            name
            for name in sorted(files)
            if not name.startswith(".") and is_input_file(os.path.join(folder, name), root)
        ]
        yield Path(folder), dirs, names


def regular_files(
    root: str | Path, keep: Callable[[str], bool] | None = None, *, recursive: bool = True
) -> list[Path]:
    """The files :func:`walk` finds under ``root`` (only ``root`` itself when not
    ``recursive``), sorted, whose name passes ``keep``."""
    found = []
    for folder, _, names in walk(root):
        found += [folder / name for name in names if keep is None or keep(name)]
        if not recursive:
            break
    return sorted(found)
