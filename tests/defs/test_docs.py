"""The docs stand on their own in a clone: docstrings point at notes that exist under docs/, and no file of the
project cites a folder outside the repository or a tracker's issue numbers."""

import re
import subprocess
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


# What a clone of the repository holds: everything a user reads or runs. None of it may point outside the
# clone (a design folder beside the repository) or at a tracker's numbers, which a user cannot follow.
STANDALONE = ["samantics_dagster", "tests", "benchmarks", "scripts", "docs", "deploy", "docker", "README.md",
              "Makefile", "pyproject.toml", "docker-compose.yml", "dagster.yaml", "workspace.yaml", ".env.example"]
OUTSIDE = re.compile(r"\.\./shared|/work/shared|\bshared/(?:DESIGN|notes)", re.IGNORECASE)
TRACKER = re.compile(r"\bissues?\s*#?\d+|\b(?:this|from the|before the) issue\b|(?<![\w/.-])#\d+\b", re.IGNORECASE)


def _clone_files() -> list[Path]:
    """The files a clone holds (tracked, or new and not ignored): not what tests and runs leave in ignored
    folders (tests/artifacts' HTML snapshots of the UI, venvs, caches)."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                             "--", *STANDALONE], capture_output=True, text=True, check=True).stdout
    return sorted(REPO / name for name in listed.split("\0") if name)


def _project_text_files() -> list[Path]:
    files = []
    for p in _clone_files():
        if not p.is_file() or p.resolve() == Path(__file__).resolve():
            continue
        try:
            p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # images, wheels: not text
        files.append(p)
    return files


def _citations(files: list[Path]) -> list[str]:
    found = []
    for p in files:
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            for m in [*OUTSIDE.finditer(line), *TRACKER.finditer(line)]:
                found.append(f"{p.relative_to(REPO) if p.is_relative_to(REPO) else p.name}:{n}: {m.group(0)!r}")
    return found


def test_nothing_cites_a_folder_outside_the_clone_or_a_tracker_number():
    files = _project_text_files()
    assert len(files) > 100 and REPO / "README.md" in files
    found = _citations(files)
    assert not found, "cite docs/ or the code instead (a clone has neither ../shared nor the tracker): " + "; ".join(found)


def test_the_citation_check_finds_each_kind(tmp_path):
    cases = {"a.py": "# see ../shared/DESIGN.md", "b.md": "the code before issue 12", "c.py": "# fixed in #26",
             "d.sh": "# Bar (from the issue): fast", "e.md": "ultralytics#26194 and a colour #1f77b4 are fine"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text + "\n")
    found = " ".join(_citations(sorted(tmp_path.iterdir())))
    assert all(name in found for name in ["a.py", "b.md", "c.py", "d.sh"]) and "e.md" not in found


def test_readme_and_docs_index_link_the_design_note():
    assert (REPO / "docs" / "design.md").is_file()
    assert "docs/design.md" in (REPO / "README.md").read_text()
    assert "(design.md)" in (REPO / "docs" / "README.md").read_text()


def test_make_bench_runs_every_benchmark_the_readme_quotes():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile[makefile.index("\nbench:"):].split("\n\n")[0]
    quoted = set(re.findall(r"\bbench_\w+\.py", (REPO / "README.md").read_text()))
    assert {"bench_dedupe.py", "bench_scale.py"} <= quoted
    missing = sorted(q for q in quoted if f"benchmarks/{q}" not in recipe)
    assert not missing, f"the README quotes figures from {missing}, which `make bench` does not run"
