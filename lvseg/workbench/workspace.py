"""The workbench's workspace: one folder holding datasets, runs, exports, evaluations, splits,
job logs and the job database, and the one check every path a request names goes through
(:func:`resolve_inside`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lvseg.errors import InvalidInputError

DATASETS = "datasets"
RUNS = "runs"
EXPORTS = "exports"
EVALUATIONS = "evaluations"
SPLITS = "splits"
LOGS = "logs"
DATABASE = "workbench.db"


@dataclass(frozen=True)
class Workspace:
    """A workspace folder, and the folders outside it the user allowed (``allowed``)."""

    root: Path
    allowed: tuple[Path, ...] = ()

    @classmethod
    def open(cls, root: str | Path, allowed: Iterable[str | Path] = ()) -> Workspace:
        """The workspace at ``root``, its folders made where missing."""
        root = Path(root).expanduser()
        try:
            root.mkdir(parents=True, exist_ok=True)
            root = root.resolve(strict=True)
            for name in (DATASETS, RUNS, EXPORTS, EVALUATIONS, SPLITS, LOGS):
                (root / name).mkdir(exist_ok=True)
        except OSError as error:
            raise InvalidInputError(root, f"cannot make the workspace: {error}") from error
        extra = []
        for path in allowed:
            folder = Path(path).expanduser()
            if not folder.is_dir():
                raise InvalidInputError(folder, "an allowed root must be an existing folder")
            extra.append(folder.resolve())
        return cls(root, tuple(extra))

    @property
    def datasets(self) -> Path:
        return self.root / DATASETS

    @property
    def runs(self) -> Path:
        return self.root / RUNS

    @property
    def exports(self) -> Path:
        return self.root / EXPORTS

    @property
    def evaluations(self) -> Path:
        return self.root / EVALUATIONS

    @property
    def splits(self) -> Path:
        return self.root / SPLITS

    @property
    def logs(self) -> Path:
        return self.root / LOGS

    @property
    def database(self) -> Path:
        return self.root / DATABASE

    @property
    def roots(self) -> tuple[Path, ...]:
        """Where a path a user names may lead: the workspace, then the allowed folders."""
        return (self.root, *self.allowed)

    def resolve(self, path: str | Path) -> Path:
        """``path`` (relative ones from the workspace root) resolved, if inside the roots."""
        return resolve_inside(path, self.roots, base=self.root)


def resolve_inside(
    path: str | Path, roots: Iterable[str | Path], *, base: str | Path | None = None
) -> Path:
    """``path`` fully resolved, or :class:`InvalidInputError` if it leads outside every root.

    A relative path is taken from ``base`` (default: the first root). The path is resolved
    first (``..`` collapsed, every symlink followed) and checked after, so neither traversal
    nor a symlink inside a root that points out gets through. The check is of the path as it
    is now: a symlink swapped in later is the caller's to guard against (we only read and
    launch our own commands, so a local user who can do that already can do more).
    """
    roots = [Path(root) for root in roots]
    if not roots:
        raise ValueError("resolve_inside needs at least one root")
    shown = _shown(path)
    try:
        candidate = Path(path).expanduser()
        if not candidate.is_absolute():
            candidate = Path(base if base is not None else roots[0]) / candidate
        resolved = candidate.resolve()
        # The roots too: a workspace reached through a symlink (/tmp on macOS) is still itself.
        inside = any(resolved.is_relative_to(root.resolve()) for root in roots)
    except (OSError, RuntimeError, ValueError) as error:
        # ValueError: a NUL byte; RuntimeError: a symlink loop (Python 3.11).
        raise InvalidInputError(shown, f"not a usable path ({error})") from None
    if not inside:
        raise InvalidInputError(shown, "outside the workspace and the allowed folders")
    return resolved


def _shown(path: str | Path) -> str:
    """The path as an error may print it: on one line, whatever it holds."""
    text = str(path)
    return text if text.isprintable() else ascii(text)
