"""``samantics import-legacy``: an old samantics dataset into the per-frame tables and the store, nothing re-run.

The formats it reads and what it writes: ``docs/legacy-import.md``.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd
from pycocotools import mask as mask_utils

from samantics_dagster.core.dedupe import engine as dedupe
from samantics_dagster.core.label import pipeline as labeling
from samantics_dagster.core.tools import records
from samantics_dagster.core.dedupe.engine import ACCEPTED, DEDUPE_COLUMNS, IMPORTED_SETTINGS, REJECTED
from samantics_dagster.core.curate.filters import EXCLUDED, INCLUDED
from samantics_dagster.core.curate.filters import to_table as curate_table
from samantics_dagster.core.dedupe.imaging import FrameDecodeError, frame_dhash
from samantics_dagster.core.dataset.schema import IMPORTED_PREFIX, DedupeReason, LabelStatus, TableName
from samantics_dagster.core.label.masks import Instance
from samantics_dagster.core.workdir.naming import is_frame_file, parse_frame_name
from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.dataset.tables import read_all, read_table, table_path, write_table

FALLBACK_CATEGORY = "legacy"
FALLBACK_SOURCE = "legacy"
ProgressFn = Callable[[int, int], None]

_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
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
_FIX_ROOT = "pass --data-root the old dataset folder (the one holding pipeline.db, images/ + labels.jsonl, or 01-selection/)"


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


# --------------------------------------------------------------------------------------------- model


@dataclass
class _Frame:
    """One old frame while it is being imported."""

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
    label: dict | None = None       # its label record
    label_origin: str | None = None
    label_status: str | None = None
    label_error: str | None = None
    curate: tuple[str, str | None, str | None] | None = None   # status, reason, split
    curate_count: int | None = None
    # filled by hashing
    dhash: str | None = None
    width: int | None = None
    height: int | None = None
    size: int = 0
    digest: str | None = None
    error: str | None = None


def _clean(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _split_rel(raw: str) -> tuple[str | None, str | None, str]:
    """(source, category, name) from a path as the old scripts wrote it (relative, or absolute)."""
    parts = [p for p in PurePosixPath(raw.replace("\\", "/")).parts if p not in ("/", ".", "")]
    name = parts[-1] if parts else raw
    if len(parts) >= 3:
        return parts[-3], parts[-2], name
    if len(parts) == 2:
        return None, parts[0], name
    return None, None, name


def _place(frame: _Frame, source: str | None, category: str | None) -> None:
    if category is not None:
        frame.category = category
    if frame.category is not None:
        frame.rel_path = f"{source or FALLBACK_SOURCE}/{frame.category}/{frame.name}"
    if frame.video_id is None:
        frame.video_id = parse_frame_name(frame.name).video_id


def _hex(value) -> str | None:
    text = _clean(value)
    return text.lower() if text is not None and _HEX16.match(text.lower()) else None


class _Images:
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


# --------------------------------------------------------------------------------------------- readers


def _read_jsonl(path: Path, report: ImportReport) -> list[tuple[str, dict]]:
    """(origin, record) for every good line; a bad line is a problem, the rest goes on."""
    out = []
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


def _db_rows(path: Path, report: ImportReport) -> list[dict]:
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
        mapping: dict[str, int] = {}
        for canon, aliases in _COLUMN_ALIASES.items():
            for alias in aliases:
                if alias in names and canon not in mapping and names.index(alias) not in mapping.values():
                    mapping[canon] = names.index(alias)
                    break
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


def _read_db_layout(root: Path, tag: str, report: ImportReport) -> tuple[list[_Frame], _Images]:
    images = _Images(root / "images")
    frames: list[_Frame] = []
    db = root / "pipeline.db"
    if not db.is_file():
        return frames, images
    for n, row in enumerate(_db_rows(db, report), 1):
        origin = f"pipeline.db row {n}"
        raw = _clean(row.get("source_path"))
        if raw is None:
            report.problems.append(f"{origin}: empty source_path; the row is skipped")
            continue
        source, category, name = _split_rel(raw)
        category = _clean(row.get("category")) or category
        status, reason, detail = _select(_clean(row.get("select_status")), _clean(row.get("select_reason")))
        frame = _Frame(origin=f"{origin} ({raw})", tag=tag, name=name, video_id=_clean(row.get("video_id")),
                       status=status or ACCEPTED, reason=reason, detail=detail, dup_of=_clean(row.get("dup_of")),
                       legacy_dhash=_hex(row.get("dhash")))
        _place(frame, source, category)
        if frame.rel_path is None:
            report.problems.append(f"{frame.origin}: no category (source_path is not {{source}}/{{category}}/{{name}} "
                                   "and there is no category column); the row is skipped")
            continue
        sel = _clean(row.get("select_status"))
        if "select_status" not in row:  # no such column: an old frame with a stored image was accepted
            status = ACCEPTED if images.find(*_image_names(frame, source, name)) else None
        if status is None:
            if sel is not None and sel.lower() not in ("pending", "new", "todo"):
                report.category(frame.category).problems.append(
                    f"{frame.origin}: unknown select_status {sel!r} (accepted | rejected); the frame is skipped")
            report.category(frame.category).skipped += 1
            continue
        if frame.status == ACCEPTED:
            frame.image = images.find(*_image_names(frame, source, name))
        ls = (_clean(row.get("label_status")) or "").lower()
        frame.label_status = ls or None
        frame.label_error = _clean(row.get("label_error"))
        cs = (_clean(row.get("curate_status")) or "").lower()
        if cs:
            split_raw = _clean(row.get("split"))
            split = _SPLITS.get(split_raw.lower()) if split_raw else None
            if split_raw and split is None:
                report.category(frame.category).problems.append(
                    f"{frame.origin}: unknown split {split_raw!r} (train | val | test); recorded without a split")
            if cs in (INCLUDED, "include", "kept", "keep"):
                frame.curate = (INCLUDED, None, split)
            elif cs in (EXCLUDED, "exclude", "dropped", "removed"):
                frame.curate = (EXCLUDED, f"legacy: {_clean(row.get('curate_reason')) or 'excluded'}", None)
            elif cs not in ("pending",):
                report.category(frame.category).problems.append(
                    f"{frame.origin}: unknown curate_status {cs!r} (included | excluded); not curated")
        frames.append(frame)
    return frames, images


def _image_names(frame: _Frame, source: str | None, name: str) -> tuple[str | None, ...]:
    """Where an accepted frame's file may be in ``images/``: by old hash, by path, by name."""
    return (f"{frame.legacy_dhash}.jpg" if frame.legacy_dhash else None,
            f"{source}/{frame.category}/{name}" if source else None, f"{frame.category}/{name}", name)


