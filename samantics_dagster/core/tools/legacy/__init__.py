"""``samantics import-legacy``: an old samantics dataset into the per-frame tables and the store, nothing re-run.

The formats it reads and what it writes: ``docs/legacy-import.md``. The steps, one module each: read the old
layouts (``read_db``, ``read_selection``), put the old label and split records on their frames (``match``),
hash the accepted files (``hashing``), write the store and the tables (``write``); the types are in ``model``.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from samantics_dagster.core.curate.filters import EXCLUDED
from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.tools.legacy.hashing import claim_hashes, hash_accepted
from samantics_dagster.core.tools.legacy.match import FrameIndex, attach_curation, attach_labels
from samantics_dagster.core.tools.legacy.model import (
    FALLBACK_CATEGORY,
    FALLBACK_SOURCE,
    CategoryReport,
    Frame,
    ImportReport,
    LegacyImportError,
    Placed,
    ProgressFn,
    place,
    read_jsonl,
)
from samantics_dagster.core.tools.legacy.read_db import read_db_layout
from samantics_dagster.core.tools.legacy.read_selection import CurationEntry, curation_entries, read_selection_layout
from samantics_dagster.core.tools.legacy.write import rows, store_images, write_tables

__all__ = [
    "FALLBACK_CATEGORY", "FALLBACK_SOURCE", "CategoryReport", "ImportReport", "LegacyImportError", "ProgressFn",
    "detect_layouts", "import_legacy",
]

_FIX_ROOT = "pass --data-root the old dataset folder (the one holding pipeline.db, images/ + labels.jsonl, or 01-selection/)"


def detect_layouts(data_root: Path) -> list[str]:
    """The old layouts present under ``data_root``: ``pipeline.db`` and/or ``01-selection``."""
    root = Path(data_root)
    found = []
    if (root / "pipeline.db").is_file() or ((root / "images").is_dir() and (root / "labels.jsonl").is_file()):
        found.append("pipeline.db")
    if (root / "01-selection").is_dir():
        found.append("01-selection")
    return found


def _placed(f: Frame, report: ImportReport) -> Placed:
    """The frame with its key; one no record or folder gave a category goes to the fallback category."""
    if f.rel_path is None:
        place(f, None, FALLBACK_CATEGORY)
        report.category(FALLBACK_CATEGORY).problems.append(
            f"{f.origin}: no category (no category folder, no source_path or category in its label record); "
            f"imported into category {FALLBACK_CATEGORY!r}")
    if f.rel_path is None or f.category is None:  # place() keys every frame it gives a category
        raise RuntimeError(f"{f.origin}: still no key after placing it (a bug in the legacy import)")
    return Placed(f.rel_path, f.category, f)


def _read_layout(root: Path, layout: str, tag: str, taken: set[str], report: ImportReport) -> list[Placed]:
    """One layout's frames with their labels and splits; a key an earlier frame has is a problem, not imported."""
    curation: list[CurationEntry] = []
    if layout == "pipeline.db":
        found, images = read_db_layout(root, tag, report)
        labels_file = root / "labels.jsonl"
    else:
        found, images = read_selection_layout(root, tag)
        labels_file = root / "02-labels" / "labels.jsonl"
        curation = curation_entries(root, report)
    index = FrameIndex(found)
    if labels_file.is_file():
        attach_labels(root, read_jsonl(labels_file, report), index, images, tag, report)
    curated_here = attach_curation(curation, index, images, root, report)
    used = {f.image.resolve() for f in index.frames if f.image is not None}
    unused = [rel for rel, p in images.by_rel.items() if p.resolve() not in used]
    if unused:
        report.problems.append(f"{images.root}: {len(unused)} image(s) belong to no old frame or label record "
                               f"(e.g. {unused[0]}); not imported")
    out = []
    for f in index.frames:
        p = _placed(f, report)
        if curated_here and f.curate is None and f.label is not None:
            f.curate = (EXCLUDED, "legacy: not in 03-curation", None)
        if p.rel_path in taken:
            report.category(p.category).problems.append(
                f"{f.origin}: a second old frame with the key {p.rel_path}; the first one is kept")
            continue
        taken.add(p.rel_path)
        out.append(p)
    return out


def import_legacy(data_root: Path, dataset_dir: Path, *, dry_run: bool = False,
                  progress: ProgressFn | None = None) -> ImportReport:
    """Import an old samantics dataset into ``dataset_dir``'s tables and store; see the module doc."""
    root = Path(data_root)
    if not root.exists():
        raise LegacyImportError(f"{root} does not exist; {_FIX_ROOT}")
    if not root.is_dir():
        raise LegacyImportError(f"{root} is a file, not a folder; {_FIX_ROOT}")
    layouts = detect_layouts(root)
    if not layouts:
        raise LegacyImportError(f"{root} holds no old samantics layout (no pipeline.db, images/ + labels.jsonl, "
                                f"or 01-selection/); {_FIX_ROOT}")
    dataset = Path(dataset_dir)
    report = ImportReport(data_root=root, dataset_dir=dataset, layouts=layouts, dry_run=dry_run)
    folder = root.resolve().name or "root"

    taken: set[str] = set()
    placed: list[Placed] = []
    for layout in layouts:
        placed += _read_layout(root, layout, f"{layout}:{folder}", taken, report)
    placed.sort(key=lambda p: p.rel_path)  # keys are unique; every later step goes in key order

    hash_accepted(placed, root, progress)
    store = ImageStore(dataset)
    with store.locked_for_writing() if not dry_run else nullcontext():  # the store is dedupe's index
        claim_hashes(placed, dataset, report)
        store_images(placed, store, dry_run, report)
        by_cat = rows(placed, report)
        if not dry_run:
            write_tables(by_cat, dataset)
    return report
