"""The package's shape: core/ is pure (no Dagster), and nothing imports itself in a cycle, neither two packages
(folders) nor two modules: a cycle means two modules that can only be understood, tested and moved together."""

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


def _module_edges() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from pkg import mod`` counts as importing ``pkg.mod``),
    wherever the import is: at the top, inside a function, or under ``TYPE_CHECKING``."""
    trees = dict(_modules())
    edges: dict[str, set[str]] = {name: set() for name in trees}
    for name, tree in trees.items():
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in trees else node.module
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            edges[name].update(t for t in targets if t in trees and t != name)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_import_cycle_between_modules() -> None:
    edges = _module_edges()
    assert len(edges) > 100 and edges["samantics_dagster.core.export.coco"], "the import graph was not read"
    cycles = _cycles(edges)
    assert not cycles, f"modules importing each other (move what they share into a module of its own): {cycles}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_curation_imports_nothing_from_the_export() -> None:
    """The export reads what curation decided, never the other way round (what both need is in core/dataset)."""
    bad = [(name, imp) for name, tree in _modules() if name.startswith("samantics_dagster.core.curate")
           for imp in _imports(tree) if imp.startswith("samantics_dagster.core.export")]
    assert not bad, bad
