"""Where lvseg keeps what it can rebuild: the embedded phantom and preprocessed training data."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$LVSEG_CACHE_DIR``, else ``$XDG_CACHE_HOME/lvseg``, else ``~/.cache/lvseg``."""
    if os.environ.get("LVSEG_CACHE_DIR"):
        return Path(os.environ["LVSEG_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "lvseg"
    return Path.home() / ".cache" / "lvseg"
