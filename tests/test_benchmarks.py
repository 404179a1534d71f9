"""Every benchmark imports against today's package: a restructuring that moves a module breaks
``make bench`` here, in seconds, rather than hours into a benchmark run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(
    p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem not in ("__init__", "timing")
)


def test_every_benchmark_imports_and_has_a_main():
    # One interpreter for all (torch is imported once), run as make bench runs them: as modules
    # from the project root, so the checkout's lvseg is the one imported.
    code = (
        "import importlib, sys\n"
        f"for name in {BENCHMARKS!r}:\n"
        "    module = importlib.import_module('benchmarks.' + name)\n"
        "    assert callable(getattr(module, 'main', None)), name\n"
        "    assert module.__file__.startswith(sys.argv[1]), module.__file__\n"
        "print(len(" + repr(BENCHMARKS) + "))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(ROOT)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(len(BENCHMARKS)) and len(BENCHMARKS) >= 20
