"""What happened during a run (``events`` table): non-finite steps, early stopping, resumes,
the monitor's alerts. Ids only grow, so a poller asks for the events after the last it saw."""

from __future__ import annotations

import json
import time
from typing import Any

from lvseg.runs.store.database import RunDatabase, dumps

_COLUMNS = ("id", "time", "kind", "message", "step", "epoch", "data")
"""The columns an event is read from, in the order of its keys."""


class EventLog(RunDatabase):
    """The events of a run (a part of :class:`lvseg.runs.store.RunStore`)."""

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
                    dumps(data),
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
            f"SELECT {', '.join(_COLUMNS)} FROM events{where} ORDER BY id", parameters
        )
        records = [dict(zip(_COLUMNS, row, strict=True)) for row in rows]
        with self._decoding("events"):
            for record in records:
                record["data"] = json.loads(record["data"])
        return records
