"""The tables of run.db (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`), and the check that
an opened file holds them.

- ``meta(key, value)``: JSON values (model, created, lvseg_version, host, device, ...).
- ``status(id, time, status, message)``: the history of status changes; the last row is current.
- ``steps(step PRIMARY KEY, epoch, time, metrics)``: one row per optimiser step.
- ``epochs(epoch PRIMARY KEY, time, metrics)``: one row per epoch.
- ``checkpoints(id, kind, path, epoch, step, metrics, parameters, size_bytes, finite, time)``.
- ``events(id AUTOINCREMENT, time, kind, message, step, epoch, data)``: ids are never reused.
- ``layer_series(id, layer, stat)`` and ``layer_stats(step, series, value)``, keyed by
  ``(step, series)`` so a "since step" query is a range scan.
- ``histograms(step, layer, counts)``: gradient histograms, counts over the fixed bin edges kept
  in ``meta["histogram_edges"]``.
- ``watch(epoch, slice, kind, png, data)``: the watch slices' pictures (input image, prediction,
  CAM) as PNG bytes, one per epoch, slice and kind, with JSON facts (Dice, CAM range, patient).

``metrics`` and ``data`` columns hold JSON objects in Python's dialect, where non-finite floats are
written ``NaN``, ``Infinity`` and ``-Infinity``, so they round-trip exactly through
:func:`json.loads` (and SQLite >= 3.42 JSON functions). ``layer_stats.value`` is a plain REAL;
SQLite stores NaN as NULL there, which the store reads back as NaN. Times are Unix seconds.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from lvseg.errors import InvalidInputError
from lvseg.runs.store.errors import CorruptRunError, raise_database_error

SCHEMA_VERSION = 2
"""2 added the histograms and watch tables; an older run database is refused as out of date."""

SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE status (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    status TEXT NOT NULL,
    message TEXT
);
CREATE TABLE steps (
    step INTEGER PRIMARY KEY,
    epoch INTEGER NOT NULL,
    time REAL NOT NULL,
    metrics TEXT NOT NULL
);
CREATE TABLE epochs (
    epoch INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    metrics TEXT NOT NULL
);
CREATE TABLE checkpoints (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    step INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    parameters INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    finite INTEGER NOT NULL,
    time REAL NOT NULL
);
CREATE UNIQUE INDEX checkpoints_kind_path ON checkpoints (kind, path);
CREATE UNIQUE INDEX checkpoints_single ON checkpoints (kind) WHERE kind IN ('last', 'best');
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    step INTEGER,
    epoch INTEGER,
    data TEXT NOT NULL
);
CREATE INDEX events_kind ON events (kind, id);
CREATE INDEX events_step ON events (step);
CREATE TABLE layer_series (
    id INTEGER PRIMARY KEY,
    layer TEXT NOT NULL,
    stat TEXT NOT NULL,
    UNIQUE (layer, stat)
);
CREATE TABLE layer_stats (
    step INTEGER NOT NULL,
    series INTEGER NOT NULL REFERENCES layer_series (id),
    value REAL,
    PRIMARY KEY (step, series)
) WITHOUT ROWID;
CREATE TABLE histograms (
    step INTEGER NOT NULL,
    layer TEXT NOT NULL,
    counts TEXT NOT NULL,
    PRIMARY KEY (step, layer)
);
CREATE TABLE watch (
    epoch INTEGER NOT NULL,
    slice INTEGER NOT NULL,
    kind TEXT NOT NULL,
    png BLOB NOT NULL,
    data TEXT NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (epoch, slice, kind)
) WITHOUT ROWID;
"""
TABLES = frozenset(re.findall(r"^CREATE TABLE (\w+)", SCHEMA, re.MULTILINE))


def create_tables(connection: sqlite3.Connection) -> None:
    """Make every table and index of a new run database (inside the caller's transaction)."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            connection.execute(statement)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def check_schema(database: Path, connection: sqlite3.Connection) -> None:
    """Refuse a file that is not a run database of this lvseg's :data:`SCHEMA_VERSION`: a newer
    or older version is one line saying what to do, no schema or a missing table is a
    :class:`CorruptRunError`."""
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    except sqlite3.Error as error:
        raise_database_error(database, error)
    if version > SCHEMA_VERSION:
        raise InvalidInputError(
            database,
            f"run database schema version {version} is newer than this lvseg supports "
            f"({SCHEMA_VERSION}); upgrade lvseg",
        )
    if version < 1:
        raise CorruptRunError(database, "no lvseg schema")
    if version < SCHEMA_VERSION:
        raise InvalidInputError(
            database,
            f"run database schema version {version} is older than this lvseg's "
            f"({SCHEMA_VERSION}): it was written by an lvseg before 0.1.0; retrain the run",
        )
    missing = TABLES - tables
    if missing:
        raise CorruptRunError(database, f"missing tables {', '.join(sorted(missing))}")