def _read_selection_layout(root: Path, tag: str) -> tuple[list[_Frame], _Images]:
    images = _Images(root / "01-selection")
    frames = []
    for rel, path in images.by_rel.items():
        parts = rel.split("/")
        frame = _Frame(origin=f"01-selection/{rel}", tag=tag, name=parts[-1], image=path)
        if len(parts) >= 3:
            _place(frame, parts[-3], parts[-2])
        elif len(parts) == 2:
            _place(frame, None, parts[0])
        frames.append(frame)
    return frames, images


def _curation_entries(root: Path, report: ImportReport) -> list[tuple[str, str, dict, int | None]]:
    """(split, origin, identifying record, annotation count) for every image named in 03-curation/."""
    folder = root / "03-curation"
    out = []
    if not folder.is_dir():
        return out
    for path in sorted(folder.rglob("*")):
        split = _SPLITS.get(path.stem.lower())
        if not path.is_file() or split is None or path.suffix.lower() not in (".jsonl", ".json"):
            continue
        if path.suffix.lower() == ".jsonl":
            for origin, rec in _read_jsonl(path, report):
                boxes = rec.get("boxes")
                out.append((split, origin, rec, len(boxes) if isinstance(boxes, list) else None))
            continue
        try:
            coco = json.loads(path.read_text(encoding="utf-8"))
            images = coco["images"]
            counts = Counter(a.get("image_id") for a in coco.get("annotations") or [])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            report.problems.append(f"{path}: not a readable COCO file ({type(exc).__name__}: {exc}); "
                                   "fix it or remove it, then import again")
            continue
        for i, img in enumerate(images):
            if isinstance(img, dict) and img.get("file_name"):
                rec = {"image": img["file_name"], **{k: img[k] for k in ("source_path", "dhash") if k in img}}
                out.append((split, f"{path.name} image {i}", rec, counts.get(img.get("id"), 0)))
            else:
                report.problems.append(f"{path} image {i}: no file_name; skipped")
    return out


