"""Label conventions: which value of a label volume is which structure.

The convention is chosen per file from its layout: ACDC uses the ``acdc`` preset
``{1: rv, 2: myocardium, 3: lv}``, M&Ms-1 and -2 the ``mnms`` preset ``{1: lv, 2: myocardium,
3: rv}``. Generic files have no convention we could guess safely (the two presets swap LV and
RV), so they need ``labels=``: a preset name or a string such as ``"lv=3,myocardium=2,rv=1"``
(see :func:`parse_labels`), which then applies to every file. A value mapped to ``ignore`` is
read as background. Any other value in a label volume is an error.

>>> parse_labels("lv=3,myo=2,rv=1") == PRESETS["acdc"]
True
>>> format_labels(PRESETS["mnms"])
'lv=1,myocardium=2,rv=3'
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from lvseg.data.records import LV, MYOCARDIUM, RV
from lvseg.errors import InvalidInputError

IGNORE = "ignore"
"""Pseudo-structure: label values mapped to it are read as background."""

PRESETS: dict[str, dict[int, str]] = {
    "acdc": {1: RV, 2: MYOCARDIUM, 3: LV},
    "mnms": {1: LV, 2: MYOCARDIUM, 3: RV},
}
"""Built-in label conventions, by name."""

STRUCTURE_ALIASES = {
    "lv": LV,
    "myocardium": MYOCARDIUM,
    "myo": MYOCARDIUM,
    "rv": RV,
    IGNORE: IGNORE,
}
"""Names accepted in a label mapping string."""

LabelSpec = str | Mapping[int, str] | Mapping[str, int]


def parse_labels(text: str) -> dict[int, str]:
    """A label mapping (value -> structure) from a preset name or ``"lv=3,myocardium=2,rv=1"``.

    Pairs are separated by commas; each is ``name=value`` (or ``value=name``) with names ``lv``,
    ``myocardium`` (``myo``), ``rv`` or ``ignore`` and positive integer values. Raises
    :class:`InvalidInputError` with the reason for anything else.

    >>> parse_labels("mnms")
    {1: 'lv', 2: 'myocardium', 3: 'rv'}
    >>> parse_labels("lv=1, ignore=2")
    {1: 'lv', 2: 'ignore'}
    """
    cleaned = text.strip()
    if cleaned.lower() in PRESETS:
        return dict(PRESETS[cleaned.lower()])
    if not cleaned:
        raise _bad_labels(text, "empty")
    pairs: list[tuple[str, str]] = []
    for item in cleaned.split(","):
        left, sep, right = item.partition("=")
        if not sep or not left.strip() or not right.strip():
            raise _bad_labels(
                text, f"{item.strip()!r} is not name=value (or a preset: {', '.join(PRESETS)})"
            )
        left, right = left.strip(), right.strip()
        pairs.append((right, left) if _is_integer_text(left) else (left, right))
    mapping: dict[int, str] = {}
    for name, value in pairs:
        if not _is_integer_text(value):
            raise _bad_labels(text, f"label value {value!r} of {name!r} is not an integer")
        mapping = _add_label(mapping, int(value), name, text)
    return _check_mapping(mapping, text)


def label_mapping(spec: LabelSpec) -> dict[int, str]:
    """A checked label mapping from a preset name, a mapping string, or a dict.

    Dicts may go either way: ``{3: "lv"}`` or ``{"lv": 3}``.
    """
    if isinstance(spec, str):
        return parse_labels(spec)
    if not isinstance(spec, Mapping):
        raise InvalidInputError(None, f"invalid label mapping {spec!r}: expected a str or a dict")
    mapping: dict[int, str] = {}
    for key, item in spec.items():
        value, name = (item, key) if isinstance(key, str) else (key, item)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise _bad_labels(spec, f"label value {value!r} is not an integer")
        if not isinstance(name, str):
            raise _bad_labels(spec, f"structure {name!r} is not a name")
        mapping = _add_label(mapping, int(value), name, spec)
    return _check_mapping(mapping, spec)


def format_labels(mapping: Mapping[int, str]) -> str:
    """The mapping as a string :func:`parse_labels` reads back, ordered by value."""
    return ",".join(f"{name}={value}" for value, name in sorted(mapping.items()))


def _add_label(mapping: dict[int, str], value: int, name: str, spec: object) -> dict[int, str]:
    structure = STRUCTURE_ALIASES.get(name.strip().lower())
    if structure is None:
        raise _bad_labels(
            spec, f"unknown structure {name!r} (use {', '.join(sorted(STRUCTURE_ALIASES))})"
        )
    if value < 1:
        raise _bad_labels(
            spec, f"label value {value} of {name!r} must be 1 or more (0 is background)"
        )
    if value in mapping:
        raise _bad_labels(spec, f"label value {value} is given twice")
    if structure != IGNORE and structure in mapping.values():
        raise _bad_labels(spec, f"structure {structure!r} is given twice")
    return {**mapping, value: structure}


def _check_mapping(mapping: dict[int, str], spec: object) -> dict[int, str]:
    if not any(name != IGNORE for name in mapping.values()):
        raise _bad_labels(spec, "no structure (lv, myocardium or rv) is mapped")
    return dict(sorted(mapping.items()))


def _bad_labels(spec: object, reason: str) -> InvalidInputError:
    return InvalidInputError(None, f"invalid label mapping {spec!r}: {reason}")


def _is_integer_text(text: str) -> bool:
    return re.fullmatch(r"[+-]?\d+", text.strip()) is not None
