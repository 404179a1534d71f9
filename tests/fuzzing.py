"""The fuzz and fault suite: corrupted inputs for every reader and for predict's study reader,
run through the real command line, each case classified.

A **family** turns a seeded random generator and a fresh case folder into a :class:`Case`: the
``lvseg`` arguments to run and the folder of inputs. :func:`run_case` runs it in this process
(the CLI as a user calls it, through Typer's runner) under a time limit, and says what happened
(:class:`Outcome`):

- ``clean``: exit code 2 ending in the one ``error: ...`` line, the documented failure;
- ``accepted``: exit code 0 (the input was read, or a bad part skipped and listed);
- ``traceback``: anything else escaped (an exception, another exit code, a message of several
  lines);
- ``hang``: still running after the limit (SIGALRM interrupts even a blocking open of a FIFO).

Around each run every file of the case folder, except ``--out``, is hashed before and after:
``lost_bytes`` counts the bytes of files changed or removed, which must be 0. A failed run must
also leave no ``--out`` behind.

``tests/test_fuzz.py`` runs every family a few times per test run (bounded, seeded);
``benchmarks/robustness.py`` runs them by the thousand and prints the table for the README.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# The builders of the deploy and dashboard tests (the oracle model, synthetic runs) are reused as
# they are; those folders are not packages, so they are put on the path here.
HERE = Path(__file__).resolve().parent
for _folder in (HERE, HERE / "deploy", HERE / "dashboard"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from builders import linked_layout, within, write_dicom  # noqa: E402

TIME_LIMIT_S = 60
"""A case still running after this long is a hang (the slowest clean case takes about 2 s)."""


@dataclass
class Case:
    family: str
    argv: list[str]
    root: Path
    """The case folder: every input lives under it, and nothing in it but ``out`` may change."""
    out: Path | None = None
    what: str = ""
    disk: Path | None = None
    """A small disk the command writes to: after it, nothing but ``out`` may be on it."""
    after: Callable[[], object] | None = None
    """Undo a fault the case set up (unmount a full disk, release a lock), after the run."""


@dataclass
class Outcome:
    kind: str
    """"clean", "accepted", "traceback" or "hang"."""
    lost_bytes: int
    seconds: float
    detail: str = ""
    left_out: bool = False
    """A failed run left its --out behind, or partial files beside it on a small disk."""


# ------------------------------------------------------------------------------ running


def snapshot(root: Path, skip: Path | None) -> dict[str, tuple[int, str]]:
    """(size, sha256) of every regular file under ``root``, ``skip`` left out; links are not
    followed out of it (a link is recorded as its target text). SQLite's ``-wal`` and ``-shm``
    files come and go with connections, and are no one's data: they are left out."""
    found = {}
    for folder, dirs, files in os.walk(root):
        if skip is not None and Path(folder) == skip.parent:
            dirs[:] = [d for d in dirs if Path(folder, d) != skip]
            files = [f for f in files if Path(folder, f) != skip]
        for name in files:
            if name.endswith(("-wal", "-shm")):
                continue
            path = Path(folder, name)
            if path.is_symlink():
                found[str(path)] = (0, "link:" + os.readlink(path))
            elif path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[str(path)] = (path.stat().st_size, digest)
    return found