# --------------------------------------------------------------------------------------------- matching


class _Index:
    """Frames by every key an old record may name them with."""

    def __init__(self, frames: list[_Frame]) -> None:
        self.frames = frames
        self.by_rel: dict[str, _Frame] = {}
        self.by_image: dict[Path, _Frame] = {}
        self.by_hash: dict[str, _Frame] = {}
        self.by_name: dict[str, list[_Frame]] = defaultdict(list)
        for f in frames:
            self.add(f)

    def add(self, f: _Frame) -> None:
        if f.rel_path:
            self.by_rel.setdefault(f.rel_path, f)
        if f.image is not None:
            self.by_image.setdefault(f.image.resolve(), f)
        if f.legacy_dhash:
            self.by_hash.setdefault(f.legacy_dhash, f)
        if not any(x is f for x in self.by_name[f.name]):
            self.by_name[f.name].append(f)

    def find(self, rec: dict, image: Path | None) -> _Frame | None:
        source_path = _clean(rec.get("source_path"))
        if source_path:
            src, cat, name = _split_rel(source_path)
            if cat is not None and f"{src or FALLBACK_SOURCE}/{cat}/{name}" in self.by_rel:
                return self.by_rel[f"{src or FALLBACK_SOURCE}/{cat}/{name}"]
        for h in (_hex(rec.get("dhash")), _hex(PurePosixPath(str(rec.get("image", ""))).stem)):
            if h and h in self.by_hash:
                return self.by_hash[h]
        if image is not None and image.resolve() in self.by_image:
            return self.by_image[image.resolve()]
        names = [PurePosixPath(str(rec.get("image", ""))).name]
        if source_path:
            names.append(_split_rel(source_path)[2])
        for name in names:
            hits = self.by_name.get(name, [])
            if len(hits) == 1:
                return hits[0]
        return None


def _record_image(root: Path, rec: dict, images: _Images) -> Path | None:
    raw = _clean(rec.get("image"))
    if raw is None:
        return None
    raw = raw.replace("\\", "/")
    path = Path(raw)
    if path.is_absolute() and path.is_file():
        return path
    if not path.is_absolute() and (root / path).is_file():
        return root / path
    try:
        rel = (root / path).resolve().relative_to(images.root.resolve()).as_posix()
    except ValueError:
        rel = None
    return images.find(rel, raw)


def _attach_labels(root: Path, records: list[tuple[str, dict]], index: _Index, images: _Images, tag: str,
                   report: ImportReport) -> None:
    for origin, rec in records:
        image = _record_image(root, rec, images)
        frame = index.find(rec, image)
        if frame is None:
            if image is None:
                report.problems.append(f"{origin}: image {rec.get('image')!r} is neither a known frame nor a file "
                                       "under the old dataset; its labels are skipped")
                continue
            source_path = _clean(rec.get("source_path"))
            name = _split_rel(source_path)[2] if source_path else image.name
            frame = _Frame(origin=origin, tag=tag, name=name, image=image, legacy_dhash=_hex(image.stem))
            frame.label_status = LabelStatus.DONE
            index.frames.append(frame)
            _locate(frame, rec, images)
            index.add(frame)
        else:
            if frame.image is None and frame.status == ACCEPTED:  # e.g. named by a hash the db did not keep
                frame.image = image
            if frame.rel_path is None or (frame.category is not None and _clean(rec.get("source_path"))):
                _locate(frame, rec, images)
            index.add(frame)
        if frame.label is not None:
            report.problems.append(f"{origin}: a second label record for {frame.rel_path or frame.name} "
                                   f"(first: {frame.label_origin}); the later one is kept")
        frame.label, frame.label_origin = rec, origin


def _locate(frame: _Frame, rec: dict, images: _Images) -> None:
    """Key a frame by its record's ``source_path`` (same name, same or unknown category), else its folder."""
    source_path = _clean(rec.get("source_path"))
    if source_path:
        src, cat, name = _split_rel(source_path)
        if cat is not None and name == frame.name and frame.category in (None, cat) and \
                (frame.rel_path is None or frame.rel_path.startswith(f"{FALLBACK_SOURCE}/")):
            _place(frame, src, cat)
            return
    if frame.rel_path is not None:
        return
    category = _clean(rec.get("category"))
    if category is None and frame.image is not None:
        try:
            parts = frame.image.resolve().relative_to(images.root.resolve()).parts
        except ValueError:
            parts = ()
        category = parts[-2] if len(parts) >= 2 else None
    if category is not None:
        _place(frame, None, category)


