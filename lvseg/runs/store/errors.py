"""What a SQLite error on a run database means, as one line naming run.db.

A damaged file (``database disk image is malformed``, not a database, missing tables) or a row
that is not JSON is a :class:`CorruptRunError`, whose message says that ``lvseg train --resume``
rebuilds the database from the run's last checkpoint; a database another process holds locked is
a :class:`RunLockedError`. A full disk is left as SQLite's own ``sqlite3.OperationalError:
database or disk is full``, which the CLI reports in one line; the transaction that hit it is
rolled back, so the database stays whole.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import NoReturn

from lvseg.errors import InvalidInputError


class CorruptRunError(InvalidInputError):
    """A run database that is damaged, not a database, or holds a row that is not JSON."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        super().__init__(
            path,
            f"corrupt run database: {problem} (lvseg train --resume --out RUN keeps it aside "
            "and rebuilds it from the run's last checkpoint)",
        )
        self.problem = " ".join(str(problem).split())


class RunLockedError(InvalidInputError):
    """A run database another process holds locked: not damaged, try again later."""

    def __init__(self, path: str | Path | None) -> None:
        super().__init__(
            path,
            "run database is locked by another process; try again once it lets go of it",
        )


_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 5, 6, 11, 13, 26


def raise_database_error(database: Path, error: sqlite3.Error) -> NoReturn:
    """Raise what a SQLite error on ``database`` means (:func:`database_error`)."""
    converted = database_error(database, error)
    if converted is error:
        raise error
    raise converted from error


def database_error(database: Path, error: sqlite3.Error) -> Exception:
    """The error to raise for a SQLite error on ``database``: :class:`RunLockedError`,
    :class:`CorruptRunError`, SQLite's own error for a full disk (the CLI reports it), or one
    :class:`InvalidInputError` line for any other failure of the file; other errors (a closed
    connection, a programming error) are returned as they are."""
    code = getattr(error, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    text = str(error)
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) or (primary is None and "locked" in text):
        return RunLockedError(database)
    if primary == _SQLITE_FULL or "is full" in text:
        return error
    if (
        primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
        or type(error) is sqlite3.DatabaseError
        or "malformed" in text
        or "not a database" in text
    ):
        return CorruptRunError(database, text)
    if isinstance(error, sqlite3.OperationalError):
        return InvalidInputError(database, f"cannot use run database: {text}")
    return error