def lost(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> int:
    return sum(
        size
        for path, (size, digest) in before.items()
        if after.get(path, (0, "")) != (size, digest)
    )


def run_case(case: Case, limit_s: int = TIME_LIMIT_S) -> Outcome:
    """Run one case through the CLI and classify it (module docstring)."""
    from typer.testing import CliRunner

    from lvseg.cli import app

    before = snapshot(case.root, case.out)
    started = time.perf_counter()
    result = None
    try:
        with within(limit_s):
            result = CliRunner().invoke(app, case.argv, catch_exceptions=True)
    except TimeoutError:
        pass
    seconds = time.perf_counter() - started
    if result is None:
        kind, detail = "hang", f"still running after {limit_s} s"
    else:
        output = result.output.strip()
        error = result.exception
        if error is not None and not isinstance(error, SystemExit):
            kind, detail = "traceback", f"{type(error).__name__}: {error}"[:300]
        elif result.exit_code == 0:
            kind, detail = "accepted", ""
        elif (
            result.exit_code == 2
            and output
            and output.splitlines()[-1].startswith("error: ")
            and "Traceback" not in output
            and sum(line.startswith("error: ") for line in output.splitlines()) == 1
        ):  # progress lines (export's steps) may come before the one error line
            kind, detail = "clean", output.splitlines()[-1][:300]
        else:
            kind, detail = "traceback", f"exit {result.exit_code}: {output[-300:]}"
    left = []
    if kind != "accepted" and case.out is not None and case.out.exists():
        left.append(case.out)
    if case.disk is not None and case.disk.is_dir():
        left += [path for path in case.disk.iterdir() if path != case.out]
    if case.after is not None:
        case.after()
    lost_bytes = lost(before, snapshot(case.root, case.out))
    if left:
        detail += f" (left behind: {', '.join(p.name for p in left)})"
    return Outcome(kind, lost_bytes, seconds, detail, bool(left))


# ------------------------------------------------------------------------------ materials

JUNK_NUMBERS = [
    "NaN", "nan", "inf", "-inf", "Infinity", "junk", "", " ", "1e400", "-1e400", "0", "-1",
    "-0", str(2**70), str(-(2**70)), "1.5", "12abc", "1\\2", "1\\2\\3\\4\\5\\6\\7", "\x00",
    "9" * 40, "0x1F", "+", "--3", "1e-400",
]  # fmt: skip
"""Values a numeric DICOM tag can hold in a damaged or foreign file."""

DICOM_TAGS = {
    "InstanceNumber": "IS",
    "SliceLocation": "DS",
    "PixelSpacing": "DS",
    "RescaleSlope": "DS",
    "RescaleIntercept": "DS",
    "ImagePositionPatient": "DS",
    "ImageOrientationPatient": "DS",
    "TriggerTime": "DS",
    "SliceThickness": "DS",
    "SpacingBetweenSlices": "DS",
    "CardiacNumberOfImages": "IS",
    "Rows": "US",
    "Columns": "US",
    "BitsAllocated": "US",
    "SamplesPerPixel": "US",
    "NumberOfFrames": "IS",
}
"""The tags the readers use, and their value representations."""


def write_cine(folder: Path, slices: int = 3, phases: int = 3, size: int = 48) -> None:
    """A small DICOM cine with a bright disc (the oracle model finds it): one series."""
    rows, cols = np.mgrid[:size, :size]
    for s in range(slices):
        for p in range(phases):
            radius = 9 - 2 * np.cos(2 * np.pi * p / phases) - s
            disc = (rows - size / 2) ** 2 + (cols - size / 2) ** 2 <= radius**2
            pixels = np.where(disc, 900, 100).astype(np.int16)
            instance = s * phases + p + 1
            write_dicom(
                folder / f"{instance}.dcm",
                pixels,
                instance,
                PatientID="FUZZ",
                StudyInstanceUID="1.2.3.4",
                SeriesInstanceUID="1.2.3.4.5",
                ImagePositionPatient=[0, 0, 8.0 * s],
                TriggerTime=40.0 * p,
                CardiacNumberOfImages=phases,
            )


def write_folders(root: Path, count: int = 3, size: int = 24) -> None:
    from PIL import Image

    for index in range(count):
        image = np.full((size, size), 40, np.uint8)
        image[6:18, 6:18] = 200
        for folder, array in (("Images", image), ("Labels", (image > 100).astype(np.uint8))):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / folder / f"P{index % 2}-IM-0001-{index + 1:04d}.png")


def write_nifti_pair(root: Path, size: int = 24) -> None:
    import nibabel as nib

    root.mkdir(parents=True, exist_ok=True)
    volume = np.full((size, size, 3), 50, np.int16)
    volume[6:18, 6:18] = 300
    labels = (volume > 100).astype(np.uint8) * 3
    affine = np.diag([1.5, 1.5, 8.0, 1.0])
    nib.save(nib.Nifti1Image(volume, affine), str(root / "case01.nii.gz"))
    nib.save(nib.Nifti1Image(labels, affine), str(root / "case01_gt.nii.gz"))


@dataclass
class Materials:
    """The clean inputs every case starts from, made once in ``folder``."""

    folder: Path
    oracle: Path = field(init=False)

    def __post_init__(self) -> None:
        from oracle import write_oracle_model

        self.folder.mkdir(parents=True, exist_ok=True)
        linked_layout(self.folder / "linked")
        write_cine(self.folder / "cine")
        write_folders(self.folder / "folders")
        write_nifti_pair(self.folder / "nifti")
        self.oracle = write_oracle_model(self.folder / "oracle.onnx")

    def copy(self, name: str, root: Path) -> Path:
        target = root / name
        shutil.copytree(self.folder / name, target, symlinks=True)
        return target

    def model(self, root: Path) -> Path:
        return Path(shutil.copy(self.oracle, root / "model.onnx"))


