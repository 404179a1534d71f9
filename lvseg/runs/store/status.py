"""What a run is and where it stands: its config.json, the ``meta`` table and the ``status``
history (the last row is the current status)."""

from __future__ import annotations

import json
import os
import socket
import time
from functools import cached_property
from typing import Any

from lvseg import layout
from lvseg.errors import InvalidInputError
from lvseg.runs.store.database import RunDatabase, dumps
from lvseg.runs.store.errors import CorruptRunError

STATUSES = ("running", "finished", "stopped", "failed")


class RunStatus(RunDatabase):
    """The config, meta and status of a run (a part of :class:`lvseg.runs.store.RunStore`)."""

    @cached_property
    def config(self) -> dict[str, Any]:
        """The config the run ran with, read from config.json (once)."""
        path = self.path / layout.RUN_CONFIG
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidInputError(path, "run has no config file") from None
        except (OSError, ValueError) as error:
            raise InvalidInputError(path, f"unreadable run config: {error}") from error
        if not isinstance(config, dict):
            raise InvalidInputError(path, "run config is not a JSON object")
        return config

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
                [(key, dumps(value)) for key, value in items.items()],
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
