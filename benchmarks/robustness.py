"""Robustness: the fuzz and fault suite of the tests, by the thousand, in one table.

Every family of ``tests/fuzzing.py`` (DICOM tags set to junk, NaN, inf or huge values; DICOM
bytes truncated or scribbled over; broken and bomb PNGs; random contour text; link.csv rows
duplicated or pointing out; damaged NIfTI headers and non-finite voxels; FIFOs, link loops and
links out of the input; damaged and locked run databases; a disk that fills up) is run through
the real command line, case by seeded case, as ``tests/test_fuzz.py`` does a few of them. Each
case is a clean one-line error, accepted, a traceback or a hang; input bytes changed or removed
and output left behind by a failed command are counted. The aim: 0 tracebacks, 0 hangs, 0 bytes
lost. Exits 1 otherwise, listing the first offenders.

Run from the project root, as root where the full-disk family should mount its small tmpfs
(about 4 minutes on 2 CPU cores for the default 2,250 cases)::

    .venv/bin/python -m benchmarks.robustness [--cases-per-family 250] [--workers 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

from tests.fuzzing import FAMILIES, Materials, can_mount, make_case, run_case

KINDS = ("clean", "accepted", "traceback", "hang")


def run_share(
    job: tuple[list[tuple[str, int]], str],
) -> list[tuple[str, int, str, str, int, bool, float, str]]:
    """Run the cases ``(family, index)`` in a folder of this worker's own."""
    cases, base = job
    warnings.simplefilter("ignore")  # pydicom warns about every junk value it reads
    folder = Path(tempfile.mkdtemp(dir=base))
    materials = Materials(folder / "materials")
    rows = []
    for family, index in cases:
        case = make_case(family, index, materials, folder / family / str(index))
        outcome = run_case(case)
        rows.append(
            (family, index, case.what, outcome.kind, outcome.lost_bytes, outcome.left_out,
             outcome.seconds, outcome.detail)
        )  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases-per-family", type=int, default=250)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--families", default=",".join(FAMILIES))
    args = parser.parse_args()
    families = [name for name in args.families.split(",") if name]
    if "full-disk" in families and not can_mount():
        print("full-disk family left out: a tmpfs cannot be mounted here (run as root)")
        families.remove("full-disk")
    cases = [(family, index) for index in range(args.cases_per_family) for family in families]
    shares = [cases[worker :: args.workers] for worker in range(args.workers)]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lvseg-robustness-") as base:
        context = multiprocessing.get_context("fork")
        with context.Pool(args.workers) as pool:
            results = [
                row for rows in pool.map(run_share, [(s, base) for s in shares]) for row in rows
            ]
    elapsed = time.perf_counter() - started

    counts: dict[str, Counter] = defaultdict(Counter)
    lost: Counter = Counter()
    left: Counter = Counter()
    seconds: Counter = Counter()
    offenders = []
    for family, index, what, kind, lost_bytes, left_out, spent, detail in results:
        counts[family][kind] += 1
        lost[family] += lost_bytes
        left[family] += int(left_out)
        seconds[family] += spent
        if kind in ("traceback", "hang") or lost_bytes or left_out:
            offenders.append(f"{family} #{index} ({what}): {kind}, {lost_bytes} B lost: {detail}")

    header = ["family", "cases", "clean errors", "accepted", "tracebacks", "hangs", "bytes lost",
              "output left", "s/case"]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    total = Counter()
    for family in families:
        n = sum(counts[family].values())
        row = [family, n, *(counts[family][k] for k in KINDS), lost[family], left[family]]
        total.update(dict(zip(header[1:8], row[1:8], strict=True)))
        print("| " + " | ".join(map(str, row)) + f" | {seconds[family] / max(n, 1):.2f} |")
    print(
        "| **all** | "
        + " | ".join(str(total[h]) for h in header[1:8])
        + f" | {elapsed / max(len(results), 1) * args.workers:.2f} |"
    )
    print(f"\n{len(results)} cases in {elapsed / 60:.1f} min on {args.workers} workers")
    for line in offenders[:20]:
        print(line)
    return 1 if offenders else 0


if __name__ == "__main__":
    sys.exit(main())
