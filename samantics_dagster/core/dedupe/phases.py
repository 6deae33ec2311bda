"""The per-frame work of one dedupe run (``engine.dedupe_partition``), phase by phase.

Phase 1 reads and hashes each frame (:func:`read_and_hash`, run on a thread pool); phase 2 searches all
new hashes at once against the store and each other (:func:`search_hashes`); phase 3 decides frame by
frame in video order and stores what is accepted (:class:`Decider`). Split from ``engine.py``, which
keeps the settings, the resume logic and the order of the phases. No Dagster imports.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from samantics_dagster.core.dataset.schema import DedupeReason, DedupeStatus
from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.dedupe.hamming import HammingIndex, pairs_within
from samantics_dagster.core.dedupe.imaging import FrameDecodeError, frame_signature
from samantics_dagster.core.dedupe.matcher import MAX_VERIFY, Candidate, Matcher
from samantics_dagster.core.dedupe.settings import DedupeSettings
from samantics_dagster.core.dedupe.signals import Signature

ACCEPTED, REJECTED = DedupeStatus.ACCEPTED, DedupeStatus.REJECTED
ProgressFn = Callable[[int, int], None]

#: Start of the ``detail`` of a frame that could not be *read* (as opposed to decoded): retried next run.
READ_FAILURES = ("cannot read frame", "frame vanished")
CHANGED = "cannot read frame: it changed while being deduped (grabby still writing?); it is read again next run"
_PREFETCH = 16  # frames ahead whose ORB features are computed on the other cores


@dataclass
class Frame:
    """One frame's working state during a run: ``digest``, ``dhash`` and ``sig`` are set by
    :func:`read_and_hash` unless it records an ``error``."""

    row: dict
    path: Path
    digest: str | None = None
    dhash: int | None = None
    sig: Signature | None = None
    error: str | None = None


def content_digest(data: bytes) -> str:
    """Content digest for exact-duplicate detection and for checking a file didn't change mid-run."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def read_if_unchanged(path: Path, digest: str | None) -> bytes | None:
    """The file's bytes if they are still the ones that were hashed: the store must hold exactly those."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if digest is not None and content_digest(data) != digest:
        return None
    return data


def order_key(row: dict) -> tuple:
    """Video then timestamp order: the order frames are decided in (missing timestamps first)."""
    ts = row["timestamp_ms"]
    return (row["source"], row["video_id"] or "", -1 if ts is None or pd.isna(ts) else int(ts), row["rel_path"])


def read_and_hash(frame: Frame) -> Frame:
    """Phase 1 for one frame: read, digest, decode at 1/8 scale and hash; failures go to ``frame.error``."""
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
    frame.row.update(dhash=f"{h.dhash:016x}", width=h.width, height=h.height)
    return frame


@dataclass
class HashMatches:
    """Phase 2's answer for the frames that hashed (``hashed``, in ``todo`` order, codes alike)."""

    hashed: list[Frame]
    codes: np.ndarray
    position: dict[int, int]                # id(frame) -> index in ``hashed``
    neighbours: dict[int, list[int]]        # index -> indices of new frames within the verify radius
    near_store: dict[int, list[tuple[str, int]]]  # id(frame) -> [(accepted store hash, its distance)], nearest first
    prefetch: set[int]                      # ids of frames that surely go to ORB


def search_hashes(todo: list[Frame], store: ImageStore, released: set[str], settings: DedupeSettings) -> HashMatches:
    """Phase 2: every new hash against the dataset's accepted hashes in one batched search, and all
    near pairs among the new frames themselves."""
    store_hashes = [h for h in store.hashes() if h not in released]
    index = HammingIndex(np.array([int(h, 16) for h in store_hashes], dtype=np.uint64))
    hashed = [f for f in todo if f.dhash is not None]
    codes = np.array([f.dhash for f in hashed], dtype=np.uint64)
    verify_radius = max(settings.dhash_verify_threshold, settings.dhash_threshold) if settings.use_orb \
        else settings.dhash_threshold
    # The nearest few, not the nearest one: two scenes that share a hash are stored a bit or two apart (the
    # store's nearest free code), and a later copy of the second must reach its own stored frame.
    store_pos, store_dist = index.nearest_k_within(codes, verify_radius, MAX_VERIFY)
    near_store = {id(f): [(store_hashes[p], int(d)) for p, d in zip(ps, ds) if p >= 0]
                  for f, ps, ds in zip(hashed, store_pos, store_dist) if ps[0] >= 0}
    if settings.use_orb:
        _more_for_low_structure(hashed, codes, store_hashes, LOW_STRUCTURE_RADIUS, settings, near_store)
    position = {id(f): i for i, f in enumerate(hashed)}
    neighbours: dict[int, list[int]] = defaultdict(list)
    pairs = np.asarray(pairs_within(codes, verify_radius)).reshape(-1, 2)
    for i, j in pairs:
        neighbours[int(i)].append(int(j))
        neighbours[int(j)].append(int(i))
    prefetch = _needs_orb(hashed, codes, pairs, near_store, settings)
    return HashMatches(hashed, codes, position, neighbours, near_store, prefetch)


