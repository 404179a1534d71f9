"""Values made ready for JSON: numpy scalars become Python numbers, and non-finite floats become
None (JSON has no NaN or infinity), through dicts, lists and tuples. Dataclasses (the typed
results of evaluate, explain and predict) become dicts of their fields in declaration order, so
their JSON is written here and only here; a field made with :func:`not_in_json` is left out.

>>> import numpy as np
>>> json_safe({"a": np.float32(0.5), "b": [float("nan"), np.int64(3), np.bool_(True)]})
{'a': 0.5, 'b': [None, 3, True]}
>>> from dataclasses import dataclass
>>> @dataclass
... class Result:
...     dice: float
...     masks: list = not_in_json(default=None)
>>> json_safe(Result(np.float64(0.9), masks=[1, 2]))
{'dice': 0.9}
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

_IN_JSON = "json"


def not_in_json(**field_options: Any) -> Any:
    """A dataclass field that :func:`json_safe` leaves out: what a result holds in memory only
    (per-slice rows, masks, the folder written)."""
    return dataclasses.field(metadata={_IN_JSON: False}, **field_options)


def json_safe(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: json_safe(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.metadata.get(_IN_JSON, True)
        }
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