# ------------------------------------------------------------------------------ families


def _pick(rng: np.random.Generator, items):
    items = list(items)
    return items[int(rng.integers(len(items)))]


def _dicom_target(rng, materials: Materials, root: Path) -> tuple[Path, list[str], Path | None]:
    """A copy of the linked layout (``data inspect``) or of the cine (``predict``)."""
    if rng.random() < 0.5:
        folder = materials.copy("linked", root)
        return folder, ["data", "inspect", str(folder)], None
    folder = materials.copy("cine", root)
    out = root / "out"
    return folder, ["predict", str(materials.model(root)), str(folder), "--out", str(out)], out


def _maybe_skip(rng, argv: list[str]) -> list[str]:
    return [*argv, "--skip-invalid"] if rng.random() < 0.3 else argv


def family_dicom_tags(rng, materials: Materials, root: Path) -> Case:
    """A tag the readers use set to junk, NaN, inf, huge or the wrong count, in one file."""
    import pydicom
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import DataElement
    from pydicom.uid import ImplicitVRLittleEndian

    folder, argv, out = _dicom_target(rng, materials, root)
    file = _pick(rng, sorted(folder.rglob("*.dcm")))
    name = _pick(rng, sorted(DICOM_TAGS))
    value = _pick(rng, JUNK_NUMBERS)
    dicom = pydicom.dcmread(file)
    tag = tag_for_keyword(name)
    if rng.random() < 0.1:
        dicom.pop(tag, None)
        what = f"{file.name}: {name} removed"
    else:
        if DICOM_TAGS[name] == "US":  # binary: an out-of-range or zero value
            raw = struct.pack("<H", int(_pick(rng, [0, 1, 65535, 3])))
            what = f"{file.name}: {name} = {struct.unpack('<H', raw)[0]}"
        else:
            raw = value.encode("latin-1", "replace")
            raw += b" " * (len(raw) % 2)
            what = f"{file.name}: {name} = {value!r}"
        # Implicit VR: the bytes are stored as they are, and read back as the tag's own VR.
        dicom[tag] = DataElement(tag, "OB", raw)
    dicom.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    dicom.save_as(file, enforce_file_format=True)
    return Case("dicom-tags", _maybe_skip(rng, argv), root, out, what)


def family_dicom_bytes(rng, materials: Materials, root: Path) -> Case:
    """A DICOM file truncated, overwritten with random bytes in places, or replaced."""
    folder, argv, out = _dicom_target(rng, materials, root)
    file = _pick(rng, sorted(folder.rglob("*.dcm")))
    data = bytearray(file.read_bytes())
    how = _pick(rng, ["truncate", "scribble", "zero", "random", "magic-only", "grow"])
    if how == "truncate":
        data = data[: int(rng.integers(0, len(data)))]
    elif how == "scribble":
        for _ in range(int(rng.integers(1, 20))):
            at = int(rng.integers(0, len(data)))
            span = int(rng.integers(1, 16))
            data[at : at + span] = rng.bytes(span)
    elif how == "zero":
        data = bytearray(len(data))
    elif how == "random":
        data = bytearray(rng.bytes(int(rng.integers(0, 4096))))
    elif how == "magic-only":
        data = bytearray(128) + b"DICM" + bytearray(rng.bytes(int(rng.integers(0, 64))))
    else:
        data += rng.bytes(int(rng.integers(1, 4096)))
    file.write_bytes(bytes(data))
    return Case("dicom-bytes", _maybe_skip(rng, argv), root, out, f"{file.name}: {how}")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def family_png(rng, materials: Materials, root: Path) -> Case:
    """An image or mask PNG broken: truncated, scribbled, a bomb header, a broken chunk, an
    alpha-only mask, another size or mode."""
    from PIL import Image

    folder = materials.copy("folders", root)
    file = _pick(rng, sorted((folder / _pick(rng, ["Images", "Labels"])).glob("*.png")))
    data = bytearray(file.read_bytes())
    how = _pick(
        rng,
        ["truncate", "scribble", "bomb", "bad-crc", "empty", "random", "size", "mode", "alpha"],
    )
    if how == "truncate":
        data = data[: int(rng.integers(0, len(data)))]
    elif how == "scribble":
        for _ in range(int(rng.integers(1, 10))):
            at = int(rng.integers(8, len(data)))
            data[at : at + 4] = rng.bytes(4)
    elif how == "bomb":  # a valid header claiming a huge image, and a tiny IDAT
        side = int(_pick(rng, [20_000, 65_535, 100_000, 2**31 - 1]))
        header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
        data = bytearray(
            b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + _png_chunk(b"IEND", b"")
        )
    elif how == "bad-crc":
        data[29:33] = rng.bytes(4)  # IHDR's CRC
    elif how == "empty":
        data = bytearray()
    elif how == "random":
        data = bytearray(b"\x89PNG\r\n\x1a\n" + rng.bytes(int(rng.integers(0, 512))))
    else:
        array = np.asarray(Image.open(file))
        if how == "size":
            picture = Image.fromarray(np.resize(array, (7, 9)))
        elif how == "mode":
            picture = Image.fromarray(array.astype(np.float32) * np.nan).convert("F")
        else:  # a mask drawn only in the alpha channel
            rgba = np.zeros((*array.shape[:2], 4), np.uint8)
            rgba[..., 3] = (array > 0) * 255
            picture = Image.fromarray(rgba, "RGBA")
        buffer = io.BytesIO()
        picture.save(buffer, format="TIFF" if how == "mode" else "PNG")
        data = bytearray(buffer.getvalue())
    file.write_bytes(bytes(data))
    argv = ["data", "inspect", str(folder)]
    if rng.random() < 0.3:
        argv += [
            "--name-pattern",
            _pick(rng, [r"(?P<patient>P\d)-IM-\d+-(?P<instance>\w+)", "(", "x"]),
        ]
    return Case("png", _maybe_skip(rng, argv), root, None, f"{file.parent.name}/{file.name}: {how}")