#: Store candidates of a frame whose hash carries little structure: its hash is noise, so the nearest stored
#: hash is as likely another smooth scene (every vignetted wall hashes alike) as its own repeat.
LOW_STRUCTURE_CANDIDATES = 8
#: ... and the radius they are searched in: such hashes wander 8-14 bits between frames of one smooth scene.
LOW_STRUCTURE_RADIUS = 16


def _more_for_low_structure(hashed: list[Frame], codes: np.ndarray, store_hashes: list[str], radius: int,
                            settings: DedupeSettings, near_store: dict[int, list[tuple[str, int]]]) -> None:
    """Up to ``LOW_STRUCTURE_CANDIDATES`` nearest store hashes within ``radius`` for each low-structure frame
    (a scan of the store per such frame: a few ms at a million hashes)."""
    low = [i for i, f in enumerate(hashed) if f.sig is not None and f.sig.structure < settings.signals.min_structure]
    if not low or not store_hashes:
        return
    store = np.array([int(h, 16) for h in store_hashes], dtype=np.uint64)
    k = min(LOW_STRUCTURE_CANDIDATES, store.size)
    for i in low:
        d = np.bitwise_count(store ^ codes[i])
        near = np.argpartition(d, k - 1)[:k] if k < store.size else np.arange(store.size)
        near = near[d[near] <= radius]
        if near.size:
            order = near[np.lexsort((near, d[near]))]
            near_store[id(hashed[i])] = [(store_hashes[int(p)], int(d[p])) for p in order]


def _hashed(frame: Frame) -> tuple[str, Signature]:
    """The digest and signature of a frame that was read without error (set together by :func:`read_and_hash`)."""
    if frame.digest is None or frame.sig is None:
        raise RuntimeError(f"{frame.row['rel_path']}: no digest or signature although reading it reported no "
                           "error; this is a bug in core/dedupe/phases.py (read_and_hash), not in the frame")
    return frame.digest, frame.sig


