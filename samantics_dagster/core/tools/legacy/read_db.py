"""The ``pipeline.db`` layout: a SQLite ``frames`` table (columns under their old names) beside ``images/``."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from samantics_dagster.core.curate.filters import EXCLUDED, INCLUDED
from samantics_dagster.core.dataset.schema import DedupeReason
from samantics_dagster.core.dedupe.engine import ACCEPTED, REJECTED
from samantics_dagster.core.tools.legacy.model import (
    SPLITS,
    Curation,
    Frame,
    ImageFolder,
    ImportReport,
    clean,
    hex16,
    place,
    split_rel,
)

_COLUMN_ALIASES = {
    "source_path": ("source_path", "path", "rel_path"),
    "video_id": ("video_id",),
    "category": ("category",),
    "timestamp_ms": ("timestamp_ms",),
    "dhash": ("dhash",),
    "select_status": ("select_status", "selection_status", "status", "selection"),
    "select_reason": ("select_reason", "selection_reason", "reason"),
    "dup_of": ("dup_of",),
    "label_status": ("label_status", "labels_status", "labelling_status"),
    "label_error": ("label_error", "labels_error", "error"),
    "curate_status": ("curate_status", "curation_status"),
    "curate_reason": ("curate_reason", "curation_reason"),
    "split": ("split", "curate_split"),
}
_IGNORED_QUIETLY = {"id", "rowid", "width", "height", "source", "created_at", "updated_at"}
_DEDUPE_REASONS = tuple(r.value for r in DedupeReason)
Row = dict[str, Any]


def _connect(path: Path) -> sqlite3.Connection:
    """Read-only: the old database is never written (a WAL database without its -shm opens immutable)."""
    uri = path.resolve().as_uri()
    try:
        con = sqlite3.connect(f"{uri}?mode=ro", uri=True)
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return con
    except sqlite3.OperationalError:
        con = sqlite3.connect(f"{uri}?immutable=1", uri=True)
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return con


def _column_map(names: list[str]) -> dict[str, int]:
    """Canonical column name -> its index in the old table (the first alias present wins, a column once)."""
    mapping: dict[str, int] = {}
    for canon, aliases in _COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in names and canon not in mapping and names.index(alias) not in mapping.values():
                mapping[canon] = names.index(alias)
                break
    return mapping


def _db_rows(path: Path, report: ImportReport) -> list[Row]:
    """The ``frames`` table as dicts keyed by canonical column names."""
    try:
        con = _connect(path)
    except sqlite3.Error as exc:
        report.problems.append(f"{path}: unreadable SQLite database ({exc}); restore it from a backup, or move it "
                               "away to import images/ + labels.jsonl alone")
        return []
    try:
        tables = {r[0].lower(): r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "frames" not in tables:
            report.problems.append(f"{path}: no `frames` table (tables: {', '.join(sorted(tables)) or 'none'}); "
                                   "rename the old frame table to `frames`")
            return []
        cur = con.execute(f'SELECT * FROM "{tables["frames"]}"')
        names = [d[0].lower() for d in cur.description]
        mapping = _column_map(names)
        if "source_path" not in mapping:
            report.problems.append(f"{path}: the frames table has no source_path column (columns: {', '.join(names)}); "
                                   "add it (the frame's path relative to the grabby workdir)")
            return []
        unknown = [n for i, n in enumerate(names) if i not in mapping.values() and n not in _IGNORED_QUIETLY]
        if unknown:
            report.problems.append(f"{path}: ignored unknown columns of `frames`: {', '.join(unknown)}")
        return [{canon: row[i] for canon, i in mapping.items()} for row in cur.fetchall()]
    except sqlite3.Error as exc:
        report.problems.append(f"{path}: cannot read the frames table ({exc}); restore the database from a backup")
        return []
    finally:
        con.close()


def _select(status: str | None, reason: str | None) -> tuple[str | None, str | None, str | None]:
    """(status, reason, detail) in this project's terms; status None = not decided (or unknown)."""
    s = (status or "").lower()
    if s in ("accepted", "accept", "selected", "kept", "keep", "ok"):
        return ACCEPTED, None, None
    if s not in ("rejected", "reject", "duplicate", "dropped", "removed"):
        return None, None, None
    r = (reason or "").lower()
    detail = f"legacy: {reason}" if reason else "legacy: rejected"
    if r in _DEDUPE_REASONS:
        return REJECTED, r, detail
    if "orb" in r:
        return REJECTED, DedupeReason.ORB, detail
    if "exact" in r or "identical" in r:
        return REJECTED, DedupeReason.EXACT, detail
    if any(w in r for w in ("decode", "corrupt", "unreadable", "truncated", "error")):
        return REJECTED, DedupeReason.DECODE_ERROR, detail
    if "name" in r or "parse" in r:
        return REJECTED, DedupeReason.UNPARSED, detail
    return REJECTED, DedupeReason.DHASH, detail  # the old select step was the dedupe: a rejection is a near-duplicate


