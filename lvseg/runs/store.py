"""The run directory and its SQLite database: the one API that writes and reads a training run.

A run is a folder::

    runs/NAME/
      config.json     the exact config the run ran with (written once, atomically)
      run.db          SQLite in WAL mode: readable by other processes while training writes
      checkpoints/    last.pt, best.pt, ... (the trainer writes the files; the store records them)
      selected.json   written by model selection
      run.db.damaged-<time>   a damaged run.db a resume kept aside (:mod:`lvseg.runs.folder`)

The trainer and its probes write rows; the dashboard, ``lvseg runs`` listings, selection and
reports read them. This module uses the standard library only (no torch, no numpy), so a reader
starts fast on a machine without a GPU stack.

**One writer.** Only one process may write a run (rank 0 in distributed training). SQLite would
serialise two writers without corrupting the file, but their rows would interleave meaninglessly.
Any number of readers may open the run with ``readonly=True`` at the same time, from any process.

Schema (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`):

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

**Errors** are one line naming run.db (:class:`InvalidInputError` subclasses), never a SQLite
traceback: a damaged file (``database disk image is malformed``, not a database, missing
tables) or a row that is not JSON raises :class:`CorruptRunError`, whose message says that
``lvseg train --resume`` rebuilds the database from the run's last checkpoint; a database
another process holds locked raises :class:`RunLockedError`. Read-only stores wait at most
:data:`READ_BUSY_TIMEOUT_S` for a lock (a WAL reader is never blocked by the trainer, so a
lock means something unusual holds the file), the writer :data:`BUSY_TIMEOUT_S`. A full disk
is left as SQLite's own ``sqlite3.OperationalError: database or disk is full``, which the CLI
reports in one line; the transaction that hit it is rolled back, so the database stays whole.

>>> import tempfile, pathlib
>>> run_dir = pathlib.Path(tempfile.mkdtemp()) / "demo"
>>> with RunStore.create(run_dir, {"lr": 0.001}, meta={"model": "lvnet"}) as store:
...     store.log_step(0, 0, loss=0.9, lr=0.001)
...     store.log_epoch(0, train_loss=0.8, val_dice=0.5)
>>> with RunStore.open(run_dir, readonly=True) as store:
...     [row["loss"] for row in store.steps()], store.status, store.config
([0.9], 'running', {'lr': 0.001})
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from lvseg import __version__, atomic, layout
from lvseg.errors import InvalidInputError

SCHEMA_VERSION = 2
"""2 added the histograms and watch tables; an older run database is refused as out of date."""

STATUSES = ("running", "finished", "stopped", "failed")
CHECKPOINT_KINDS = ("last", "best", "epoch")
SINGLE_CHECKPOINT_KINDS = ("last", "best")
BUSY_TIMEOUT_S = 5.0
"""How long the writer waits for a lock another connection holds."""
READ_BUSY_TIMEOUT_S = 0.25
"""How long a read-only store waits for a lock: a listing or the dashboard answers within a
second even when a run's database is held locked."""
DAMAGED_SUFFIX = ".damaged-"
"""``run.db.damaged-<time>``: where a resume keeps a damaged run database (never deleted)."""

_RESERVED_STEP_NAMES = frozenset({"step", "epoch", "time"})
_RESERVED_EPOCH_NAMES = frozenset({"epoch", "time"})

_SCHEMA = """
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
_TABLES = frozenset(
    {
        "meta",
        "status",
        "steps",
        "epochs",
        "checkpoints",
        "events",
        "layer_series",
        "layer_stats",
        "histograms",
        "watch",
    }
)


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


def _json_default(value: Any) -> Any:
    """Turn numpy and torch scalars (anything with ``.item()`` or ``__float__``) into numbers."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "__float__"):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not a number or JSON value")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def _check_names(metrics: dict[str, Any], reserved: frozenset[str]) -> None:
    clash = reserved.intersection(metrics)
    if clash:
        raise ValueError(f"metric names {sorted(clash)} are reserved")
    for name, value in metrics.items():
        if isinstance(value, (str, bytes)):
            raise TypeError(f"metric {name!r} must be a number, got {value!r}")


def _name_set(names: Iterable[str] | None) -> set[str] | None:
    if names is None:
        return None
    return {names} if isinstance(names, str) else set(names)