CONTOUR_TOKENS = ["1", "5.5", "20", "31.9", "-3", "40", "nan", "inf", "x", "", "1e400", "0", "1,2"]


def family_contour(rng, materials: Materials, root: Path) -> Case:
    """A contour file replaced by random lines: junk tokens, NaN, points outside the image,
    too few points, collinear points, binary."""
    folder = materials.copy("linked", root)
    file = _pick(rng, sorted(folder.rglob("*contour-manual.txt")))
    how = _pick(rng, ["tokens", "collinear", "binary", "few"])
    if how == "tokens":
        lines = [
            " ".join(_pick(rng, CONTOUR_TOKENS) for _ in range(int(rng.integers(0, 4))))
            for _ in range(int(rng.integers(0, 12)))
        ]
        text = "\n".join(lines).encode()
    elif how == "collinear":
        start, step = rng.uniform(2, 12, 2), rng.uniform(-1, 1, 2)
        text = "\n".join(
            f"{x:.2f} {y:.2f}" for x, y in (start + k * step for k in range(6))
        ).encode()
    elif how == "binary":
        text = rng.bytes(int(rng.integers(0, 256)))
    else:
        text = b"10 10\n12 12\n"
    file.write_bytes(text)
    return Case(
        "contour",
        _maybe_skip(rng, ["data", "inspect", str(folder)]),
        root,
        None,
        f"{file.name}: {how}",
    )


def family_link_csv(rng, materials: Materials, root: Path) -> Case:
    """link.csv rows duplicated, pointing out of the dataset, empty, or binary."""
    folder = materials.copy("linked", root)
    header = "patient_id,original_id"
    row = "SCD0000101,SC-HF-I-1"
    how = _pick(
        rng, ["twice", "dotdot", "absolute", "empty-id", "binary", "no-rows", "bom", "extra"]
    )
    text = {
        "twice": f"{header}\n{row}\n{row}\n",
        "dotdot": f"{header}\n../../../../etc,SC-HF-I-1\n",
        "absolute": f"{header}\nSCD0000101,/etc\n",
        "empty-id": f"{header}\n,\n",
        "binary": None,
        "no-rows": f"{header}\n",
        "bom": f"\ufeff{header}\n{row}\n",
        "extra": f"{header},group,x\n{row},HF-I,1,2,3\n",
    }[how]
    path = folder / "link.csv"
    path.write_bytes(rng.bytes(int(rng.integers(1, 128))) if text is None else text.encode())
    return Case("link-csv", ["data", "inspect", str(folder)], root, None, how)