def image_names(frame: Frame, source: str | None, name: str) -> tuple[str | None, ...]:
    """Where an accepted frame's file may be in ``images/``: by old hash, by path, by name."""
    return (f"{frame.legacy_dhash}.jpg" if frame.legacy_dhash else None,
            f"{source}/{frame.category}/{name}" if source else None, f"{frame.category}/{name}", name)


def _row_curation(row: Row, frame: Frame, category: str, report: ImportReport) -> Curation | None:
    """The row's curate_status / split in this project's terms; an unknown value is a problem, not curated."""
    cs = (clean(row.get("curate_status")) or "").lower()
    if not cs:
        return None
    split_raw = clean(row.get("split"))
    split = SPLITS.get(split_raw.lower()) if split_raw else None
    if split_raw and split is None:
        report.category(category).problems.append(
            f"{frame.origin}: unknown split {split_raw!r} (train | val | test); recorded without a split")
    if cs in (INCLUDED, "include", "kept", "keep"):
        return (INCLUDED, None, split)
    if cs in (EXCLUDED, "exclude", "dropped", "removed"):
        return (EXCLUDED, f"legacy: {clean(row.get('curate_reason')) or 'excluded'}", None)
    if cs not in ("pending",):
        report.category(category).problems.append(
            f"{frame.origin}: unknown curate_status {cs!r} (included | excluded); not curated")
    return None


def _row_frame(n: int, row: Row, tag: str, images: ImageFolder, report: ImportReport) -> Frame | None:
    """The old frame of row ``n``, or None (a problem recorded, or a skip counted) when it is not imported."""
    origin = f"pipeline.db row {n}"
    raw = clean(row.get("source_path"))
    if raw is None:
        report.problems.append(f"{origin}: empty source_path; the row is skipped")
        return None
    source, category, name = split_rel(raw)
    category = clean(row.get("category")) or category
    status, reason, detail = _select(clean(row.get("select_status")), clean(row.get("select_reason")))
    frame = Frame(origin=f"{origin} ({raw})", tag=tag, name=name, video_id=clean(row.get("video_id")),
                  status=status or ACCEPTED, reason=reason, detail=detail, dup_of=clean(row.get("dup_of")),
                  legacy_dhash=hex16(row.get("dhash")))
    if category is None:
        report.problems.append(f"{frame.origin}: no category (source_path is not {{source}}/{{category}}/{{name}} "
                               "and there is no category column); the row is skipped")
        return None
    place(frame, source, category)
    sel = clean(row.get("select_status"))
    if "select_status" not in row:  # no such column: an old frame with a stored image was accepted
        status = ACCEPTED if images.find(*image_names(frame, source, name)) else None
    if status is None:
        if sel is not None and sel.lower() not in ("pending", "new", "todo"):
            report.category(category).problems.append(
                f"{frame.origin}: unknown select_status {sel!r} (accepted | rejected); the frame is skipped")
        report.category(category).skipped += 1
        return None
    if frame.status == ACCEPTED:
        frame.image = images.find(*image_names(frame, source, name))
    frame.label_status = (clean(row.get("label_status")) or "").lower() or None
    frame.label_error = clean(row.get("label_error"))
    frame.curate = _row_curation(row, frame, category, report)
    return frame


def read_db_layout(root: Path, tag: str, report: ImportReport) -> tuple[list[Frame], ImageFolder]:
    """The frames of ``pipeline.db`` (none without one: ``images/`` + ``labels.jsonl`` alone) and ``images/``."""
    images = ImageFolder(root / "images")
    frames: list[Frame] = []
    db = root / "pipeline.db"
    if not db.is_file():
        return frames, images
    for n, row in enumerate(_db_rows(db, report), 1):
        frame = _row_frame(n, row, tag, images, report)
        if frame is not None:
            frames.append(frame)
    return frames, images