def _relative_path(run_dir: Path, path: str | Path) -> str:
    path = Path(path)
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(run_dir.resolve())
        except ValueError:
            raise ValueError(f"checkpoint {path} is not inside the run folder {run_dir}") from None
    return path.as_posix()


class RunStore:
    """One run directory: its config, its database and the records of its checkpoints.

    Make one with :meth:`create` (a new run) or :meth:`open` (resume, or read). Every public
    write is one transaction; methods may be called from several threads of one process.
    """

    def __init__(self, run_dir: Path, connection: sqlite3.Connection, *, readonly: bool) -> None:
        """Use :meth:`create` or :meth:`open`; this wraps an already checked connection."""
        self.path = run_dir
        self.readonly = readonly
        self._connection: sqlite3.Connection | None = connection
        self._lock = threading.RLock()
        self._config: dict[str, Any] | None = None
        self._series_ids: dict[tuple[str, str], int] = {}

    # ------------------------------------------------------------------ opening and closing

    @classmethod
    def create(
        cls, run_dir: str | Path, config: dict[str, Any], *, meta: dict[str, Any] | None = None
    ) -> RunStore:
        """Start a new run in ``run_dir``: write config.json, the schema, meta and "running".

        Refuses (:class:`InvalidInputError`) a folder that already holds a run.db; open that
        run to resume it instead. The database is built beside run.db and renamed into place,
        so a crash during creation leaves no half-made run.
        """
        run_dir = Path(run_dir)
        database = run_dir / layout.RUN_DATABASE
        if database.exists():
            raise InvalidInputError(database, "a run already exists here; resume it instead")
        if not isinstance(config, dict):
            raise TypeError(f"a run config is a dict, not {type(config).__name__}")
        config_text = json.dumps(config, indent=2, default=_json_default) + "\n"
        now = time.time()
        record = {
            "created": now,
            "lvseg_version": __version__,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "python": platform.python_version(),
            **(meta or {}),
        }
        meta_rows = [(key, _dumps(value)) for key, value in record.items()]
        (run_dir / layout.CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        atomic.write_text(run_dir / layout.RUN_CONFIG, config_text)

        def build(temporary: Path) -> None:
            temporary.unlink(missing_ok=True)  # mkstemp made an empty file; SQLite would accept it
            connection = sqlite3.connect(temporary, isolation_level=None)
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta_rows)
                connection.execute(
                    "INSERT INTO status (time, status, message) VALUES (?, 'running', NULL)",
                    (now,),
                )
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                connection.execute("COMMIT")
            finally:
                connection.close()

        if database.exists():  # best effort against a concurrent create; one writer is the rule
            raise InvalidInputError(database, "a run already exists here; resume it instead")
        atomic.write_with(database, build)
        return cls.open(run_dir)

    @classmethod
    def open(cls, run_dir: str | Path, *, readonly: bool = False) -> RunStore:
        """Open an existing run; ``readonly`` readers never block, nor are blocked by, the writer.

        A missing folder, a missing run.db or one that is not an lvseg run database raises
        :class:`InvalidInputError` naming the path and the problem (:class:`CorruptRunError`
        for a damaged file, :class:`RunLockedError` for one another process holds locked). A
        read-only store waits :data:`READ_BUSY_TIMEOUT_S` for a lock, the writer
        :data:`BUSY_TIMEOUT_S`.
        """
        run_dir = Path(run_dir)
        if run_dir.name == layout.RUN_DATABASE and run_dir.is_file():
            run_dir = run_dir.parent
        database = run_dir / layout.RUN_DATABASE
        if not run_dir.is_dir():
            raise InvalidInputError(run_dir, "no such run folder")
        if not database.is_file():
            raise InvalidInputError(run_dir, f"not an lvseg run: no {layout.RUN_DATABASE}")
        timeout = READ_BUSY_TIMEOUT_S if readonly else BUSY_TIMEOUT_S
        try:
            if readonly:
                uri = f"{database.resolve().as_uri()}?mode=ro"
                connection = sqlite3.connect(
                    uri,
                    uri=True,
                    isolation_level=None,
                    timeout=timeout,
                    check_same_thread=False,
                )
            else:
                connection = sqlite3.connect(
                    database, isolation_level=None, timeout=timeout, check_same_thread=False
                )
        except sqlite3.Error as error:
            raise InvalidInputError(database, f"cannot open run database: {error}") from error
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            cls._check_schema(database, connection)
            if not readonly:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
        except InvalidInputError:
            connection.close()
            raise
        except sqlite3.Error as error:
            connection.close()
            raise_database_error(database, error)
        return cls(run_dir, connection, readonly=readonly)

    @staticmethod
    def _check_schema(database: Path, connection: sqlite3.Connection) -> None:
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
        missing = _TABLES - tables
        if missing:
            raise CorruptRunError(database, f"missing tables {', '.join(sorted(missing))}")

    def close(self) -> None:
        """Close the database; closing twice is harmless."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "readonly" if self.readonly else "writer"
        return f"RunStore({str(self.path)!r}, {mode})"

    # ------------------------------------------------------------------ plumbing

    @property
    def database_path(self) -> Path:
        return self.path / layout.RUN_DATABASE

    @property
    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError(f"{self.path}: run store is closed")
        return self._connection

    @property
    def busy_timeout_s(self) -> float:
        """How long this store waits for a lock another connection holds, in seconds."""
        return self._query("PRAGMA busy_timeout")[0][0] / 1000

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front. A SQLite error
        rolls it back and is raised as :func:`database_error` says."""
        if self.readonly:
            raise PermissionError(f"{self.path}: run store opened read-only")
        with self._lock:
            connection = self._db
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise_database_error(self.database_path, error)
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException as error:
                if connection.in_transaction:
                    try:
                        connection.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # a damaged or full file: SQLite rolls back on close
                if isinstance(error, sqlite3.Error):
                    raise_database_error(self.database_path, error)
                raise

    def _query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, parameters).fetchall()
            except sqlite3.Error as error:
                raise_database_error(self.database_path, error)

    @contextmanager
    def _decoding(self, table: str) -> Iterator[None]:
        """Rows of ``table`` are turned into Python here: one that is not a JSON object (a
        damaged or hand-edited row) is a :class:`CorruptRunError`, not a traceback."""
        try:
            yield
        except (ValueError, TypeError) as error:
            raise CorruptRunError(
                self.database_path, f"a row of {table} is not valid JSON ({error})"
            ) from None

    def check_integrity(self) -> None:
        """Read every page (``PRAGMA quick_check``); a damaged file raises
        :class:`CorruptRunError` naming the first problem. Resuming runs this once."""
        problems = [row[0] for row in self._query("PRAGMA quick_check")]
        if problems != ["ok"]:
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise CorruptRunError(self.database_path, f"{problems[0]}{more}")

    # ------------------------------------------------------------------ config, meta, status

    @property
    def config(self) -> dict[str, Any]:
        """The config the run ran with, read from config.json."""
        if self._config is None:
            path = self.path / layout.RUN_CONFIG
            try:
                config = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise InvalidInputError(path, "run has no config file") from None
            except (OSError, ValueError) as error:
                raise InvalidInputError(path, f"unreadable run config: {error}") from error
            if not isinstance(config, dict):
                raise InvalidInputError(path, "run config is not a JSON object")
            self._config = config
        return self._config

    @property
    def meta(self) -> dict[str, Any]:
        """Facts about the run: model, created, lvseg_version, host, device, ..."""
        rows = self._query("SELECT key, value FROM meta")
        with self._decoding("meta"):
            return {key: json.loads(value) for key, value in rows}

    def set_meta(self, **items: Any) -> None:
        """Add or replace meta entries: ``store.set_meta(device="cuda:0", parameters=91_000)``."""
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(key, _dumps(value)) for key, value in items.items()],
            )

    @property
    def status(self) -> str:
        """The current status: running, finished, stopped or failed."""
        return self._last_status()[0]

    @property
    def status_message(self) -> str | None:
        """Why the run reached its current status, if the writer said."""
        return self._last_status()[1]

    def _last_status(self) -> tuple[str, str | None]:
        rows = self._query("SELECT status, message FROM status ORDER BY id DESC LIMIT 1")
        if not rows:
            return "running", None
        status, message = rows[0]
        if status not in STATUSES or not (message is None or isinstance(message, str)):
            # A damaged page can leave a row that reads, with a value no writer wrote.
            raise CorruptRunError(
                self.database_path, f"the last status row holds {str(status)[:40]!r}"
            )
        return status, message

    def writer_alive(self) -> bool | None:
        """Whether the process that writes this run still runs: None where that cannot be told
        (another host, or no pid recorded). The trainer records its host and pid in meta when
        it creates or resumes a run."""
        meta = self.meta
        pid, host = meta.get("pid"), meta.get("host")
        if not isinstance(pid, int) or host != socket.gethostname():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process: alive
            return True
        return True

    @property
    def live_status(self) -> str:
        """:attr:`status`, except that a "running" run whose writer is known to be gone (killed,
        crashed machine) reads "interrupted": it can be resumed with ``--resume``."""
        status = self.status
        if status == "running" and self.writer_alive() is False:
            return "interrupted"
        return status

    def set_status(self, status: str, message: str | None = None) -> None:
        """Record a status change; "stopped" means early stopping or the user stopped it."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        with self._write() as db:
            db.execute(
                "INSERT INTO status (time, status, message) VALUES (?, ?, ?)",
                (time.time(), status, message),
            )

    def status_history(self) -> list[dict[str, Any]]:
        """Every status the run has had, oldest first."""
        rows = self._query("SELECT time, status, message FROM status ORDER BY id")
        return [{"time": t, "status": s, "message": m} for t, s, m in rows]

    # ------------------------------------------------------------------ steps and epochs

    def log_step(self, step: int, epoch: int, **metrics: float | None) -> None:
        """Record one optimiser step (loss, lr, grad_norm, images_per_s, skipped, ...).

        Logging a step again replaces its row. NaN and infinities are kept as they are.
        """
        _check_names(metrics, _RESERVED_STEP_NAMES)
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO steps (step, epoch, time, metrics) VALUES (?, ?, ?, ?)",
                (int(step), int(epoch), time.time(), _dumps(metrics)),
            )

    def steps(
        self, names: Iterable[str] | None = None, since_step: int | None = None
    ) -> list[dict[str, Any]]:
        """Step rows, oldest first, as dicts of step, epoch, time and the metrics logged.

        ``since_step`` keeps steps strictly after it (what a live poller last saw); ``names``
        keeps only those metrics (a row lacks a metric its step did not log).
        """
        sql = "SELECT step, epoch, time, metrics FROM steps"
        parameters: tuple[Any, ...] = ()
        if since_step is not None:
            sql += " WHERE step > ?"
            parameters = (int(since_step),)
        rows = self._query(sql + " ORDER BY step", parameters)
        loads = json.loads
        with self._decoding("steps"):
            if names is None:
                return [
                    {"step": step, "epoch": epoch, "time": t, **loads(text)}
                    for step, epoch, t, text in rows
                ]
            wanted = (names,) if isinstance(names, str) else tuple(names)
            result = []
            for step, epoch, t, text in rows:
                metrics = loads(text)
                row = {"step": step, "epoch": epoch, "time": t}
                row.update((name, metrics[name]) for name in wanted if name in metrics)
                result.append(row)
            return result

    def last_step(self) -> int | None:
        """The highest step logged, or None before the first."""
        return self._query("SELECT max(step) FROM steps")[0][0]

    def log_epoch(self, epoch: int, **metrics: float | None) -> None:
        """Record one epoch (train_loss, val_loss, val_dice, seconds, ...); again replaces it."""
        _check_names(metrics, _RESERVED_EPOCH_NAMES)
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO epochs (epoch, time, metrics) VALUES (?, ?, ?)",
                (int(epoch), time.time(), _dumps(metrics)),
            )

    def epochs(self) -> list[dict[str, Any]]:
        """Epoch rows, oldest first, as dicts of epoch, time and the metrics logged."""
        rows = self._query("SELECT epoch, time, metrics FROM epochs ORDER BY epoch")
        with self._decoding("epochs"):
            return [{"epoch": epoch, "time": t, **json.loads(text)} for epoch, t, text in rows]

    # ------------------------------------------------------------------ checkpoints

    def add_checkpoint(
        self,
        kind: str,
        path: str | Path,
        epoch: int,
        step: int,
        metrics: dict[str, Any],
        parameters: int,
        size_bytes: int,
        finite: bool = True,
    ) -> None:
        """Record a checkpoint file the trainer has written (``path`` relative to the run).

        There is one "last" and one "best": adding either replaces the previous one. Adding a
        checkpoint of a kind and path already recorded replaces that row too (the file was
        overwritten). ``finite`` says whether every weight was finite.
        """
        if kind not in CHECKPOINT_KINDS:
            raise ValueError(f"checkpoint kind must be one of {', '.join(CHECKPOINT_KINDS)}")
        relative = _relative_path(self.path, path)
        with self._write() as db:
            if kind in SINGLE_CHECKPOINT_KINDS:
                db.execute("DELETE FROM checkpoints WHERE kind = ?", (kind,))
            else:
                db.execute("DELETE FROM checkpoints WHERE kind = ? AND path = ?", (kind, relative))
            db.execute(
                "INSERT INTO checkpoints (kind, path, epoch, step, metrics, parameters,"
                " size_bytes, finite, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    kind,
                    relative,
                    int(epoch),
                    int(step),
                    _dumps(metrics),
                    int(parameters),
                    int(size_bytes),
                    int(bool(finite)),
                    time.time(),
                ),
            )

    def checkpoints(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Checkpoint records ordered by step: kind, path, epoch, step, metrics, parameters,
        size_bytes, finite, time."""
        sql = (
            "SELECT kind, path, epoch, step, metrics, parameters, size_bytes, finite, time"
            " FROM checkpoints"
        )
        parameters: tuple[Any, ...] = ()
        if kind is not None:
            sql += " WHERE kind = ?"
            parameters = (kind,)
        rows = self._query(sql + " ORDER BY step, id", parameters)
        with self._decoding("checkpoints"):
            return [
                {
                    "kind": k,
                    "path": p,
                    "epoch": e,
                    "step": s,
                    "metrics": dict(json.loads(m)),
                    "parameters": n,
                    "size_bytes": b,
                    "finite": bool(f),
                    "time": t,
                }
                for k, p, e, s, m, n, b, f, t in rows
            ]

    def best_checkpoint(self) -> dict[str, Any] | None:
        """The "best" checkpoint record, or None if none was saved."""
        rows = self.checkpoints("best")
        return rows[0] if rows else None

    # ------------------------------------------------------------------ events

    def event(
        self,
        kind: str,
        message: str,
        *,
        step: int | None = None,
        epoch: int | None = None,
        **data: Any,
    ) -> int:
        """Record something that happened (nonfinite_step, early_stop, resumed, an alert, ...).

        Returns the event id; ids only grow, so a poller can ask for events ``since_id``.
        """
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO events (time, kind, message, step, epoch, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    time.time(),
                    kind,
                    message,
                    None if step is None else int(step),
                    None if epoch is None else int(epoch),
                    _dumps(data),
                ),
            )
            return int(cursor.lastrowid or 0)

    def events(self, kind: str | None = None, since_id: int | None = None) -> list[dict[str, Any]]:
        """Events oldest first as dicts of id, time, kind, message, step, epoch and data."""
        clauses, parameters = [], []
        if kind is not None:
            clauses.append("kind = ?")
            parameters.append(kind)
        if since_id is not None:
            clauses.append("id > ?")
            parameters.append(int(since_id))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._query(
            f"SELECT id, time, kind, message, step, epoch, data FROM events{where} ORDER BY id",
            parameters,
        )
        with self._decoding("events"):
            return [
                {
                    "id": i,
                    "time": t,
                    "kind": k,
                    "message": m,
                    "step": s,
                    "epoch": e,
                    "data": json.loads(d),
                }
                for i, t, k, m, s, e, d in rows
            ]

    # ------------------------------------------------------------------ per-layer statistics

    def log_layer_stats(self, step: int, rows: Iterable[tuple[str, str, float]]) -> None:
        """Record per-layer statistics of one step as ``(layer, statistic, value)`` rows.

        One transaction and one ``executemany`` however many rows; recording a (layer,
        statistic) again for the same step replaces its value.
        """
        step = int(step)
        rows = [(str(layer), str(stat), float(value)) for layer, stat, value in rows]
        with self._write() as db:
            ids = self._series_ids
            for layer, stat, _ in rows:
                if (layer, stat) not in ids:
                    db.execute(
                        "INSERT OR IGNORE INTO layer_series (layer, stat) VALUES (?, ?)",
                        (layer, stat),
                    )
                    ids[(layer, stat)] = db.execute(
                        "SELECT id FROM layer_series WHERE layer = ? AND stat = ?", (layer, stat)
                    ).fetchone()[0]
            db.executemany(
                "INSERT OR REPLACE INTO layer_stats (step, series, value) VALUES (?, ?, ?)",
                [(step, ids[(layer, stat)], value) for layer, stat, value in rows],
            )

    def layer_stats(
        self,
        since_step: int | None = None,
        layers: Iterable[str] | None = None,
        stats: Iterable[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Per-layer statistics ordered by step, as dicts of step, layer, stat and value.

        ``since_step`` keeps steps strictly after it; ``layers`` and ``stats`` keep only those
        names. A NaN value reads back as NaN.
        """
        series = {
            series_id: (layer, stat)
            for series_id, layer, stat in self._query("SELECT id, layer, stat FROM layer_series")
        }
        if layers is not None or stats is not None:
            wanted_layers = _name_set(layers)
            wanted_stats = _name_set(stats)
            series = {
                series_id: (layer, stat)
                for series_id, (layer, stat) in series.items()
                if (wanted_layers is None or layer in wanted_layers)
                and (wanted_stats is None or stat in wanted_stats)
            }
            if not series:
                return []
            keep = series.keys()
        else:
            keep = None
        sql = "SELECT step, series, value FROM layer_stats"
        parameters: tuple[Any, ...] = ()
        if since_step is not None:
            sql += " WHERE step > ?"
            parameters = (int(since_step),)
        rows = self._query(sql + " ORDER BY step, series", parameters)
        nan = math.nan
        result = []
        for step, series_id, value in rows:
            if keep is not None and series_id not in keep:
                continue
            layer, stat = series[series_id]
            result.append(
                {
                    "step": step,
                    "layer": layer,
                    "stat": stat,
                    "value": nan if value is None else value,
                }
            )
        return result

    def layer_matrix(self, stat: str, since_step: int | None = None) -> dict[str, list[Any]]:
        """One statistic of every layer as a steps x layers table, what a heatmap draws.

        Returns ``{"layers": [...], "steps": [...], "values": [[...], ...]}`` with one row of
        ``values`` per step (None where a layer has no value at that step, NaN kept as NaN).
        Layers are in the order they were first logged, which is the model's order.
        """
        series = self._query(
            "SELECT id, layer FROM layer_series WHERE stat = ? ORDER BY id", (str(stat),)
        )
        layers = [layer for _, layer in series]
        column = {series_id: index for index, (series_id, _) in enumerate(series)}
        steps: list[int] = []
        values: list[list[float | None]] = []
        if not series:
            return {"layers": layers, "steps": steps, "values": values}
        sql = (
            "SELECT step, series, value FROM layer_stats WHERE series IN "
            f"({','.join('?' * len(column))})"
        )
        parameters: list[Any] = list(column)
        if since_step is not None:
            sql += " AND step > ?"
            parameters.append(int(since_step))
        nan = math.nan
        for step, series_id, value in self._query(sql + " ORDER BY step", parameters):
            if not steps or steps[-1] != step:
                steps.append(step)
                values.append([None] * len(layers))
            values[-1][column[series_id]] = nan if value is None else value
        return {"layers": layers, "steps": steps, "values": values}

    # ------------------------------------------------------------------ gradient histograms

    def log_histograms(
        self, step: int, edges: Sequence[float], counts: dict[str, Sequence[float]]
    ) -> None:
        """Record one histogram per layer at ``step``, all over the same fixed bin ``edges``.

        The edges are kept once in meta; a run whose edges change is refused (histograms of a
        run are compared over time, so their bins may not move).
        """
        edges = [float(edge) for edge in edges]
        known = self.meta.get("histogram_edges")
        if known is not None and known != edges:
            raise ValueError("histogram edges of a run cannot change")
        rows = []
        for layer, values in counts.items():
            if len(values) != len(edges) - 1:
                raise ValueError(f"{layer}: {len(values)} counts for {len(edges) - 1} bins")
            rows.append((int(step), str(layer), _dumps([float(v) for v in values])))
        with self._write() as db:
            if known is None:
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('histogram_edges', ?)",
                    (_dumps(edges),),
                )
            db.executemany(
                "INSERT OR REPLACE INTO histograms (step, layer, counts) VALUES (?, ?, ?)", rows
            )

    def histogram_edges(self) -> list[float] | None:
        """The fixed bin edges of every gradient histogram of this run (None before the first)."""
        return self.meta.get("histogram_edges")

    def histograms(
        self, since_step: int | None = None, layers: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Histogram rows ordered by step, as dicts of step, layer and counts."""
        sql = "SELECT step, layer, counts FROM histograms"
        parameters: tuple[Any, ...] = ()
        if since_step is not None:
            sql += " WHERE step > ?"
            parameters = (int(since_step),)
        wanted = _name_set(layers)
        rows = self._query(sql + " ORDER BY step, rowid", parameters)
        with self._decoding("histograms"):
            return [
                {"step": step, "layer": layer, "counts": json.loads(counts)}
                for step, layer, counts in rows
                if wanted is None or layer in wanted
            ]

    # ------------------------------------------------------------------ watch slices

    def log_watch(
        self, epoch: int, slice_index: int, kind: str, png: bytes, /, **data: Any
    ) -> None:
        """Record one picture of a watch slice at ``epoch`` (kind: image, prediction, cam...)."""
        if not bytes(png[:8]) == b"\x89PNG\r\n\x1a\n":
            raise ValueError("a watch picture must be PNG bytes")
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO watch (epoch, slice, kind, png, data, time)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (int(epoch), int(slice_index), str(kind), bytes(png), _dumps(data), time.time()),
            )

    def watch_frames(self, since_epoch: int | None = None) -> list[dict[str, Any]]:
        """The watch pictures recorded, without their bytes: epoch, slice, kind, data, time."""
        sql = "SELECT epoch, slice, kind, data, time FROM watch"
        parameters: tuple[Any, ...] = ()
        if since_epoch is not None:
            sql += " WHERE epoch > ?"
            parameters = (int(since_epoch),)
        rows = self._query(sql + " ORDER BY epoch, slice, kind", parameters)
        with self._decoding("watch"):
            return [
                {"epoch": e, "slice": s, "kind": k, "data": json.loads(d), "time": t}
                for e, s, k, d, t in rows
            ]

    def watch_png(self, epoch: int, slice_index: int, kind: str) -> bytes | None:
        """The PNG bytes of one watch picture, or None if it was not recorded."""
        rows = self._query(
            "SELECT png FROM watch WHERE epoch = ? AND slice = ? AND kind = ?",
            (int(epoch), int(slice_index), str(kind)),
        )
        return bytes(rows[0][0]) if rows else None

    # ------------------------------------------------------------------ resuming

    def truncate_after(self, step: int, epoch: int, message: str | None = None) -> dict[str, int]:
        """Forget what a killed run logged after the checkpoint it resumes from.

        Deletes steps, layer statistics and histograms after ``step``, epochs and watch
        pictures after ``epoch``, and events after either (events with neither a step nor an
        epoch are kept). Checkpoint records are kept: their files are still on disk. Records a
        "resumed" event and the status "running" (both saying ``message``, by default where it
        resumed from), and returns how many rows of each kind went. ``truncate_after(0, 0)``
        restarts a run from scratch. A live poller that sees the "resumed" event should drop
        what it holds after that event's step.
        """
        step, epoch = int(step), int(epoch)
        with self._write() as db:
            removed = {
                "steps": db.execute("DELETE FROM steps WHERE step > ?", (step,)).rowcount,
                "epochs": db.execute("DELETE FROM epochs WHERE epoch > ?", (epoch,)).rowcount,
                "layer_stats": db.execute(
                    "DELETE FROM layer_stats WHERE step > ?", (step,)
                ).rowcount,
                "histograms": db.execute("DELETE FROM histograms WHERE step > ?", (step,)).rowcount,
                "watch": db.execute("DELETE FROM watch WHERE epoch > ?", (epoch,)).rowcount,
                "events": db.execute(
                    "DELETE FROM events WHERE step > ? OR (step IS NULL AND epoch > ?)",
                    (step, epoch),
                ).rowcount,
            }
            now = time.time()
            message = message or f"resumed from step {step}, epoch {epoch}"
            db.execute(
                "INSERT INTO events (time, kind, message, step, epoch, data)"
                " VALUES (?, 'resumed', ?, ?, ?, ?)",
                (now, message, step, epoch, _dumps({"removed": removed})),
            )
            db.execute(
                "INSERT INTO status (time, status, message) VALUES (?, 'running', ?)",
                (now, message),
            )
        return removed

    # ------------------------------------------------------------------ summary

    def summary(self) -> RunSummary:
        """The one-line facts of this run that ``lvseg runs list`` shows."""
        meta = self.meta
        epochs = self.epochs()
        best_dice: float | None = None
        best_epoch: int | None = None
        for row in epochs:
            dice = row.get("val_dice")
            if isinstance(dice, (int, float)) and math.isfinite(dice):
                if best_dice is None or dice > best_dice:
                    best_dice, best_epoch = float(dice), row["epoch"]
        times = [
            row[0]
            for sql in (
                "SELECT time FROM steps ORDER BY step DESC LIMIT 1",
                "SELECT max(time) FROM epochs",
                "SELECT time FROM events ORDER BY id DESC LIMIT 1",
                "SELECT time FROM status ORDER BY id DESC LIMIT 1",
            )
            for row in self._query(sql)
            if row[0] is not None
        ]
        step_count, last_step = self._query("SELECT count(*), max(step) FROM steps")[0]
        created = meta.get("created")
        return RunSummary(
            name=self.path.name,
            path=self.path,
            status=self.live_status,
            model=_model_name(meta, self),
            epochs=len(epochs),
            best_val_dice=best_dice,
            best_epoch=best_epoch,
            steps=step_count,
            last_step=last_step,
            created=float(created) if isinstance(created, (int, float)) else None,
            updated=max(times) if times else None,
            selected=(self.path / layout.SELECTED).is_file(),
        )


def _model_name(meta: dict[str, Any], store: RunStore) -> str | None:
    """The model's name from meta, else from the config (``model`` or ``model.name``)."""
    if isinstance(meta.get("model"), str):
        return meta["model"]
    try:
        model = store.config.get("model")
    except InvalidInputError:
        return None
    if isinstance(model, dict):
        model = model.get("name")
    return model if isinstance(model, str) else None


@dataclass(frozen=True)
class RunSummary:
    """What a listing shows of one run. Times are Unix seconds; ``error`` explains the status
    "corrupt" (the database is damaged or unreadable) or "locked" (another process holds it)."""

    name: str
    path: Path
    status: str
    model: str | None = None
    epochs: int = 0
    best_val_dice: float | None = None
    best_epoch: int | None = None
    steps: int = 0
    last_step: int | None = None
    created: float | None = None
    updated: float | None = None
    selected: bool = False
    error: str | None = None


def is_run(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a run database."""
    return (Path(path) / layout.RUN_DATABASE).is_file()


def unreadable_status(error: BaseException) -> str:
    """The listing status of a run that could not be read: "locked" or "corrupt"."""
    return "locked" if isinstance(error, RunLockedError) else "corrupt"


def summarise_run(run_dir: str | Path) -> RunSummary:
    """The summary of one run; one that cannot be read gets the status "locked" (another
    process holds its database; the listing waits :data:`READ_BUSY_TIMEOUT_S` at most) or
    "corrupt", and the reason in ``error``. Never raises for a bad run: a listing shows the
    others whatever one of them holds."""
    run_dir = Path(run_dir)
    try:
        with RunStore.open(run_dir, readonly=True) as store:
            return store.summary()
    except (InvalidInputError, sqlite3.Error, OSError, ValueError) as error:
        return RunSummary(
            name=run_dir.name,
            path=run_dir,
            status=unreadable_status(error),
            selected=(run_dir / layout.SELECTED).is_file(),
            error=str(error),
        )


def list_runs(root: str | Path) -> list[RunSummary]:
    """Summaries of every run directly under ``root`` (or of ``root`` itself if it is a run).

    Folders without a run.db are skipped; a run whose database cannot be read is listed with
    status "corrupt" or "locked" and the reason (:func:`summarise_run`). Runs are sorted by
    name.
    """
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError(root, "no such runs folder")
    if is_run(root):
        return [summarise_run(root)]
    return [summarise_run(child) for child in sorted(root.iterdir()) if is_run(child)]
