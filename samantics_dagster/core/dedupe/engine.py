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
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from samantics_dagster.core.dataset.schema import DEDUPED_IMAGES, IMPORTED_PREFIX, DedupeReason, DedupeStatus
from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.dedupe.hamming import HammingIndex, pairs_within
from samantics_dagster.core.dedupe.imaging import FrameDecodeError, frame_signature
from samantics_dagster.core.dedupe.matcher import Candidate, Matcher, SignalSettings
from samantics_dagster.core.dedupe.orb import OrbSettings
from samantics_dagster.core.dedupe.signals import Signature

DEDUPE_COLUMNS = DEDUPED_IMAGES.names
ACCEPTED, REJECTED = DedupeStatus.ACCEPTED, DedupeStatus.REJECTED
IMPORTED_SETTINGS = IMPORTED_PREFIX  # prefix of the ``settings`` of rows written by the legacy import

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class DedupeSettings:
    """``dhash_threshold``: at or below it a frame duplicates an accepted one, no questions asked.
    Between it and ``dhash_verify_threshold`` a hash match is only a candidate, confirmed by the ORB +
    geometry test against the matched frame: low-texture views (a sky gradient, a lit wall) hash
    to nearly all-zero codes that collide across different photos, and one threshold can't both keep
    them apart and catch a jittered repeat from another video (measured: README, benchmarks).
    ``signals``: when a hash match may be final at all (its structure), and the colour and shift tests
    that decide for frames whose hash and corners carry too little (``matcher.py``)."""

    dhash_threshold: int = 4
    dhash_verify_threshold: int = 10
    use_orb: bool = True
    orb_window: int = 5
    orb: OrbSettings = field(default_factory=OrbSettings)
    signals: SignalSettings = field(default_factory=SignalSettings)

    def fingerprint(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:12]


@dataclass
class _Frame:
    """One frame's working state during a run."""
    row: dict
    path: Path | None
    digest: str | None = None
    dhash: int | None = None
    sig: Signature | None = None
    error: str | None = None


@dataclass
class DedupeResult:
    table: pd.DataFrame
    processed: int          # frames read and decided in this run
    reused: int             # rows kept from the previous table
    copied: int             # files written to the store
    seconds: float


def _hex(code: int) -> str:
    return f"{code:016x}"


def content_digest(data: bytes) -> str:
    """Content digest for exact-duplicate detection and for checking a file didn't change mid-run."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _read_and_hash(frame: _Frame) -> _Frame:
    try:
        data = frame.path.read_bytes()
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            frame.error = "frame vanished while being read (grabby may be moving it); it is read again next run"
        else:
            frame.error = f"cannot read frame ({exc.strerror}); fix the file's permissions and re-run"
        return frame
    frame.digest = content_digest(data)
    try:
        h = frame_signature(data)
    except FrameDecodeError as exc:
        frame.error = str(exc)
        return frame
    frame.dhash, frame.sig = h.dhash, h
    frame.row.update(dhash=_hex(h.dhash), width=h.width, height=h.height)
    return frame


_READ_FAILURES = ("cannot read frame", "frame vanished")
_CHANGED = "cannot read frame: it changed while being deduped (grabby still writing?); it is read again next run"


def read_if_unchanged(path: Path, digest: str | None) -> bytes | None:
    """The file's bytes if they are still the ones that were hashed: the store must hold exactly those."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if digest is not None and content_digest(data) != digest:
        return None
    return data


def _read_failure(row: dict) -> bool:
    """A failure to *read* (permissions, a file being moved) can be fixed without changing the file's
    size or mtime, so it is tried again; content errors are not: same bytes, same error."""
    detail = row.get("detail")
    return row.get("reason") == DedupeReason.DECODE_ERROR and isinstance(detail, str) and detail.startswith(_READ_FAILURES)


