"""Numbers written for people (table cells, captions) and numbers written for files (CSV, JSON),
one helper per behaviour, so every output prints a missing value the same way.

>>> number_text(0.91234), number_text(None), number_text(True), percent_text(0.5)
('0.912', '-', 'yes', '50.0%')
>>> rounded_or_blank(0.91234), rounded_or_blank(float("nan"))
(0.912, '')
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is an int or float (Python or numpy) that is neither NaN nor infinite."""
    return isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)


def number_text(value: Any, digits: int = 3) -> str:
    """A value as the text of a table cell: None, NaN and infinity as "-", booleans as yes/no,
    integers as they are, floats with ``digits`` decimals, anything else through ``str``."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}f}" if math.isfinite(value) else "-"
    return str(value)


def percent_text(value: Any, digits: int = 1) -> str:
    """A fraction (0..1) as the text of a percentage; anything not a finite number as "-"."""
    return f"{100.0 * float(value):.{digits}f}%" if is_finite_number(value) else "-"


def rounded_or_blank(value: Any, digits: int = 3) -> float | str:
    """A number for a CSV cell or a JSON field: rounded to ``digits``; None and non-finite
    floats as "" (an empty cell)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return round(float(value), digits)