def _attach_curation(entries, index: _Index, images: _Images, root: Path, report: ImportReport) -> bool:
    seen = False
    for split, origin, rec, count in entries:
        seen = True
        frame = index.find(rec, _record_image(root, rec, images))
        if frame is None:
            report.problems.append(f"{origin}: image {rec.get('image')!r} is not among the old frames; "
                                   "its split is not imported")
            continue
        frame.curate, frame.curate_count = (INCLUDED, None, split), count
    return seen


# --------------------------------------------------------------------------------------------- rows


def _hash(frame: _Frame) -> _Frame:
    try:
        data = frame.image.read_bytes()
    except OSError as exc:
        frame.error = f"cannot read {frame.image} ({exc.strerror}); fix its permissions and import again"
        return frame
    try:
        h = frame_dhash(data)
    except FrameDecodeError as exc:
        frame.error = f"{frame.image}: {exc}"
        return frame
    frame.dhash, frame.width, frame.height = f"{h.dhash:016x}", h.width, h.height
    frame.size, frame.digest = len(data), dedupe.content_digest(data)
    return frame


def _instances(rec: dict, width: int, height: int) -> list[Instance]:
    """The record's detections as instances, masks checked against the stored image; ValueError says why not."""
    masks, cats = rec.get("masks"), rec.get("category_ids")
    if not isinstance(masks, list) or not isinstance(cats, list) or len(masks) != len(cats):
        raise ValueError("needs lists `category_ids` and `masks`, one COCO RLE mask per category id")
    rles = []
    for i, m in enumerate(masks):
        if not isinstance(m, dict) or "size" not in m or "counts" not in m:
            raise ValueError(f"mask {i} is not a COCO RLE dict {{size, counts}}")
        h, w = (int(v) for v in m["size"])
        if (h, w) != (height, width):
            raise ValueError(f"mask {i} is {w}x{h} but the image is {width}x{height}")
        if isinstance(m["counts"], list):  # uncompressed RLE: compress it as COCO files carry it
            m = mask_utils.frPyObjects({"size": [h, w], "counts": m["counts"]}, h, w)
        rles.append({"size": [h, w], "counts": m["counts"]})
    # Areas come from the masks, never from the old record: they are what COCOeval buckets by.
    out = [Instance.from_record(i) for i in records.instances({**rec, "masks": rles, "areas": None})]
    for i, inst in enumerate(out):
        if len(inst.bbox_xyxy) != 4 or not all(math.isfinite(v) for v in inst.bbox_xyxy):
            raise ValueError(f"box {i} is not 4 finite numbers (XYXY)")
    return out


def _dedupe_row(f: _Frame) -> dict:
    ts = parse_frame_name(f.name).timestamp_ms
    return {
        "rel_path": f.rel_path, "source": f.rel_path.split("/", 1)[0], "video_id": f.video_id, "timestamp_ms": ts,
        "bytes": f.size, "mtime_ns": 0, "content_hash": f.digest, "status": f.status, "reason": f.reason,
        "dup_of": f.dup_of, "detail": f.detail, "dhash": f.dhash, "width": f.width, "height": f.height,
        "dhash_threshold": None, "settings": IMPORTED_SETTINGS + f.tag,
    }


def _merge(existing: pd.DataFrame | None, new: pd.DataFrame, key: str) -> pd.DataFrame:
    """Existing rows whose key is not imported, then the imported rows (existing extra columns kept)."""
    if existing is None or existing.empty:
        return new
    rest = existing[~existing[key].isin(set(new[key]))]
    return pd.concat([rest, new], ignore_index=True) if len(rest) else new


# --------------------------------------------------------------------------------------------- main


