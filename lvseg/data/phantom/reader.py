"""Reading a written phantom (its ``phantom.json`` manifest), and the embedded default."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lvseg.cache import cache_dir
from lvseg.data.phantom.generate import DEFAULT_PATIENTS, DEFAULT_SEED, PHANTOM_VERSION
from lvseg.data.phantom.write import DEFAULT_FORMAT, FORMATS, MANIFEST, write_phantom
from lvseg.data.records import Dataset
from lvseg.errors import InvalidInputError


def looks_like(path: str | Path) -> bool:
    """True for a folder written by :func:`write_phantom` (it holds ``phantom.json``)."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The ``phantom.json`` of a written phantom, checked."""
    manifest_path = Path(path) / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(path, f"no {MANIFEST}: not an lvseg phantom folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInputError(manifest_path, f"cannot read manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
        raise InvalidInputError(manifest_path, "manifest has no valid 'format' (dicom or nifti)")
    if not isinstance(manifest.get("patients"), list):
        raise InvalidInputError(manifest_path, "manifest has no 'patients' list")
    return manifest


def read(path: str | Path, skip_invalid: bool = False, **options: Any) -> Dataset:
    """Read a written phantom through the real reader of its format (format ``"phantom"``).

    The literal path ``"phantom"``, where no such folder exists, reads the embedded default
    phantom (generated into the cache on first use, see :func:`ensure_default_phantom`).
    Records get the phantom's group names (``N``, ``HF-I``, ``HF-NI``, ``HYP``).
    """
    root = Path(path)
    if str(path) == "phantom" and not root.exists():
        root = ensure_default_phantom()
    if not root.is_dir():
        raise InvalidInputError(root, "no such folder")
    manifest = read_manifest(root)
    from lvseg.data.load import reader

    name = "sunnybrook" if manifest["format"] == "dicom" else "nifti"
    module = reader(name)
    _check_options(module.read, name, root, options)
    inner = module.read(root, skip_invalid=skip_invalid, **options)
    names = _original_ids(manifest)
    records = []
    for record in inner:
        patient_id, group = names.get(record.patient_id, (record.patient_id, record.group))
        records.append(record.replace(patient_id=patient_id, group=group or record.group))
    return Dataset(records=records, format="phantom", root=str(root), skipped=list(inner.skipped))


def _check_options(read: Callable[..., Dataset], name: str, root: Path, options: dict) -> None:
    """Refuse an option the format's reader does not take."""
    from lvseg.data.load import unknown_options

    unknown = unknown_options(read, options)
    if unknown:
        raise InvalidInputError(
            root, f"the {name} reader of this phantom takes no option {', '.join(sorted(unknown))}"
        )


def _original_ids(manifest: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """Every id a patient goes by (DICOM, original, NIfTI) -> (its original id, its group): one
    id and group per patient whatever the format, e.g. "PH-N-01"."""
    names: dict[str, tuple[str, str | None]] = {}
    for entry in manifest["patients"]:
        if isinstance(entry, dict) and "original_id" in entry:
            for key in ("patient_id", "original_id", "nifti_id"):
                if key in entry:
                    names[str(entry[key])] = (str(entry["original_id"]), entry.get("group"))
    return names


def default_phantom_dir(
    patients: int | None = None, seed: int | None = None, format: str | None = None
) -> Path:
    """Where the embedded phantom with these parameters (default: 8 patients, seed 0, DICOM)
    lives in the cache."""
    patients = DEFAULT_PATIENTS if patients is None else patients
    seed = DEFAULT_SEED if seed is None else seed
    format = DEFAULT_FORMAT if format is None else format
    return cache_dir() / f"phantom-v{PHANTOM_VERSION}-{format}-{patients}p-seed{seed}"


def ensure_default_phantom(
    patients: int | None = None, seed: int | None = None, format: str | None = None
) -> Path:
    """The embedded phantom's folder, written (atomically) on first use."""
    patients = DEFAULT_PATIENTS if patients is None else patients
    seed = DEFAULT_SEED if seed is None else seed
    format = DEFAULT_FORMAT if format is None else format
    folder = default_phantom_dir(patients, seed, format)
    if looks_like(folder):
        return folder
    try:
        write_phantom(
            folder, patients=patients, seed=seed, format=format, overwrite=folder.exists()
        )
    except InvalidInputError:
        if not looks_like(folder):  # lost a race with another process: use its folder
            raise
    return folder