def _order_key(row: dict) -> tuple:
    ts = row["timestamp_ms"]
    return (row["source"], row["video_id"] or "", -1 if ts is None or pd.isna(ts) else int(ts), row["rel_path"])


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
    # A dry run's rows never stand in for real decisions: its accepted frames were not stored.
    fingerprint = settings.fingerprint() + ("+dry" if dry_run else "")
    prev = _previous_rows(previous, fingerprint)
    category = str(frames["category"].iloc[0]) if len(frames) and "category" in frames else None
    kept: list[dict] = []
    todo: list[_Frame] = []
    reused = 0
    records = frames.to_dict("records")
    present = {rec["rel_path"] for rec in records}
    if previous is not None:
        # Frames that left the workdir stay in the dataset: grabby may clear folders it has delivered.
        for old in previous.to_dict("records"):
            if old["rel_path"] not in present:
                kept.append({k: old.get(k) for k in DEDUPE_COLUMNS})
                reused += 1
    for rec in records:
        base = {
            "rel_path": rec["rel_path"], "source": rec["source"], "video_id": rec["video_id"],
            "timestamp_ms": rec["timestamp_ms"], "bytes": rec["bytes"], "mtime_ns": rec["mtime_ns"],
            "content_hash": None, "status": None, "reason": None, "dup_of": None, "detail": None,
            "dhash": None, "width": None, "height": None, "dhash_threshold": settings.dhash_threshold,
            "settings": fingerprint,
        }
        old = prev.get(rec["rel_path"])
        if old is not None and _imported(old):
            try:
                same = _is_imported_copy(old, Path(workdir) / rec["rel_path"])
            except OSError:
                same = False
            if same:
                adopted = {k: old.get(k) for k in DEDUPE_COLUMNS}
                if not dry_run:  # a dry run keeps the imported row as it is, for the real run to adopt
                    adopted.update(mtime_ns=rec["mtime_ns"], settings=fingerprint,
                                   dhash_threshold=settings.dhash_threshold)
                kept.append(adopted)
                reused += 1
                continue
            old = None  # a different file under the imported name: decided again
        if (old is not None and old["bytes"] == rec["bytes"] and old["mtime_ns"] == rec["mtime_ns"]
                and not _read_failure(old)):
            kept.append({k: old.get(k) for k in DEDUPE_COLUMNS})
            reused += 1
            continue
        if isinstance(rec["parse_error"], str):
            base.update(status=REJECTED, reason=DedupeReason.UNPARSED, detail=rec["parse_error"])
            kept.append(base)
            continue
        todo.append(_Frame(base, Path(workdir) / rec["rel_path"]))
    todo.sort(key=lambda f: _order_key(f.row))

    # Frames of this partition that hold a store entry but are decided again now must not match their
    # own stored copy. Entries are known from the last table and from the claims journal, which also
    # covers a run killed after copying but before its table was written.
    redo = {f.row["rel_path"] for f in todo}
    released = {r["dhash"] for r in (previous.to_dict("records") if previous is not None else [])
                if r.get("status") == ACCEPTED and isinstance(r.get("dhash"), str) and r["rel_path"] in redo}
    if category is not None:
        released |= {h for rel, hashes in store.claims(category).items() if rel in redo for h in hashes}

    # Phase 1 (parallel: OpenCV's JPEG decode releases the GIL): read, digest, dhash.
    total = len(todo)
    done = 0
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for _ in pool.map(_read_and_hash, todo):
            done += 1
            if progress and (done % 200 == 0 or done == total):
                progress(done, 2 * total)  # hashing is the first half of the work, deciding the second

    # Phase 2: every new hash against the dataset's accepted hashes in one batched search, and all
    # near pairs among the new frames themselves.
    store_hashes = [h for h in store.hashes() if h not in released]
    index = HammingIndex(np.array([int(h, 16) for h in store_hashes], dtype=np.uint64))
    hashed = [f for f in todo if f.dhash is not None]
    codes = np.array([f.dhash for f in hashed], dtype=np.uint64)
    verify_radius = max(settings.dhash_verify_threshold, settings.dhash_threshold) if settings.use_orb \
        else settings.dhash_threshold
    store_pos, store_dist = index.nearest_within(codes, verify_radius)
    near_store = {id(f): (store_hashes[p], int(d)) for f, p, d in zip(hashed, store_pos, store_dist) if p >= 0}
    position = {id(f): i for i, f in enumerate(hashed)}
    neighbours: dict[int, list[int]] = defaultdict(list)
    pairs = np.asarray(pairs_within(codes, verify_radius)).reshape(-1, 2)
    for i, j in pairs:
        neighbours[int(i)].append(int(j))
        neighbours[int(j)].append(int(i))
    prefetch = _needs_orb(hashed, codes, pairs, near_store, settings)

    # Phase 3 (sequential, in video/timestamp order): decide, and store what is accepted.
    matcher = Matcher(settings.orb, settings.signals, settings.orb_window, workers=workers or os.cpu_count() or 1)
    ahead = 0
    kept_accepted = sorted((r for r in kept if r["status"] == ACCEPTED), key=_order_key)
    seen_digest: dict[str, str] = {r["content_hash"]: r["rel_path"] for r in kept if isinstance(r.get("content_hash"), str)}
    accepted_new: dict[int, bool] = {}
    copied = 0
    ki = 0
    for n, frame in enumerate(todo):
        if progress and n % 200 == 0:
            progress(total + n, 2 * total)
        row = frame.row
        video = (row["source"], row["video_id"])
        ahead = max(ahead, n)
        while ahead < min(len(todo), n + _PREFETCH):  # ORB features of frames that will surely need them
            if id(todo[ahead]) in prefetch:
                matcher.prefetch(todo[ahead].path)
            ahead += 1
        while ki < len(kept_accepted) and _order_key(kept_accepted[ki]) < _order_key(row):
            k = kept_accepted[ki]
            matcher.push((k["source"], k["video_id"]), Candidate(None, k["rel_path"], store.path_for(k["dhash"])))
            ki += 1
        row["content_hash"] = frame.digest
        if frame.error is not None:
            row.update(status=REJECTED, reason=DedupeReason.DECODE_ERROR, detail=frame.error)
            continue
        if frame.digest in seen_digest:
            row.update(status=REJECTED, reason=DedupeReason.EXACT, dup_of=seen_digest[frame.digest], detail="identical bytes")
            continue
        seen_digest[frame.digest] = row["rel_path"]
        me = position[id(frame)]
        if frame.sig.structure < settings.signals.min_structure:
            row["dhash_threshold"] = -1  # its hash alone never decides (too little structure): audits skip it
        close = sorted((int(np.bitwise_count(np.uint64(frame.dhash) ^ np.uint64(hashed[j].dhash))), j)
                       for j in neighbours.get(me, ()) if accepted_new.get(j))
        candidates = [Candidate(d, hashed[j].row["dhash"], hashed[j].path, hashed[j].sig) for d, j in close]
        if id(frame) in near_store:
            h, d = near_store[id(frame)]
            candidates.append(Candidate(d, h, store.path_for(h)))
        candidates.sort(key=lambda c: c.distance)
        try:
            verdict = matcher.decide(frame.path, frame.sig, candidates, video,
                                     hash_final=settings.dhash_threshold, use_orb=settings.use_orb)
        except (OSError, FrameDecodeError) as exc:
            row.update(status=REJECTED, reason=DedupeReason.DECODE_ERROR, detail=str(exc))
            continue
        if verdict is not None:
            reason, dup_of, detail = verdict
            row.update(status=REJECTED, reason=reason, dup_of=dup_of, detail=detail)
            continue
        if not dry_run:
            data = read_if_unchanged(frame.path, frame.digest)
            if data is None:
                row.update(status=REJECTED, reason=DedupeReason.DECODE_ERROR, detail=_CHANGED)
                continue
            if category is not None:
                store.claim(category, row["dhash"], row["rel_path"])
            copied += store.put_bytes(data, row["dhash"])
        row.update(status=ACCEPTED, reason=None)
        accepted_new[me] = True
        matcher.push(video, Candidate(None, row["rel_path"], frame.path, frame.sig))

    matcher.close()
    if progress and total:
        progress(2 * total, 2 * total)
    if not dry_run:
        for rec in kept:  # self-heal: an accepted frame whose stored copy went missing is copied again
            if rec["status"] == ACCEPTED and not store.has(rec["dhash"]):
                data = read_if_unchanged(Path(workdir) / rec["rel_path"], rec.get("content_hash"))
                if data is not None:  # a changed source is decided again next run (its mtime moved)
                    copied += store.put_bytes(data, rec["dhash"])

    rows = kept + [f.row for f in todo]
    table = to_table(rows)
    return DedupeResult(table, processed=len(todo), reused=reused, copied=copied,
                        seconds=time.perf_counter() - start)


_PREFETCH = 16  # frames ahead whose ORB features are computed on the other cores


def _needs_orb(hashed: list[_Frame], codes: np.ndarray, pairs: np.ndarray, near_store: dict,
               settings: DedupeSettings) -> set[int]:
    """Frames (by ``id``) that will go to ORB whatever is accepted before them: structured (so not judged
    by colour + shift alone) and with no hash neighbour close enough to be a final match. Their features
    are computed ahead on a thread pool (OpenCV releases the GIL), which is where phase 3 spends its time."""
    if not settings.use_orb:
        return set()
    maybe_final = {i for i, f in enumerate(hashed) if id(f) in near_store and near_store[id(f)][1] <= settings.dhash_threshold}
    if len(pairs):
        close = np.bitwise_count(codes[pairs[:, 0]] ^ codes[pairs[:, 1]]) <= settings.dhash_threshold
        maybe_final.update(pairs[close].ravel().tolist())
    return {id(f) for i, f in enumerate(hashed)
            if i not in maybe_final and f.sig is not None and f.sig.structure >= settings.signals.min_structure}


def to_table(rows: Iterable[dict]) -> pd.DataFrame:
    return DEDUPED_IMAGES.frame(rows)
