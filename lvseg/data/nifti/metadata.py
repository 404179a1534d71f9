"""What the dataset says about each case beside its volumes: ED and ES frames, pathology group.

ACDC's come from each patient's Info.cfg (1-based frame numbers), M&Ms' from the dataset's
information table (0-based "ED"/"ES" columns, "Pathology"), found by its columns under ROOT
first, then directly in the three folders above it. Values that do not parse (an empty or
non-numeric ED cell) count as unknown.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lvseg.data.nifti.layouts import Pair

_ID_COLUMNS = ("external code", "subject code", "code", "patient", "patient id")
_PATHOLOGY_COLUMNS = ("pathology", "disease", "group")


@dataclass(frozen=True)
class CaseInfo:
    ed_index: int | None = None  # 0-based frame
    es_index: int | None = None
    group: str | None = None


def _read_info_cfg(path: Path) -> CaseInfo:
    """ACDC's Info.cfg (``ED: 1`` ... with 1-based frame numbers); missing -> unknown."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return CaseInfo()
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip().lower()] = value.strip()
    ed, es = _as_int(values.get("ed")), _as_int(values.get("es"))
    return CaseInfo(
        ed_index=None if ed is None else ed - 1,
        es_index=None if es is None else es - 1,
        group=values.get("group") or None,
    )


def _read_tables(paths: list[Path]) -> dict[str, CaseInfo]:
    """Case information from every CSV with an id column and ED/ES or pathology columns.

    Keys are the ids as written and, for numeric ids, without leading zeros. Earlier files win.
    """
    cases: dict[str, CaseInfo] = {}
    for path in paths:
        for case_id, info in _read_table(path).items():
            for key in {case_id, _numeric_key(case_id)}:
                cases.setdefault(key, info)
    return cases


def _read_table(path: Path) -> dict[str, CaseInfo]:
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            with open(path, newline="", encoding=encoding) as handle:
                return _parse_table(csv.reader(handle))
        except UnicodeDecodeError:
            continue
        except (OSError, csv.Error):
            return {}
    return {}


def _parse_table(rows: Iterator[list[str]]) -> dict[str, CaseInfo]:
    """The rows of a table whose header names an id column and ED/ES or pathology columns."""
    header = [" ".join(cell.replace("_", " ").split()).lower() for cell in next(rows, [])]
    id_column = next((header.index(c) for c in _ID_COLUMNS if c in header), None)
    ed_column = header.index("ed") if "ed" in header else None
    es_column = header.index("es") if "es" in header else None
    group_column = next((header.index(c) for c in _PATHOLOGY_COLUMNS if c in header), None)
    if id_column is None or (ed_column, es_column, group_column) == (None, None, None):
        return {}

    def cell(row: list[str], column: int | None) -> str | None:
        return row[column].strip() if column is not None and column < len(row) else None

    cases: dict[str, CaseInfo] = {}
    for row in rows:
        case_id = cell(row, id_column)
        if case_id:
            cases.setdefault(
                case_id,
                CaseInfo(
                    _as_int(cell(row, ed_column)),
                    _as_int(cell(row, es_column)),
                    cell(row, group_column) or None,
                ),
            )
    return cases


def _numeric_key(case_id: str) -> str:
    return str(int(case_id)) if case_id.isdigit() else case_id


def _as_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number == int(number) else None


class Metadata:
    """Info.cfg per ACDC folder and the M&Ms tables, read once and only when needed."""

    def __init__(self, tables: list[Path]) -> None:
        self._table_paths = tables
        self._tables: dict[str, CaseInfo] | None = None
        self._info_cfg: dict[Path, CaseInfo] = {}

    def for_pair(self, pair: Pair) -> CaseInfo:
        if pair.layout == "acdc":
            folder = pair.image.parent
            if folder not in self._info_cfg:
                self._info_cfg[folder] = _read_info_cfg(folder / "Info.cfg")
            return self._info_cfg[folder]
        if pair.layout in ("mnms", "mnms2"):
            if self._tables is None:
                self._tables = _read_tables(self._table_paths)
            return self._tables.get(pair.patient_id) or self._tables.get(
                _numeric_key(pair.patient_id), CaseInfo()
            )
        return CaseInfo()
