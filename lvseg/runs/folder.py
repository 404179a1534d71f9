"""The run folder as files: what a resume tidies up, and what ``lvseg train --overwrite`` may
replace.

- :func:`set_aside_database` renames a damaged ``run.db`` (with its ``-wal`` and ``-shm``
  files) to ``run.db.damaged-<time>``, so a resume can start a new one; nothing is deleted.
- :func:`remove_stale_temporaries` deletes the partial files a killed atomic write left behind
  (:mod:`lvseg.atomic` names them ``.NAME.XXXXXXXX.tmp``), and only those.
- :func:`check_replaceable_run` and :func:`replace_run` let ``--overwrite`` delete a folder only
  when every entry in it is one lvseg writes in a run folder, and no trainer is writing it.

Standard library only, like the store.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from lvseg import atomic, layout
from lvseg.errors import InvalidInputError
from lvseg.runs.store import CorruptRunError, RunStore

DAMAGED_SUFFIX = ".damaged-"
"""``run.db.damaged-<time>``: where a resume keeps a damaged run database (never deleted)."""
_RANDOM = r"[a-z0-9_]+"  # tempfile's random part (atomic_path uses mkstemp)
CHECKPOINT_TEMPORARY = re.compile(rf"^\.[^/]+\.pt\.{_RANDOM}\.tmp$")
"""A partial checkpoint: ``checkpoints/.last.pt.k3j_9x2a.tmp``."""
RUN_TEMPORARY = re.compile(
    rf"^\.({re.escape(layout.RUN_DATABASE)}|{re.escape(layout.RUN_CONFIG)})\.{_RANDOM}\.tmp"
    r"(-wal|-shm|-journal)?$"
)
"""A partial run database or config in the run folder: ``.run.db.k3j_9x2a.tmp``."""
DATABASE_SIDECARS = ("-wal", "-shm", "-journal")
"""The files SQLite keeps beside a database; they belong to it and move with it."""
RUN_FILES = frozenset(
    {layout.RUN_CONFIG, layout.RUN_DATABASE, layout.SELECTED}
    | {layout.RUN_DATABASE + suffix for suffix in DATABASE_SIDECARS}
)
TENSORBOARD = "tensorboard"
TENSORBOARD_FILE = "events.out.tfevents."


def set_aside_database(run_dir: str | Path) -> Path | None:
    """Rename ``run.db`` and its ``-wal``, ``-shm`` and ``-journal`` files to
    ``run.db.damaged-<time>`` (the pair still opens in SQLite); returns the new database path,
    or None when there was no run.db. Its companions move first: a stale ``-wal`` left beside
    a new run.db would be replayed into it."""
    run_dir = Path(run_dir)
    database = run_dir / layout.RUN_DATABASE
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = run_dir / f"{layout.RUN_DATABASE}{DAMAGED_SUFFIX}{stamp}"
    number = 1
    while any(Path(f"{aside}{suffix}").exists() for suffix in ("", *DATABASE_SIDECARS)):
        number += 1
        aside = run_dir / f"{layout.RUN_DATABASE}{DAMAGED_SUFFIX}{stamp}-{number}"
    for suffix in DATABASE_SIDECARS:
        companion = Path(f"{database}{suffix}")
        if companion.exists():
            os.replace(companion, f"{aside}{suffix}")
    if not database.exists():
        return None
    os.replace(database, aside)
    return aside


def stale_temporaries(run_dir: str | Path) -> list[Path]:
    """The partial files of interrupted atomic writes of the trainer: checkpoints in
    ``checkpoints/`` (:data:`CHECKPOINT_TEMPORARY`), run.db and config.json in the run folder
    (:data:`RUN_TEMPORARY`). Plain files only; nothing else matches."""
    run_dir = Path(run_dir)
    found = []
    for folder, pattern in (
        (run_dir / layout.CHECKPOINTS, CHECKPOINT_TEMPORARY),
        (run_dir, RUN_TEMPORARY),
    ):
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if pattern.match(entry.name) and entry.is_file() and not entry.is_symlink():
                found.append(entry)
    return found


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete :func:`stale_temporaries` and return them. Call it only where no other process
    writes the run (a resume, which has checked that)."""
    removed = []
    for path in stale_temporaries(run_dir):
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _foreign_entries(run_dir: Path) -> list[str]:
    """The entries of ``run_dir`` that lvseg does not write in a run folder."""
    foreign = []
    for entry in sorted(run_dir.iterdir()):
        name = entry.name
        if entry.is_symlink():
            foreign.append(name)
        elif entry.is_file():
            damaged = name.startswith(layout.RUN_DATABASE + DAMAGED_SUFFIX)
            if name not in RUN_FILES and not damaged and not RUN_TEMPORARY.match(name):
                foreign.append(name)
        elif name == layout.CHECKPOINTS and entry.is_dir():
            foreign += [
                f"{name}/{child.name}"
                for child in sorted(entry.iterdir())
                if child.is_symlink()
                or not child.is_file()
                or not (child.suffix == ".pt" or CHECKPOINT_TEMPORARY.match(child.name))
            ]
        elif name == TENSORBOARD and entry.is_dir():
            foreign += [
                f"{name}/{child.name}"
                for child in sorted(entry.iterdir())
                if child.is_symlink()
                or not child.is_file()
                or not child.name.startswith(TENSORBOARD_FILE)
            ]
        elif not (entry.is_dir() and atomic.written_by_lvseg(entry)):  # RUN/evaluation, ...
            foreign.append(name)
    return foreign


