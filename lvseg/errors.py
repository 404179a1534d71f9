"""lvseg's own errors, and the record of a file that was skipped.

Every error lvseg raises on purpose is an :class:`LvsegError`: it carries the offending path
(or None) and a one-line reason, and the CLI prints ``str(error)`` and exits with 2. Bad input
is an :class:`InvalidInputError` (readers never let a library exception escape: they wrap it
in one); a training run that failed on good input (out of memory, a diverging loss) is a
:class:`TrainingError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class LvsegError(Exception):
    """An expected failure: the path it concerns (or None) and a one-line reason.

    >>> str(LvsegError(None, "out of memory"))
    'out of memory'
    """

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = str(path) if path is not None else None
        # One line, whatever the underlying library said.
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.path}: {self.reason}" if self.path else self.reason)


class InvalidInputError(LvsegError):
    """A file or folder that cannot be read as the data it should be, or an option that
    cannot be used as given.

    >>> str(InvalidInputError("scan/1.dcm", "not a DICOM file"))
    'scan/1.dcm: not a DICOM file'
    """


class TrainingError(LvsegError):
    """A training run that cannot go on although its input was good: out of memory, or a loss
    that diverged (too many non-finite steps in a row)."""


@dataclass(frozen=True)
class Skipped:
    """A file left out by a reader running with ``skip_invalid=True``."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"
