"""Re-export of :mod:`lvseg.errors` for the readers (the error type lives in a leaf module that
every layer, the torch-only model layer included, may import)."""

from lvseg.errors import InvalidInputError, Skipped

__all__ = ["InvalidInputError", "Skipped"]
