"""The import contract of pyproject.toml (``[tool.importlinter]``), run by import-linter: the
package's layers import only those below them (``data`` and ``model`` nothing above them, ``cli``
the only top), and the dashboard's server, readers and launcher never import PyTorch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason="import-linter is not installed (pip install -e .[dev])"
)


def lint(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_import_contract_holds():
    result = lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_a_layer_that_imports_upward_breaks_it(tmp_path):
    """The check is real: with ``data`` moved to the top, every layer that reads data (config,
    runs, segment, evaluate...) imports upward, and import-linter says so."""
    contract = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    config = contract[contract.index("[tool.importlinter]") :]
    upside_down = config.replace('    "lvseg.data",\n', "").replace(
        '    "lvseg.cli",\n', '    "lvseg.data",\n    "lvseg.cli",\n'
    )
    assert upside_down != config
    (tmp_path / "contract.toml").write_text(upside_down, encoding="utf-8")
    result = lint(tmp_path / "contract.toml")
    assert result.returncode == 1
    assert "the pipeline's layers: each imports only those below it BROKEN" in result.stdout
