"""The watch slices' pictures (``watch`` table): fixed validation slices whose input, prediction
and CAM are recorded as PNG bytes every epoch, with JSON facts (Dice, CAM range, patient)."""

from __future__ import annotations

import json
import time
from typing import Any

from lvseg.runs.store.database import RunDatabase, dumps

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class WatchLog(RunDatabase):
    """The watch pictures of a run (a part of :class:`lvseg.runs.store.RunStore`)."""

    def log_watch(
        self, epoch: int, slice_index: int, kind: str, png: bytes, /, **data: Any
    ) -> None:
        """Record one picture of a watch slice at ``epoch`` (kind: image, prediction, cam...)."""
        if not bytes(png[:8]) == _PNG_SIGNATURE:
            raise ValueError("a watch picture must be PNG bytes")
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO watch (epoch, slice, kind, png, data, time)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (int(epoch), int(slice_index), str(kind), bytes(png), dumps(data), time.time()),
            )

    def watch_frames(self, since_epoch: int | None = None) -> list[dict[str, Any]]:
        """The watch pictures recorded, without their bytes: epoch, slice, kind, data, time."""
        rows = self._query_after(
            "SELECT epoch, slice, kind, data, time FROM watch",
            "epoch",
            since_epoch,
            order="epoch, slice, kind",
        )
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