def detect_layouts(data_root: Path) -> list[str]:
    """The old layouts present under ``data_root``: ``pipeline.db`` and/or ``01-selection``."""
    root = Path(data_root)
    found = []
    if (root / "pipeline.db").is_file() or ((root / "images").is_dir() and (root / "labels.jsonl").is_file()):
        found.append("pipeline.db")
    if (root / "01-selection").is_dir():
        found.append("01-selection")
    return found


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

    frames: list[_Frame] = []
    for layout in layouts:
        tag = f"{layout}:{folder}"
        if layout == "pipeline.db":
            found, images = _read_db_layout(root, tag, report)
            labels_file = root / "labels.jsonl"
            curation: list = []
        else:
            found, images = _read_selection_layout(root, tag)
            labels_file = root / "02-labels" / "labels.jsonl"
            curation = _curation_entries(root, report)
        taken = {f.rel_path for f in frames}
        index = _Index(found)
        if labels_file.is_file():
            _attach_labels(root, _read_jsonl(labels_file, report), index, images, tag, report)
        curated_here = _attach_curation(curation, index, images, root, report)
        used = {f.image.resolve() for f in index.frames if f.image is not None}
        unused = [rel for rel, p in images.by_rel.items() if p.resolve() not in used]
        if unused:
            report.problems.append(f"{images.root}: {len(unused)} image(s) belong to no old frame or label record "
                                   f"(e.g. {unused[0]}); not imported")
        for f in index.frames:
            if f.rel_path is None:
                _place(f, None, FALLBACK_CATEGORY)
                report.category(f.category).problems.append(
                    f"{f.origin}: no category (no category folder, no source_path or category in its label record); "
                    f"imported into category {FALLBACK_CATEGORY!r}")
            if curated_here and f.curate is None and f.label is not None:
                f.curate = (EXCLUDED, "legacy: not in 03-curation", None)
            if f.rel_path in taken:
                report.category(f.category).problems.append(
                    f"{f.origin}: a second old frame with the key {f.rel_path}; the first one is kept")
                continue
            taken.add(f.rel_path)
            frames.append(f)

    # Hash every accepted frame's old file (the store name is always this project's dhash).
    todo = [f for f in frames if f.status == ACCEPTED]
    for f in todo:
        if f.image is None:
            f.error = (f"no image for this accepted frame under {root} (looked for images/{{dhash}}.jpg and its "
                       "name); it is not imported: the pipeline dedupes it again if grabby still has it")
    hashable = [f for f in todo if f.image is not None]
    if progress:
        progress(0, len(hashable))
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for n, _ in enumerate(pool.map(_hash, hashable), 1):
            if progress and (n % 100 == 0 or n == len(hashable)):
                progress(n, len(hashable))

    store = ImageStore(dataset)
    with store.dedupe_lock() if not dry_run else nullcontext():  # the store is dedupe's index
        _claim_hashes(frames, dataset, report)
        _store_images(frames, store, dry_run, report)
        by_cat = _rows(frames, report)
        if not dry_run:
            _write_tables(by_cat, dataset)
    return report


def _claim_hashes(frames: list[_Frame], dataset: Path, report: ImportReport) -> None:
    """Give every accepted old frame its hash, unless the dataset already accepted that image under
    another key: then the old frame is its duplicate (a frame must not be in the dataset twice)."""
    owners: dict[str, str] = {}
    keys = {f.rel_path for f in frames}
    for table in read_all(dataset, TableName.DEDUPED_IMAGES).values():
        acc = table[(table["status"] == ACCEPTED) & table["dhash"].notna() & ~table["rel_path"].isin(keys)]
        owners.update(zip(acc["dhash"], acc["rel_path"]))
    for f in sorted(frames, key=lambda f: f.rel_path):
        if f.status != ACCEPTED:
            f.dhash = f.legacy_dhash
            continue
        if f.error is not None:
            continue
        owner = owners.setdefault(f.dhash, f.rel_path)
        if owner != f.rel_path:
            f.status, f.reason, f.dup_of = REJECTED, "dhash", f.dhash
            f.detail = f"hamming 0: the same image is already in the dataset as {owner} (legacy import)"
            if f.label is not None or f.label_status == LabelStatus.FAILED:
                report.category(f.category).problems.append(
                    f"{f.origin}: same image as {owner}, already in the dataset; imported as its duplicate, its "
                    "legacy labels are not imported")


def _store_images(frames: list[_Frame], store: ImageStore, dry_run: bool, report: ImportReport) -> None:
    """Copy the accepted frames' exact bytes into the store (claimed first, as dedupe does); count only in a dry run."""
    for f in sorted(frames, key=lambda f: f.rel_path):
        if f.status != ACCEPTED or f.error is not None:
            continue
        rep = report.category(f.category)
        if store.has(f.dhash):
            rep.images_present += 1
        elif dry_run:
            rep.images_stored += 1
        else:
            data = dedupe.read_if_unchanged(f.image, f.digest)
            if data is None:  # changed or vanished since it was hashed: a row must not name a file that isn't there
                f.error = f"{f.image} changed or vanished during the import; import again"
                continue
            store.claim(f.category, f.dhash, f.rel_path)
            if store.put_bytes(data, f.dhash):
                rep.images_stored += 1
            else:
                rep.images_present += 1