def family_nifti(rng, materials: Materials, root: Path) -> Case:
    """A NIfTI volume with a damaged header (dims, spacing), non-finite voxels, or bytes."""
    import nibabel as nib

    folder = materials.copy("nifti", root)
    file = folder / _pick(rng, ["case01.nii.gz", "case01_gt.nii.gz"])
    how = _pick(rng, ["nan", "inf", "pixdim", "dims", "truncate", "random", "4d", "empty"])
    if how in ("nan", "inf", "pixdim", "4d"):
        image = nib.load(str(file))
        data = np.asarray(image.dataobj).astype(np.float32)
        if how == "nan":
            data[tuple(rng.integers(0, s) for s in data.shape)] = np.nan
        elif how == "inf":
            data.flat[int(rng.integers(data.size))] = _pick(rng, [np.inf, -np.inf])
        elif how == "4d":
            data = np.repeat(data[..., None], int(rng.integers(1, 4)), axis=3)
        damaged = nib.Nifti1Image(data, image.affine)
        if how == "pixdim":  # the header's spacing, the affine then made from it alone
            damaged.header["pixdim"][1 + int(rng.integers(3))] = _pick(
                rng, [0.0, np.nan, -1e30, 1e30]
            )
            damaged.header.set_sform(None, code=0)
            damaged.header.set_qform(None, code=0)
        nib.save(damaged, str(file))
    else:
        data = bytearray(file.read_bytes())
        if how == "dims":
            raw = bytearray(zlib_decompress_gzip(bytes(data)))
            at = 40 + 2 * int(rng.integers(0, 8))
            raw[at : at + 2] = struct.pack("<h", int(_pick(rng, [-1, 0, 32767, 9])))
            data = bytearray(gzip_compress(bytes(raw)))
        elif how == "truncate":
            data = data[: int(rng.integers(0, len(data)))]
        elif how == "random":
            data = bytearray(rng.bytes(int(rng.integers(0, 1024))))
        else:
            data = bytearray()
        file.write_bytes(bytes(data))
    if rng.random() < 0.5:
        argv = ["data", "inspect", str(folder), "--labels", "lv=3"]
    else:
        out = root / "out"
        argv = [
            "predict",
            str(materials.model(root)),
            str(folder / "case01.nii.gz"),
            "--out",
            str(out),
        ]
        return Case("nifti", argv, root, out, f"{file.name}: {how}")
    return Case("nifti", argv, root, None, f"{file.name}: {how}")


def zlib_decompress_gzip(data: bytes) -> bytes:
    import gzip

    return gzip.decompress(data)


def gzip_compress(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data)


def family_filesystem(rng, materials: Materials, root: Path) -> Case:
    """FIFOs, link loops, links out of the input, dangling links, a folder named like a file,
    in any input folder; or --out set to an input, the model or their parent."""
    name = _pick(rng, ["linked", "cine", "folders", "nifti"])
    folder = materials.copy(name, root)
    (root / "outside").mkdir()
    (root / "outside" / "secret.dcm").write_bytes(
        (materials.folder / "cine" / "1.dcm").read_bytes()
    )
    inner = _pick(rng, [p for p in [folder, *folder.rglob("*")] if p.is_dir()])
    how = _pick(
        rng,
        ["fifo", "loop", "link-out", "dangling", "dir-as-file", "out-is-input", "out-is-parent"],
    )
    suffix = {"linked": ".dcm", "cine": ".dcm", "folders": ".png", "nifti": ".nii.gz"}[name]
    entry = inner / f"zz{int(rng.integers(100))}{suffix}"
    if how == "fifo":
        os.mkfifo(entry)
    elif how == "loop":
        (inner / "loop").symlink_to("..")
    elif how == "link-out":
        entry.symlink_to(root / "outside" / "secret.dcm")
        (inner / "out-dir").symlink_to(root / "outside")
    elif how == "dangling":
        entry.symlink_to(root / "nowhere")
    elif how == "dir-as-file":
        entry.mkdir()
    out = root / "out"
    if how == "out-is-input":
        out = folder
    elif how == "out-is-parent":
        out = root
    if name in ("cine", "nifti") or how.startswith("out-"):
        target = folder / "case01.nii.gz" if name == "nifti" else folder
        argv = ["predict", str(materials.model(root)), str(target), "--out", str(out)]
        if how.startswith("out-") or rng.random() < 0.3:
            argv.append("--overwrite")
        return Case(
            "filesystem",
            _maybe_skip(rng, argv),
            root,
            None if how.startswith("out-") else out,
            f"{name}: {how}",
        )
    argv = ["data", "inspect", str(folder)] + (["--labels", "lv=3"] if name == "nifti" else [])
    return Case("filesystem", argv, root, None, f"{name}: {how}")