class Decider:
    """Phase 3 (sequential, in video/timestamp order): decide each frame, and store what is accepted.

    Kept accepted rows join their video's ORB window in order as the new frames pass them; new frames
    are compared only with accepted ones (``accepted_new``), never with rejected ones."""

    def __init__(self, store: ImageStore, settings: DedupeSettings, matches: HashMatches, kept: list[dict], *,
                 category: str | None, dry_run: bool, workers: int | None) -> None:
        self.store, self.settings, self.matches = store, settings, matches
        self.category, self.dry_run = category, dry_run
        self.matcher = Matcher(settings.orb, settings.signals, settings.orb_window, workers=workers or os.cpu_count() or 1)
        self.kept_accepted = sorted((r for r in kept if r["status"] == ACCEPTED), key=order_key)
        self.seen_digest: dict[str, str] = {r["content_hash"]: r["rel_path"] for r in kept
                                            if isinstance(r.get("content_hash"), str)}
        self.accepted_new: dict[int, bool] = {}
        self.copied = 0
        self.rekeyed = 0  # accepted frames stored under a code other than their dhash (it named another scene)
        self.dry_keys: set[str] = set()  # names a dry run gave its accepted frames (never written)
        self._ahead = 0  # next frame to consider for prefetching
        self._ki = 0     # next kept accepted row to push into its window

    def run(self, todo: list[Frame], progress: ProgressFn | None) -> None:
        total = len(todo)
        for n, frame in enumerate(todo):
            if progress and n % 200 == 0:
                progress(total + n, 2 * total)
            self._ahead = max(self._ahead, n)
            while self._ahead < min(len(todo), n + _PREFETCH):  # ORB features of frames that will surely need them
                if id(todo[self._ahead]) in self.matches.prefetch:
                    self.matcher.prefetch(todo[self._ahead].path)
                self._ahead += 1
            while self._ki < len(self.kept_accepted) and order_key(self.kept_accepted[self._ki]) < order_key(frame.row):
                k = self.kept_accepted[self._ki]
                self.matcher.push((k["source"], k["video_id"]), Candidate(None, k["rel_path"], self.store.path_for(k["dhash"])))
                self._ki += 1
            self._decide(frame)
        self.matcher.close()

    def _decide(self, frame: Frame) -> None:
        row = frame.row
        row["content_hash"] = frame.digest
        if frame.error is not None:
            row.update(status=REJECTED, reason=DedupeReason.DECODE_ERROR, detail=frame.error)
            return
        digest, sig = _hashed(frame)
        if digest in self.seen_digest:
            row.update(status=REJECTED, reason=DedupeReason.EXACT, dup_of=self.seen_digest[digest], detail="identical bytes")
            return
        self.seen_digest[digest] = row["rel_path"]
        me = self.matches.position[id(frame)]
        if sig.structure < self.settings.signals.min_structure:
            row["dhash_threshold"] = -1  # its hash alone never decides (too little structure): audits skip it
        video = (row["source"], row["video_id"])
        try:
            verdict = self.matcher.decide(frame.path, sig, self._candidates(frame, me), video,
                                          hash_final=self.settings.dhash_threshold, use_orb=self.settings.use_orb)
        except (OSError, FrameDecodeError) as exc:
            row.update(status=REJECTED, reason=DedupeReason.DECODE_ERROR, detail=str(exc))
            return
        if verdict is not None:
            reason, dup_of, detail = verdict
            row.update(status=REJECTED, reason=reason, dup_of=dup_of, detail=detail)
            return
        if not self._store(frame, digest):
            return
        if self.matcher.overruled is not None and row["dhash_threshold"] >= 0:
            # A hash match this close was overruled (a small offset of textured content): the audits must
            # judge this frame with the threshold it was really decided by.
            row["dhash_threshold"] = min(row["dhash_threshold"], self.matcher.overruled - 1)
        row.update(status=ACCEPTED, reason=None)
        self.accepted_new[me] = True
        self.matcher.push(video, Candidate(None, row["rel_path"], frame.path, sig))

    def _candidates(self, frame: Frame, me: int) -> list[Candidate]:
        """Accepted new frames and the nearest store entry within the verify radius, nearest first."""
        m = self.matches
        close = sorted((int(np.bitwise_count(m.codes[me] ^ m.codes[j])), j)
                       for j in m.neighbours.get(me, ()) if self.accepted_new.get(j))
        scored = [(d, Candidate(d, m.hashed[j].row["dhash"], m.hashed[j].path, m.hashed[j].sig)) for d, j in close]
        for h, d in m.near_store.get(id(frame), ()):
            scored.append((d, Candidate(d, h, self.store.path_for(h))))
        scored.sort(key=lambda dc: dc[0])  # stable: ties keep the order above
        return [c for _, c in scored]

    def _store(self, frame: Frame, digest: str) -> bool:
        """Copy an accepted frame into the store (a dry run only picks its name); False (and the row rejected)
        if it changed since hashing.

        Its name is its dhash unless that names another scene's image (two scenes the signals tell apart can
        share a hash): then the nearest free code, which the row's ``dhash`` records (every later stage finds
        the image by it) and ``detail`` explains. Such a frame's hash demonstrably doesn't decide on its own,
        so the audits skip it (threshold -1), as they skip a low-structure frame."""
        row = frame.row
        data = read_if_unchanged(frame.path, digest)
        if data is None:
            row.update(status=REJECTED, reason=DedupeReason.DECODE_ERROR, detail=CHANGED)
            return False
        category = self.category
        claim = (lambda key: self.store.claim(category, key, row["rel_path"])) if category is not None else None
        stored = self.store.store_frame(data, row["dhash"], before_write=claim, reserved=self.dry_keys,
                                        dry_run=self.dry_run)
        self.copied += stored.written
        if self.dry_run:
            self.dry_keys.add(stored.key)
        if stored.key != row["dhash"]:
            moved = (int(stored.key, 16) ^ int(row["dhash"], 16)).bit_count()
            row.update(detail=f"stored as {stored.key}: its dhash {row['dhash']} names another scene's image "
                              f"(hamming {moved})", dhash=stored.key, dhash_threshold=-1)
            self.rekeyed += 1
        return True


def _needs_orb(hashed: list[Frame], codes: np.ndarray, pairs: np.ndarray, near_store: dict[int, list[tuple[str, int]]],
               settings: DedupeSettings) -> set[int]:
    """Frames (by ``id``) that will go to ORB whatever is accepted before them: structured (so not judged
    by colour + shift alone) and with no hash neighbour close enough to be a final match. Their features
    are computed ahead on a thread pool (OpenCV releases the GIL), which is where phase 3 spends its time."""
    if not settings.use_orb:
        return set()
    maybe_final = {i for i, f in enumerate(hashed) if id(f) in near_store and near_store[id(f)][0][1] <= settings.dhash_threshold}
    if len(pairs):
        close = np.bitwise_count(codes[pairs[:, 0]] ^ codes[pairs[:, 1]]) <= settings.dhash_threshold
        maybe_final.update(pairs[close].ravel().tolist())
    return {id(f) for i, f in enumerate(hashed)
            if i not in maybe_final and f.sig is not None and f.sig.structure >= settings.signals.min_structure}
