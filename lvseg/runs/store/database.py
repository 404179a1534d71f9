"""The run database itself: making and opening run.db, its transactions and its queries.

:class:`RunDatabase` is the base every table family of :class:`lvseg.runs.store.RunStore` builds
on: one SQLite connection in WAL mode (readable by other processes while training writes), one
lock, and the plumbing that turns SQLite errors into one line naming run.db
(:mod:`lvseg.runs.store.errors`).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from lvseg import __version__, atomic, layout
from lvseg.errors import InvalidInputError
from lvseg.runs.store.errors import CorruptRunError, raise_database_error
from lvseg.runs.store.schema import check_schema, create_tables

BUSY_TIMEOUT_S = 5.0
"""How long the writer waits for a lock another connection holds."""
READ_BUSY_TIMEOUT_S = 0.25
"""How long a read-only store waits for a lock: a listing or the dashboard answers within a
second even when a run's database is held locked (a WAL reader is never blocked by the trainer,
so a lock means something unusual holds the file)."""

_Store = TypeVar("_Store", bound="RunDatabase")  # what create and open return: typing.Self (3.11+)


def json_default(value: Any) -> Any:
    """Turn numpy and torch scalars (anything with ``.item()`` or ``__float__``) into numbers."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "__float__"):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not a number or JSON value")


def dumps(value: Any) -> str:
    """The JSON text of a ``metrics`` or ``data`` column (NaN and infinities kept as Python
    writes them, see :mod:`lvseg.runs.store.schema`)."""
    return json.dumps(value, default=json_default, separators=(",", ":"))


class RunDatabase:
    """One run directory's database connection: make one with :meth:`create` (a new run) or
    :meth:`open` (resume, or read). Every public write is one transaction (:meth:`_write`);
    methods may be called from several threads of one process."""

    def __init__(self, run_dir: Path, connection: sqlite3.Connection, *, readonly: bool) -> None:
        """Use :meth:`create` or :meth:`open`; this wraps an already checked connection."""
        self.path = run_dir
        self.readonly = readonly
        self._connection: sqlite3.Connection | None = connection
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ opening and closing

    @classmethod
    def create(
        cls: type[_Store],
        run_dir: str | Path,
        config: dict[str, Any],
        *,
        meta: dict[str, Any] | None = None,
    ) -> _Store:
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
        config_text = json.dumps(config, indent=2, default=json_default) + "\n"
        now = time.time()
        record = {
            "created": now,
            "lvseg_version": __version__,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "python": platform.python_version(),
            **(meta or {}),
        }
        meta_rows = [(key, dumps(value)) for key, value in record.items()]
        (run_dir / layout.CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        atomic.write_text(run_dir / layout.RUN_CONFIG, config_text)

        def build(temporary: Path) -> None:
            temporary.unlink(missing_ok=True)  # mkstemp made an empty file; SQLite would accept it
            connection = sqlite3.connect(temporary, isolation_level=None)
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("BEGIN IMMEDIATE")
                create_tables(connection)
                connection.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta_rows)
                connection.execute(
                    "INSERT INTO status (time, status, message) VALUES (?, 'running', NULL)",
                    (now,),
                )
                connection.execute("COMMIT")
            finally:
                connection.close()

        if database.exists():  # best effort against a concurrent create; one writer is the rule
            raise InvalidInputError(database, "a run already exists here; resume it instead")
        atomic.write_with(database, build)
        return cls.open(run_dir)

    @classmethod
    def open(cls: type[_Store], run_dir: str | Path, *, readonly: bool = False) -> _Store:
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
        connection = _connect(database, readonly, timeout)
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            check_schema(database, connection)
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

    def close(self) -> None:
        """Close the database; closing twice is harmless."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __enter__(self: _Store) -> _Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "readonly" if self.readonly else "writer"
        return f"{type(self).__name__}({str(self.path)!r}, {mode})"

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

    def _query_after(
        self, sql: str, column: str, after: int | None, *, order: str
    ) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` whose ``column`` is strictly after ``after`` (every row when it
        is None: what a live poller last saw), ordered by ``order``."""
        if after is None:
            return self._query(f"{sql} ORDER BY {order}")
        return self._query(f"{sql} WHERE {column} > ? ORDER BY {order}", (int(after),))

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


def _connect(database: Path, readonly: bool, timeout: float) -> sqlite3.Connection:
    """A connection to ``database``: a read-only one through a ``mode=ro`` URI, so that a reader
    can never write (nor create) the file."""
    try:
        if readonly:
            return sqlite3.connect(
                f"{database.resolve().as_uri()}?mode=ro",
                uri=True,
                isolation_level=None,
                timeout=timeout,
                check_same_thread=False,
            )
        return sqlite3.connect(
            database, isolation_level=None, timeout=timeout, check_same_thread=False
        )
    except sqlite3.Error as error:
        raise InvalidInputError(database, f"cannot open run database: {error}") from error
