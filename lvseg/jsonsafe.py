"""Values made ready for JSON: numpy scalars become Python numbers, and non-finite floats become
None (JSON has no NaN or infinity), through dicts, lists and tuples.

>>> import numpy as np
>>> json_safe({"a": np.float32(0.5), "b": [float("nan"), np.int64(3), np.bool_(True)]})
{'a': 0.5, 'b': [None, 3, True]}
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