def check_replaceable_run(run_dir: str | Path, keep: Iterable[str | Path | None] = ()) -> None:
    """Refuse (one :class:`InvalidInputError` line naming the folder) to let ``--overwrite``
    replace ``run_dir`` unless it is missing, empty, or a training run lvseg wrote:

    - a file, a link, or a folder that is or holds the current folder or a path of ``keep``
      (the data it would train on);
    - a folder that is not a run, or holds anything lvseg does not write in a run folder
      (config.json, run.db and its companions, checkpoints/*.pt, selected.json, tensorboard/,
      folders lvseg marked as its output, partial and damaged files);
    - a run whose trainer is still running (on this machine) or whose database is locked.
    """
    run_dir = Path(run_dir)
    if run_dir.is_symlink():
        raise InvalidInputError(run_dir, "is a link: --overwrite replaces only a run folder")
    if run_dir.exists() and not run_dir.is_dir():
        raise InvalidInputError(run_dir, "exists and is not a folder")
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return
    target = run_dir.resolve()
    guarded = [("the current folder", Path.cwd())]
    guarded += [(f"the input {item}", Path(item)) for item in keep if item is not None]
    for what, guarded_path in guarded:
        if not guarded_path.exists():
            continue
        resolved = guarded_path.resolve()
        if resolved == target or target in resolved.parents:
            raise InvalidInputError(
                run_dir, f"holds {what}, which --overwrite would delete: choose another --out"
            )
    if not layout.looks_like_run(run_dir) and not (run_dir / layout.RUN_CONFIG).is_file():
        raise InvalidInputError(
            run_dir,
            "is not a training run: --overwrite replaces only a run lvseg wrote; "
            "choose another --out",
        )
    foreign = _foreign_entries(run_dir)
    if foreign:
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise InvalidInputError(
            run_dir,
            f"holds {shown}, which lvseg did not write: --overwrite replaces only a training run "
            "lvseg wrote; move them out or choose another --out",
        )
    if (run_dir / layout.RUN_DATABASE).is_file():
        try:
            with RunStore.open(run_dir, readonly=True) as store:
                pid = store.meta.get("pid")
                live = store.status == "running" and store.writer_alive() and pid != os.getpid()
        except CorruptRunError:
            return  # a damaged run may be replaced; a locked one may not (RunLockedError)
        if live:
            raise InvalidInputError(
                run_dir,
                f"is being trained right now (process {pid}): stop it before replacing it",
            )


def replace_run(run_dir: str | Path, keep: Iterable[str | Path | None] = ()) -> bool:
    """Delete the run in ``run_dir`` after :func:`check_replaceable_run`; returns whether there
    was one. The folder is first renamed to a hidden name beside it, so ``run_dir`` is never
    left half-deleted."""
    run_dir = Path(run_dir)
    check_replaceable_run(run_dir, keep)
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return False
    doomed = Path(tempfile.mkdtemp(dir=run_dir.parent, prefix=f".{run_dir.name}.", suffix=".tmp"))
    doomed.rmdir()
    os.replace(run_dir, doomed)
    shutil.rmtree(doomed)
    return True