def _rows(frames: list[_Frame], report: ImportReport) -> dict[str, dict[str, list[dict]]]:
    """Per category, the rows of deduped_images, sam3_labels and curated_coco; counts into the report."""
    by_cat: dict[str, dict[str, list[dict]]] = defaultdict(lambda: {"dedupe": [], "labels": [], "curated": []})
    for f in sorted(frames, key=lambda f: f.rel_path):
        rep = report.category(f.category)
        out = by_cat[f.category]
        if f.status == ACCEPTED and f.error is not None:
            rep.problems.append(f"{f.origin}: {f.error}")
            rep.skipped += 1
            continue
        out["dedupe"].append(_dedupe_row(f))
        rep.frames += 1
        if f.status == REJECTED:
            rep.rejected += 1
            continue
        rep.accepted += 1
        labeler = IMPORTED_PREFIX + f.tag
        label_row = None
        if f.label is not None:
            try:
                label_row = labeling.label_row(f.dhash, f.rel_path, labeler, instances=_instances(f.label, f.width, f.height),
                                          size=(f.width, f.height))
            except (ValueError, TypeError) as exc:
                rep.problems.append(f"{f.label_origin} ({f.rel_path}): unusable label record ({exc}); the image "
                                    "stays accepted and sam3_labels labels it")
        elif f.label_status == LabelStatus.FAILED:
            error = f.label_error or "failed in the legacy pipeline (no error recorded)"
            label_row = labeling.label_row(f.dhash, f.rel_path, labeler, error=f"legacy: {error}", size=(f.width, f.height))
        elif f.label_status == LabelStatus.DONE:
            rep.problems.append(f"{f.origin}: label_status is done but labels.jsonl has no record for it; "
                                "sam3_labels labels it")
        done = label_row is not None and label_row["status"] == labeling.DONE
        if label_row is not None:
            out["labels"].append(label_row)
            rep.labels += done
            rep.label_failed += not done
        if f.curate is not None:
            status, reason, split = f.curate
            out["curated"].append({"dhash": f.dhash, "rel_path": f.rel_path, "video_id": f.video_id, "status": status,
                                   "reason": reason, "split": split,
                                   "n_annotations": label_row["n_instances"] if done else f.curate_count})
            rep.curated += 1
    for category, out in by_cat.items():
        splits = defaultdict(set)
        for row in out["curated"]:
            if row["status"] == INCLUDED and row["video_id"] and row["split"]:
                splits[row["video_id"]].add(row["split"])
        leaks = sorted(v for v, s in splits.items() if len(s) > 1)
        if leaks:
            report.category(category).problems.append(
                f"the legacy curation put videos in two splits ({', '.join(leaks[:5])}); curated_coco keeps one split "
                "per video: materialise it with `resplit: true` to split this category again")
    return by_cat


def _write_tables(by_cat: dict[str, dict[str, list[dict]]], dataset: Path) -> None:
    """Merge into each category's tables: imported rows replace only rows with the same key."""
    for category, out in sorted(by_cat.items()):
        if out["dedupe"]:
            path = table_path(dataset, TableName.DEDUPED_IMAGES, category)
            merged = _merge(read_table(path), dedupe.to_table(out["dedupe"]), "rel_path")
            write_table(dedupe.to_table(merged.reindex(columns=DEDUPE_COLUMNS).to_dict("records")), path)
        if out["labels"]:
            path = table_path(dataset, TableName.SAM3_LABELS, category)
            merged = _merge(read_table(path), labeling.to_table(out["labels"]), "dhash")
            write_table(labeling.to_table(merged.reindex(columns=labeling.LABEL_COLUMNS).to_dict("records")), path)
        if out["curated"]:
            path = table_path(dataset, TableName.CURATED_COCO, category)
            merged = _merge(read_table(path), curate_table(out["curated"]), "dhash")
            write_table(merged.sort_values("dhash", ignore_index=True), path)
