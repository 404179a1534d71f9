"""What the training probes measure inside the network: per-layer statistics (``layer_series``
names a (layer, statistic) pair once, ``layer_stats`` holds its values by step) and gradient
histograms (``histograms``, over bin edges fixed for the run and kept in meta)."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lvseg.runs.store.database import dumps
from lvseg.runs.store.status import RunStatus


def _name_set(names: Iterable[str] | None) -> set[str] | None:
    if names is None:
        return None
    return {names} if isinstance(names, str) else set(names)


class ProbeLog(RunStatus):
    """Per-layer statistics and gradient histograms of a run (a part of
    :class:`lvseg.runs.store.RunStore`); the histograms' bin edges are kept in meta."""

    def __init__(self, run_dir: Path, connection: sqlite3.Connection, *, readonly: bool) -> None:
        super().__init__(run_dir, connection, readonly=readonly)
        # The id of each (layer, statistic) series this store has written or looked up: a
        # series keeps its id, so the steps after the first write their values directly.
        self._series_ids: dict[tuple[str, str], int] = {}

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
        filtered = layers is not None or stats is not None
        if filtered:
            wanted_layers, wanted_stats = _name_set(layers), _name_set(stats)
            series = {
                series_id: (layer, stat)
                for series_id, (layer, stat) in series.items()
                if (wanted_layers is None or layer in wanted_layers)
                and (wanted_stats is None or stat in wanted_stats)
            }
            if not series:
                return []
        rows = self._query_after(
            "SELECT step, series, value FROM layer_stats",
            "step",
            since_step,
            order="step, series",
        )
        return [
            {
                "step": step,
                "layer": series[series_id][0],
                "stat": series[series_id][1],
                "value": math.nan if value is None else value,  # SQLite stores NaN as NULL
            }
            for step, series_id, value in rows
            if not filtered or series_id in series
        ]

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
        for step, series_id, value in self._query(sql + " ORDER BY step", parameters):
            if not steps or steps[-1] != step:
                steps.append(step)
                values.append([None] * len(layers))
            values[-1][column[series_id]] = math.nan if value is None else value
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
        known = self.histogram_edges()
        if known is not None and known != edges:
            raise ValueError("histogram edges of a run cannot change")
        rows = []
        for layer, values in counts.items():
            if len(values) != len(edges) - 1:
                raise ValueError(f"{layer}: {len(values)} counts for {len(edges) - 1} bins")
            rows.append((int(step), str(layer), dumps([float(v) for v in values])))
        with self._write() as db:
            if known is None:
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('histogram_edges', ?)",
                    (dumps(edges),),
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
        wanted = _name_set(layers)
        rows = self._query_after(
            "SELECT step, layer, counts FROM histograms", "step", since_step, order="step, rowid"
        )
        with self._decoding("histograms"):
            return [
                {"step": step, "layer": layer, "counts": json.loads(counts)}
                for step, layer, counts in rows
                if wanted is None or layer in wanted
            ]
