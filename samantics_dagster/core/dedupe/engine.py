"""Dedupe one category's frames against the whole dataset: exact bytes, global dhash, ORB per video.

Order of tests, cheapest first: identical bytes (a digest, no decode) -> dhash at 1/8-scale decode
against every *accepted* hash in the dataset (the store) and in this run -> ORB + geometry against a
window of the same video's recently accepted frames. Candidates are compared with accepted frames
only, never rejected ones, so near-duplicate chains (A~B~C) can't merge distinct scenes.

Resumable: a frame whose (bytes, mtime_ns) and the settings fingerprint match the previous table keeps
its row and is not read again; a changed setting redoes the partition.

Rows brought in by ``core/tools/legacy/`` (``settings`` starting with ``imported:``) carry no stat fingerprint
of the workdir file: a frame still in the workdir adopts its imported row when the file has the same size
and content digest as the imported copy (read, never decoded); otherwise it is decided again.

This module holds the settings, the resume logic and the order of the phases; what each phase does to a
frame (read + hash, the batched hash search, the per-frame decision) is in ``phases.py``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from samantics_dagster.core.dataset.schema import DEDUPED_IMAGES, IMPORTED_PREFIX, DedupeReason
from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.dedupe.phases import (
    ACCEPTED,
    READ_FAILURES,
    REJECTED,
    Decider,
    Frame,
    ProgressFn,
    order_key,
    read_and_hash,
    read_if_unchanged,
    search_hashes,
)
from samantics_dagster.core.dedupe.settings import DedupeSettings

DEDUPE_COLUMNS = DEDUPED_IMAGES.names
IMPORTED_SETTINGS = IMPORTED_PREFIX  # prefix of the ``settings`` of rows written by the legacy import


@dataclass
class DedupeResult:
    table: pd.DataFrame
    processed: int          # frames read and decided in this run
    reused: int             # rows kept from the previous table
    copied: int             # files written to the store
    seconds: float
    rekeyed: int = 0        # accepted frames stored under a code other than their dhash (it named another scene)


def _read_failure(row: dict) -> bool:
    """A failure to *read* (permissions, a file being moved) can be fixed without changing the file's
    size or mtime, so it is tried again; content errors are not: same bytes, same error."""
    detail = row.get("detail")
    return row.get("reason") == DedupeReason.DECODE_ERROR and isinstance(detail, str) and detail.startswith(READ_FAILURES)


def _previous_rows(previous: pd.DataFrame | None, fingerprint: str) -> dict[str, dict]:
    if previous is None or previous.empty or "settings" not in previous.columns:
        return {}
    same = previous[(previous["settings"] == fingerprint)
                    | previous["settings"].fillna("").str.startswith(IMPORTED_SETTINGS)]
    return {r["rel_path"]: r for r in same.to_dict("records")}


def _imported(row: dict) -> bool:
    settings = row.get("settings")
    return isinstance(settings, str) and settings.startswith(IMPORTED_SETTINGS)


def _is_imported_copy(row: dict, path: Path) -> bool:
    """Whether the workdir file is byte-for-byte the frame an imported row was made from."""
    digest = row.get("content_hash")
    if not isinstance(digest, str) or row.get("bytes") != path.stat().st_size:
        return False
    data = read_if_unchanged(path, digest)
    return data is not None


def dedupe_partition(
    frames: pd.DataFrame,
    workdir: Path,
    store: ImageStore,
    settings: DedupeSettings,
    *,
    previous: pd.DataFrame | None = None,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
    workers: int | None = None,
) -> DedupeResult:
    """Decide every frame of one category; copy accepted ones into the store unless ``dry_run``.

    ``frames`` is the ingress table of the partition. The caller holds the dedupe lock: the store is
    both read (as the index) and written here.
    """
    start = time.perf_counter()
    workdir = Path(workdir)
    # A dry run's rows never stand in for real decisions: its accepted frames were not stored.
    fingerprint = settings.fingerprint() + ("+dry" if dry_run else "")
    category = str(frames["category"].iloc[0]) if len(frames) and "category" in frames else None
    plan = _plan_partition(frames, workdir, settings, previous, fingerprint, dry_run)
    # Self-heal first: a kept frame's name must be taken again before a new frame could be given it.
    copied = 0 if dry_run else _restore_missing(plan.kept, store, workdir)
    released = _released_hashes(plan.todo, previous, store, category)
    total = len(plan.todo)
    _hash_frames(plan.todo, workers, progress)
    matches = search_hashes(plan.todo, store, released, settings)
    decider = Decider(store, settings, matches, plan.kept, category=category, dry_run=dry_run, workers=workers)
    decider.run(plan.todo, progress)
    copied += decider.copied
    if progress and total:
        progress(2 * total, 2 * total)

    rows = plan.kept + [f.row for f in plan.todo]
    table = to_table(rows)
    return DedupeResult(table, processed=len(plan.todo), reused=plan.reused, copied=copied,
                        seconds=time.perf_counter() - start, rekeyed=decider.rekeyed)


@dataclass
class _Plan:
    """The partition before any frame is read: rows kept as they are, and the frames to decide."""

    kept: list[dict] = field(default_factory=list)
    todo: list[Frame] = field(default_factory=list)
    reused: int = 0


def _plan_partition(frames: pd.DataFrame, workdir: Path, settings: DedupeSettings, previous: pd.DataFrame | None,
                    fingerprint: str, dry_run: bool) -> _Plan:
    """Split the ingress rows into reused rows, unparsed rejects and frames to decide (in video order)."""
    prev = _previous_rows(previous, fingerprint)
    plan = _Plan()
    records = frames.to_dict("records")
    present = {rec["rel_path"] for rec in records}
    if previous is not None:
        # Frames that left the workdir stay in the dataset: grabby may clear folders it has delivered.
        for old in previous.to_dict("records"):
            if old["rel_path"] not in present:
                plan.kept.append({k: old.get(k) for k in DEDUPE_COLUMNS})
                plan.reused += 1
    for rec in records:
        reusable = _reusable_row(rec, prev.get(rec["rel_path"]), workdir, settings, fingerprint, dry_run)
        if reusable is not None:
            plan.kept.append(reusable)
            plan.reused += 1
            continue
        base = {
            "rel_path": rec["rel_path"], "source": rec["source"], "video_id": rec["video_id"],
            "timestamp_ms": rec["timestamp_ms"], "bytes": rec["bytes"], "mtime_ns": rec["mtime_ns"],
            "content_hash": None, "status": None, "reason": None, "dup_of": None, "detail": None,
            "dhash": None, "width": None, "height": None, "dhash_threshold": settings.dhash_threshold,
            "settings": fingerprint,
        }
        if isinstance(rec["parse_error"], str):
            base.update(status=REJECTED, reason=DedupeReason.UNPARSED, detail=rec["parse_error"])
            plan.kept.append(base)
            continue
        plan.todo.append(Frame(base, workdir / rec["rel_path"]))
    plan.todo.sort(key=lambda f: order_key(f.row))
    return plan


def _reusable_row(rec: dict, old: dict | None, workdir: Path, settings: DedupeSettings, fingerprint: str,
                  dry_run: bool) -> dict | None:
    """The previous row to keep for this ingress row, or None when the frame must be decided (again)."""
    if old is not None and _imported(old):
        try:
            same = _is_imported_copy(old, workdir / rec["rel_path"])
        except OSError:
            same = False
        if not same:
            return None  # a different file under the imported name: decided again
        adopted = {k: old.get(k) for k in DEDUPE_COLUMNS}
        if not dry_run:  # a dry run keeps the imported row as it is, for the real run to adopt
            adopted.update(mtime_ns=rec["mtime_ns"], settings=fingerprint, dhash_threshold=settings.dhash_threshold)
        return adopted
    if (old is not None and old["bytes"] == rec["bytes"] and old["mtime_ns"] == rec["mtime_ns"]
            and not _read_failure(old)):
        return {k: old.get(k) for k in DEDUPE_COLUMNS}
    return None


def _released_hashes(todo: list[Frame], previous: pd.DataFrame | None, store: ImageStore,
                     category: str | None) -> set[str]:
    """Store entries of frames decided again now, which must not match their own stored copy.

    Entries are known from the last table and from the claims journal, which also covers a run killed
    after copying but before its table was written."""
    redo = {f.row["rel_path"] for f in todo}
    released = {r["dhash"] for r in (previous.to_dict("records") if previous is not None else [])
                if r.get("status") == ACCEPTED and isinstance(r.get("dhash"), str) and r["rel_path"] in redo}
    if category is not None:
        released |= {h for rel, hashes in store.claims(category).items() if rel in redo for h in hashes}
    return released


def _hash_frames(todo: list[Frame], workers: int | None, progress: ProgressFn | None) -> None:
    """Phase 1 (parallel: OpenCV's JPEG decode releases the GIL): read, digest, dhash."""
    total = len(todo)
    done = 0
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for _ in pool.map(read_and_hash, todo):
            done += 1
            if progress and (done % 200 == 0 or done == total):
                progress(done, 2 * total)  # hashing is the first half of the work, deciding the second


def _restore_missing(kept: list[dict], store: ImageStore, workdir: Path) -> int:
    """Self-heal: an accepted frame whose stored copy went missing is copied again; returns files written."""
    copied = 0
    for rec in kept:
        if rec["status"] == ACCEPTED and not store.has(rec["dhash"]):
            data = read_if_unchanged(workdir / rec["rel_path"], rec.get("content_hash"))
            if data is not None:  # a changed source is decided again next run (its mtime moved)
                copied += store.put_bytes(data, rec["dhash"])
    return copied


def to_table(rows: Iterable[dict]) -> pd.DataFrame:
    return DEDUPED_IMAGES.frame(rows)
