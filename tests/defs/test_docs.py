"""Docstrings point at design notes that exist under docs/ (``../shared`` is beside the repository, not in
a clone, so its citations are not checked here)."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CITED = re.compile(r"``(docs/[\w./-]+\.md)``")


def _sources() -> list[Path]:
    return sorted((REPO / "samantics_dagster").rglob("*.py"))


def test_every_cited_note_exists():
    missing = [(p.relative_to(REPO), m) for p in _sources() for m in CITED.findall(p.read_text())
               if not (REPO / m).is_file()]
    assert not missing, f"docstrings cite notes that are not there: {missing}"


def test_every_note_is_cited_by_its_module():
    cited = {m for p in _sources() for m in CITED.findall(p.read_text())}
    notes = {f"docs/{p.name}" for p in (REPO / "docs").glob("*.md") if p.name != "README.md"}
    assert notes <= cited, f"notes no module points at: {sorted(notes - cited)}"
    assert notes, "docs/ holds no notes"
