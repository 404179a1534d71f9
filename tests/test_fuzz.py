"""The fuzz and fault suite (:mod:`fuzzing`), bounded: every family a few seeded cases per run.
Only the documented one-line error (or a clean run) may come out, nothing may hang, no input
byte may change, and a failed command leaves no output behind. ``benchmarks/robustness.py`` runs
the same families by the thousand."""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzzing import FAMILIES, Materials, can_mount, make_case, run_case

CASES_PER_FAMILY = 8


@pytest.fixture(scope="module")
def materials(tmp_path_factory) -> Materials:
    return Materials(tmp_path_factory.mktemp("fuzz-materials"))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_only_documented_errors_come_out(family: str, materials: Materials, tmp_path: Path):
    if family == "full-disk" and not can_mount():
        pytest.skip("the full-disk family mounts a small tmpfs, which needs root")
    problems = []
    kinds = set()
    for index in range(CASES_PER_FAMILY):
        case = make_case(family, index, materials, tmp_path / str(index))
        outcome = run_case(case)
        kinds.add(outcome.kind)
        if outcome.kind in ("traceback", "hang") or outcome.lost_bytes or outcome.left_out:
            problems.append(
                f"{case.what} -> {outcome.kind}, lost {outcome.lost_bytes} B: {outcome.detail}"
            )
    assert not problems, "\n".join(problems)
    assert "clean" in kinds  # the corruptions do reach the readers