def family_run_db(rng, materials: Materials, root: Path) -> Case:
    """A run whose run.db has damaged pages, a row of bad JSON, is truncated, or is locked by
    another writer; read by runs show, runs list and select."""
    from synthetic_run import write_run

    run = write_run(root / "runs" / "run", epochs=2, steps_per_epoch=4, alerts=False)
    write_run(root / "runs" / "other", epochs=1, steps_per_epoch=2, alerts=False)
    database = run / "run.db"
    how = _pick(rng, ["pages", "truncate", "bad-json", "header", "locked"])
    after = None
    if how == "pages":
        data = bytearray(database.read_bytes())
        page = 4096 * int(rng.integers(1, max(2, len(data) // 4096)))
        for _ in range(int(rng.integers(1, 8))):
            at = page + int(rng.integers(0, 4096))
            data[at : at + 8] = rng.bytes(8)
        database.write_bytes(bytes(data))
    elif how == "truncate":
        data = database.read_bytes()
        database.write_bytes(data[: int(rng.integers(0, len(data)))])
    elif how == "header":
        data = bytearray(database.read_bytes())
        count = int(rng.integers(1, 100))
        data[:count] = rng.bytes(count)
        database.write_bytes(bytes(data))
    elif how == "bad-json":
        with sqlite3.connect(database) as connection:
            table = _pick(rng, ["meta", "epochs", "steps", "checkpoints"])
            column = {
                "meta": "value",
                "epochs": "metrics",
                "steps": "metrics",
                "checkpoints": "metrics",
            }[table]
            connection.execute(
                f"UPDATE {table} SET {column} = ?", (_pick(rng, ["{", "nan", "[1,", "\x00"]),)
            )
        connection.close()
    else:
        holder = sqlite3.connect(database, timeout=0.1, isolation_level=None)
        holder.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # closing it then changes nothing
        holder.execute("BEGIN EXCLUSIVE")
        after = holder.close
    argv = _pick(
        rng,
        [["runs", "show", str(run)], ["runs", "list", str(root / "runs")], ["select", str(run)]],
    )
    return Case("run-db", argv, root, None, how, after=after)


def mount_small_disk(folder: Path, size_kb: int) -> Callable[[], None] | None:
    """A tmpfs of ``size_kb`` at ``folder`` (root only); the unmount, or None where not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return None
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)],
        capture_output=True,
    )
    if done.returncode != 0:
        return None
    return lambda: subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def family_full_disk(rng, materials: Materials, root: Path) -> Case:
    """A command writing its output onto a disk that fills up: a small tmpfs (root only; the
    family is left out where none can be mounted, :func:`can_mount`)."""
    disk = root / "disk"
    size_kb = int(_pick(rng, [16, 64, 256, 1024, 4096]))
    unmount = mount_small_disk(disk, size_kb)
    if unmount is None:
        raise RuntimeError("no tmpfs could be mounted: run the full-disk family as root")
    out = disk / "out"
    which = _pick(rng, ["phantom", "predict", "montage"])
    if which == "phantom":
        argv = ["data", "phantom", str(out), "--patients", "1", "--seed", str(int(rng.integers(9)))]
    elif which == "predict":
        cine = materials.copy("cine", root)
        argv = ["predict", str(materials.model(root)), str(cine), "--out", str(out)]
    else:
        folders = materials.copy("folders", root)
        out = disk / "montage.png"
        argv = ["data", "inspect", str(folders), "--out", str(out)]
    return Case("full-disk", argv, root, out, f"{which} on {size_kb} KiB", disk=disk, after=unmount)


def can_mount() -> bool:
    """Whether this process may mount a small tmpfs (the full-disk family needs one)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="lvseg-tmpfs-"))
    unmount = mount_small_disk(folder, 16)
    if unmount is not None:
        unmount()
    folder.rmdir()
    return unmount is not None


FAMILIES: dict[str, Callable[[np.random.Generator, Materials, Path], Case]] = {
    "dicom-tags": family_dicom_tags,
    "dicom-bytes": family_dicom_bytes,
    "png": family_png,
    "contour": family_contour,
    "link-csv": family_link_csv,
    "nifti": family_nifti,
    "filesystem": family_filesystem,
    "run-db": family_run_db,
    "full-disk": family_full_disk,
}


def make_case(family: str, index: int, materials: Materials, root: Path) -> Case:
    """Case ``index`` of ``family``, in the fresh folder ``root``: the same every time."""
    seed = zlib.crc32(f"{family}/{index}".encode())
    root.mkdir(parents=True, exist_ok=False)
    return FAMILIES[family](np.random.default_rng(seed), materials, root)
