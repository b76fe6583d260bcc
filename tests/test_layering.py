"""The one-way dependency rule between the packages, read from the source itself.

worker -> core, compression; api -> core; core imports neither; api never imports torch or the
engine; compression is a plain library; the client imports nothing of the server.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

FORBIDDEN = {
    "core": {"api", "worker", "launcher", "compression", "torch"},
    "api": {"worker", "launcher", "compression", "torch"},
    "worker": {"api", "launcher"},
    "compression": {"api", "core", "worker", "launcher"},
    "jobspec": {"api", "core", "worker", "launcher", "compression", "torch"},
    "client": {"api", "core", "worker", "launcher", "compression", "jobspec", "torch"},
}


def imported_roots(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (absolute imports only)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_go_one_way(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no sources under {package}/"
    offences = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & FORBIDDEN[package])
        for path in files
    }
    assert {path: bad for path, bad in offences.items() if bad} == {}


def test_no_two_service_modules_share_a_name() -> None:
    names: dict[str, list[str]] = {}
    for package in ("api", "core", "worker", "launcher", "compression", "jobspec"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name != "__init__.py":
                names.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in names.items() if len(paths) > 1} == {}
