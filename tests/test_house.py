"""The house rules of issue 17, kept: short functions, files about one thing, and a README whose
development section names every module the package has."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lvseg"
MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 600


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_function_over_80_lines_and_no_file_over_600():
    long_functions, big_files = [], []
    for path in _sources():
        text = path.read_text()
        name = path.relative_to(ROOT)
        if text.count("\n") > MAX_FILE_LINES:
            big_files.append(f"{name} ({text.count(chr(10))} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1  # def to end, docstring included
                if lines > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}:{node.name} ({lines} lines)")
    assert not long_functions, long_functions
    assert not big_files, big_files
    assert len(_sources()) > 100  # the walk saw the package


def test_readme_development_section_names_every_module():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Development") :]
    layout = section[section.index("```") : section.index("```", section.index("```") + 3)]
    words = set(re.findall(r"[A-Za-z_]+", layout))
    missing = sorted(
        str(path.relative_to(PACKAGE))
        for path in _sources()
        if path.stem not in ("__init__", "__main__") and path.stem not in words
    )
    folders = sorted(
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*")
        if p.is_dir() and (p / "__init__.py").exists() and p.name not in words
    )
    assert not missing, f"modules the README's layout does not name: {missing}"
    assert not folders, f"packages the README's layout does not name: {folders}"


def test_test_modules_have_unique_names():
    # The test folders are not packages: pytest imports each test module by its file name, so
    # two with one name make the whole run fail to collect.
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
    assert len(names) > 50
