"""The one error type for bad input (every reader, config and checkpoint loader raises it), and
the record of a file that was skipped.

Readers never let a library exception escape: they wrap it in :class:`InvalidInputError`, which
carries the offending file and a one-line reason. The CLI prints ``str(error)`` and exits with 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class InvalidInputError(Exception):
    """A file or folder that cannot be read as the data it should be.

    >>> str(InvalidInputError("scan/1.dcm", "not a DICOM file"))
    'scan/1.dcm: not a DICOM file'
    """

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = str(path) if path is not None else None
        # One line, whatever the underlying library said.
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.path}: {self.reason}" if self.path else self.reason)


@dataclass(frozen=True)
class Skipped:
    """A file left out by a reader running with ``skip_invalid=True``."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"
