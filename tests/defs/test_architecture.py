"""The package's shape: core/ is pure (no Dagster), and no two packages import each other in a cycle."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "samantics_dagster"


def _modules() -> list[tuple[str, ast.Module]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("samantics_dagster", *path.relative_to(PACKAGE).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, ast.parse(path.read_text(encoding="utf-8"))))
    return out


def _package(module: str) -> str:
    """core.label, defs.curate, cli, demo: the folder a module lives in, two levels under the package."""
    parts = module.split(".")
    folder = PACKAGE.joinpath(*parts[1:3])
    return ".".join(parts[:3]) if len(parts) >= 3 and folder.is_dir() else ".".join(parts[:2])


def _imports(tree: ast.Module) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_core_imports_no_dagster() -> None:
    bad = [(name, imp) for name, tree in _modules() if name.startswith("samantics_dagster.core")
           for imp in _imports(tree) if imp == "dagster" or imp.startswith(("dagster.", "dagster_"))
           or imp.startswith("samantics_dagster.defs")]
    assert not bad, bad


def test_no_import_cycle_between_packages() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for name, tree in _modules():
        for imp in _imports(tree):
            if imp.startswith("samantics_dagster.") and _package(imp) != _package(name):
                edges[_package(name)].add(_package(imp))

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and not seen.add(n) and reaches(n, goal, seen))  # type: ignore[func-returns-value]
                   for n in edges.get(start, ()))

    cycles = sorted(f"{a} -> {b} -> ... -> {a}" for a in edges for b in edges[a] if reaches(b, a, set()))
    assert not cycles, cycles
