"""The import's types: the report it hands back, an old frame while it is imported, and the small parsers
every reader shares (old paths, old hashes, an old image folder, a JSON-lines file)."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import pandas as pd

from samantics_dagster.core.dedupe.engine import ACCEPTED
from samantics_dagster.core.workdir.naming import is_frame_file, parse_frame_name

FALLBACK_CATEGORY = "legacy"
FALLBACK_SOURCE = "legacy"
ProgressFn = Callable[[int, int], None]
Curation = tuple[str, str | None, str | None]   # status, reason, split

_HEX16 = re.compile(r"^[0-9a-f]{16}$")
SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


class LegacyImportError(Exception):
    """The import cannot start (no such folder, no layout it knows); the one-line message says what to do."""


@dataclass
class CategoryReport:
    frames: int = 0           # rows written to deduped_images (accepted + rejected)
    accepted: int = 0
    rejected: int = 0
    images_stored: int = 0    # copied into images/ (or that would be, in a dry run)
    images_present: int = 0   # already in images/ under the same hash
    labels: int = 0           # done rows written to sam3_labels
    label_failed: int = 0     # failed rows written to sam3_labels
    curated: int = 0          # rows written to curated_coco
    skipped: int = 0          # old frames not imported (not selected yet, image missing or unreadable)
    problems: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    data_root: Path
    dataset_dir: Path
    layouts: list[str]
    dry_run: bool
    categories: dict[str, CategoryReport] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # not tied to one category (a bad line, the db itself)

    def category(self, name: str) -> CategoryReport:
        return self.categories.setdefault(name, CategoryReport())

    @property
    def all_problems(self) -> list[str]:
        return self.problems + [f"[{c}] {p}" for c, rep in sorted(self.categories.items()) for p in rep.problems]

    def summary(self) -> pd.DataFrame:
        """One row per category (and a total), counts only; ``all_problems`` has the details."""
        cols = ["frames", "accepted", "rejected", "images_stored", "images_present", "labels", "label_failed",
                "curated", "skipped"]
        rows = [{"category": name, **{c: getattr(rep, c) for c in cols}, "problems": len(rep.problems)}
                for name, rep in sorted(self.categories.items())]
        total = {"category": "(total)", **{c: sum(r[c] for r in rows) for c in cols},
                 "problems": len(self.all_problems)}
        return pd.DataFrame(rows + [total], columns=["category", *cols, "problems"])


@dataclass(frozen=True)
class Hashed:
    """What hashing an accepted frame's old file found: its store name and the row's size columns."""

    path: Path      # the old file that was hashed (copied into the store only if it is still these bytes)
    dhash: str      # this project's dhash, hex: the store name
    width: int
    height: int
    size: int
    digest: str


@dataclass
class Frame:
    """One old frame while the layouts are read: its key may not be known yet (``Placed`` is the keyed one)."""

    origin: str                     # where it came from, for messages ("pipeline.db row 12", a file)
    tag: str                        # <layout>:<folder>, after imported: in the labeler and settings
    name: str                       # file name, {video_id}_{timestamp_ms}.jpg when grabby named it
    rel_path: str | None = None     # key: {source}/{category}/{name}; None until known
    category: str | None = None
    video_id: str | None = None
    status: str = ACCEPTED
    reason: str | None = None
    dup_of: str | None = None
    detail: str | None = None
    legacy_dhash: str | None = None
    image: Path | None = None       # the old file holding the frame's bytes
    label: dict[str, Any] | None = None   # its label record
    label_origin: str | None = None
    label_status: str | None = None
    label_error: str | None = None
    curate: Curation | None = None
    curate_count: int | None = None
    hashed: Hashed | None = None    # set by hashing for an accepted frame whose file decodes
    error: str | None = None        # why an accepted frame cannot be imported


class Placed(NamedTuple):
    """A frame once every layout is read: its key is known. Hashing and the writers work on these."""

    rel_path: str
    category: str
    frame: Frame


def clean(value: object) -> str | None:
    """A stripped string, or None for NULL, NaN and blanks (old tables hold all three)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def split_rel(raw: str) -> tuple[str | None, str | None, str]:
    """(source, category, name) from a path as the old scripts wrote it (relative, or absolute)."""
    parts = [p for p in PurePosixPath(raw.replace("\\", "/")).parts if p not in ("/", ".", "")]
    name = parts[-1] if parts else raw
    if len(parts) >= 3:
        return parts[-3], parts[-2], name
    if len(parts) == 2:
        return None, parts[0], name
    return None, None, name


def place(frame: Frame, source: str | None, category: str | None) -> None:
    """Key the frame ``{source}/{category}/{name}`` (the category kept if none is given)."""
    if category is not None:
        frame.category = category
    if frame.category is not None:
        frame.rel_path = f"{source or FALLBACK_SOURCE}/{frame.category}/{frame.name}"
    if frame.video_id is None:
        frame.video_id = parse_frame_name(frame.name).video_id


def hex16(value: object) -> str | None:
    """An old dhash (16 hex digits, any case), else None."""
    text = clean(value)
    return text.lower() if text is not None and _HEX16.match(text.lower()) else None


class ImageFolder:
    """The files of an old image folder, found by relative path or by name."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.by_rel: dict[str, Path] = {}
        self.by_name: dict[str, list[Path]] = defaultdict(list)
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file() and is_frame_file(path.name) and not path.name.startswith("."):
                    self.by_rel[path.relative_to(root).as_posix()] = path
                    self.by_name[path.name].append(path)

    def find(self, *candidates: str | None) -> Path | None:
        for cand in candidates:
            if cand and cand in self.by_rel:
                return self.by_rel[cand]
        for cand in candidates:
            if cand:
                hits = self.by_name.get(PurePosixPath(cand).name, [])
                if len(hits) == 1:
                    return hits[0]
        return None


def read_jsonl(path: Path, report: ImportReport) -> list[tuple[str, dict[str, Any]]]:
    """(origin, record) for every good line; a bad line is a problem, the rest goes on."""
    out: list[tuple[str, dict[str, Any]]] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        report.problems.append(f"{path}: cannot read ({exc.strerror}); fix its permissions and import again")
        return out
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            report.problems.append(f"{path} line {n}: not JSON ({exc.msg}); fix or delete the line and import again")
            continue
        if not isinstance(rec, dict):
            report.problems.append(f"{path} line {n}: a JSON {type(rec).__name__}, not a record; fix or delete the line")
            continue
        out.append((f"{path.name} line {n}", rec))
    return out
