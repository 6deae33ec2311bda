"""The per-frame verdict after the hash search: which accepted frame (if any) this one duplicates, and why.

Three tests, cheapest first (measured on the sample's classes, README "Dedupe"):

1. a hash match at distance <= ``dhash_threshold`` is final only when *both* frames carry structure in
   their hash (``signals.structure`` >= ``min_structure``) and their colour thumbnails agree: a constant or
   noise-decided hash says nothing, and a sky and a gradient with the same grey layout differ in colour;
2. a frame with little structure is never judged on its hash or on ORB (too few corners): against its
   hash candidates and its video's window it is a duplicate only if the colours agree *and* phase
   correlation finds the content moved by at most ``orb_max_shift`` (a blurred object seen 30% further
   left is a new view, and content no shift lines up is other content); where there is nothing to lock
   on to (a pure gradient: ``signals.texture``) only half the colour distance counts as the same scene;
3. any other frame: ORB + RANSAC geometry (``orb.py``) against the hash candidates, then the window.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2

from samantics_dagster.core.dataset.schema import DedupeReason
from samantics_dagster.core.dedupe.imaging import FrameDecodeError, frame_signature, grey_for_matching
from samantics_dagster.core.dedupe.orb import OrbFeatures, OrbSettings, OrbVerdict, compare, orb_features
from samantics_dagster.core.dedupe.settings import SignalSettings
from samantics_dagster.core.dedupe.signals import (
    Signature,
    colour_distance,
    grey_against_colour,
    hue_difference,
    phase_shift,
)

MAX_VERIFY = 3  # hash candidates confirmed per frame, nearest first
_MAX_VERIFY_LOW = 8  # the same for a frame whose hash is noise (colour + phase correlation: ~0.2 ms each)


@dataclass(frozen=True)
class Candidate:
    """An accepted frame a new one may duplicate: its label for ``dup_of``, file, signature if known."""

    distance: int | None   # Hamming distance of the hashes; None for a window frame
    label: str
    path: Path
    sig: Signature | None = None


class Matcher:
    """ORB features and signatures of frames (computed once, LRU-bounded) and each video's window."""

    def __init__(self, orb: OrbSettings, signals: SignalSettings, window: int, cache_size: int = 2048,
                 workers: int = 1) -> None:
        self.orb, self.signals = orb, signals
        self.windows: dict[tuple, deque] = defaultdict(lambda: deque(maxlen=window))
        self._local = threading.local()  # an ORB detector per thread: OpenCV's objects are not thread-safe
        self.bf = cv2.BFMatcher(cv2.NORM_HAMMING)
        self.pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
        self.pending: dict[Path, Future] = {}
        self.feats: OrderedDict[Path, OrbFeatures | None] = OrderedDict()
        self.sigs: OrderedDict[Path, Signature | None] = OrderedDict()
        self.cache_size = cache_size
        #: the nearest hash distance at or under the final threshold that the offset test overruled in the
        #: last ``decide`` (None if none): a frame accepted over it was judged with a lower threshold
        self.overruled: int | None = None

    def _remember(self, cache: OrderedDict, path: Path, value: object) -> None:
        cache[path] = value
        cache.move_to_end(path)
        if len(cache) > self.cache_size:
            cache.popitem(last=False)

    def _compute(self, path: Path) -> OrbFeatures:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = cv2.ORB.create(nfeatures=self.orb.n_features)  # = cv2.ORB_create, typed
        return orb_features(grey_for_matching(path.read_bytes(), self.orb.max_side), self.orb, detector)

    def prefetch(self, path: Path) -> None:
        """Start computing a frame's features on the pool (errors surface when :meth:`features` asks)."""
        if self.pool is not None and path not in self.pending and self.feats.get(path) is None:
            self.pending[path] = self.pool.submit(self._compute, path)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.pending.clear()

    def features(self, path: Path) -> OrbFeatures:
        """ORB features of a frame; raises on a bad file (the caller records it)."""
        if path in self.feats and self.feats[path] is not None:
            return self.feats[path]  # type: ignore[return-value]
        future = self.pending.pop(path, None)
        feats = future.result() if future is not None else self._compute(path)
        self._remember(self.feats, path, feats)
        return feats

    def _features_or_none(self, path: Path) -> OrbFeatures | None:
        try:
            return self.features(path)
        except (OSError, FrameDecodeError):
            self._remember(self.feats, path, None)
            return None

    def signature_of(self, cand: Candidate) -> Signature | None:
        if cand.sig is not None:
            return cand.sig
        if cand.path not in self.sigs:
            try:
                sig: Signature | None = frame_signature(cand.path.read_bytes())
            except (OSError, FrameDecodeError):
                sig = None
            self._remember(self.sigs, cand.path, sig)
        return self.sigs[cand.path]

    def flat_verdict(self, a: Signature, b: Signature) -> OrbVerdict:
        """Colour + phase-correlation shift: the test for frames whose hash and corners carry too little."""
        cd = colour_distance(a, b)
        if cd > self.signals.colour_max:
            return OrbVerdict(False, f"colour {cd:.1f}")
        if (hue := hue_difference(a, b, self.signals.min_chroma)) > self.signals.max_hue_deg:
            return OrbVerdict(False, f"colour {cd:.1f}, hue {hue:.0f} deg apart")
        if grey_against_colour(a, b, 2 * self.signals.min_chroma):
            # Colour distance compares a greyscale frame by its greys (a grey copy of a photo); with no grey
            # layout to vouch for it, a grey flat frame and a tinted one are other scenes.
            return OrbVerdict(False, f"colour {cd:.1f}, grey against colour")
        if min(a.texture, b.texture) < self.signals.min_texture:  # nothing to lock on to: a close colour decides
            return OrbVerdict(cd <= self.signals.colour_max / 2, f"flat, colour {cd:.1f}, no texture")
        ratio = max(a.texture, b.texture) / min(a.texture, b.texture)
        if ratio > self.signals.max_texture_ratio:  # one has far more detail than the other: other content
            return OrbVerdict(False, f"flat, colour {cd:.1f}, texture {a.texture:.1f} vs {b.texture:.1f}")
        shift, response = phase_shift(a, b, prefer_within=self.orb.max_shift)
        if response < self.signals.min_response:  # something there, but no shift lines it up: other content
            return OrbVerdict(False, f"flat, colour {cd:.1f}, no shift lock ({response:.2f})")
        return OrbVerdict(shift <= self.orb.max_shift, f"flat, colour {cd:.1f}, shift {shift:.3f}")

    def _same_colour(self, a: Signature, b: Signature) -> bool:
        """The colour test of structured frames: close thumbnails and, where both have one, the same hue."""
        return (colour_distance(a, b) <= self.signals.structured_colour_max
                and hue_difference(a, b, self.signals.min_chroma) <= self.signals.max_hue_deg)

    def push(self, video: tuple, cand: Candidate) -> None:
        self.windows[video].append(cand)

    def decide(self, path: Path, sig: Signature, candidates: list[Candidate], video: tuple,
               *, hash_final: int, use_orb: bool) -> tuple[str, str, str] | None:
        """``(reason, dup_of, detail)`` for a duplicate, None for a new scene. ``candidates`` are the hash
        matches nearest first. Raises ``OSError``/``FrameDecodeError`` when the frame can't be read for ORB."""
        self.overruled = None
        low = sig.structure < self.signals.min_structure
        top = candidates[:_MAX_VERIFY_LOW if low else MAX_VERIFY]
        for c in top:
            if c.distance is None or c.distance > hash_final or low:
                break
            csig = self.signature_of(c)
            if csig is not None and csig.structure >= self.signals.min_structure and self._same_colour(csig, sig):
                # The hash can't see a small offset of textured content (an adjacent crop, a stereo view):
                # a shift phase correlation locks on to and finds larger than jitter sends it to ORB.
                shift, response = phase_shift(csig, sig)
                if response < self.signals.min_response or shift <= self.orb.max_shift:
                    cd = colour_distance(csig, sig)
                    return DedupeReason.DHASH, c.label, f"hamming {c.distance}, colour {cd:.1f}, shift {shift:.3f}"
                self.overruled = c.distance if self.overruled is None else min(self.overruled, c.distance)
        if low:
            window = list(reversed(self.windows[video])) if use_orb else []
            for c in top + window:
                csig = self.signature_of(c)
                if csig is not None and (v := self.flat_verdict(csig, sig)).duplicate:
                    return _verdict(c, v.why)
            return None
        if not use_orb:
            return None
        feats = self.features(path)
        for c in top + list(reversed(self.windows[video])):
            other = self._features_or_none(c.path)
            if other is None:
                continue
            csig = self.signature_of(c)
            if csig is not None and not self._same_colour(csig, sig):
                continue  # the grey layout may agree; the colours say it is another scene
            flat = (lambda cs=csig: self.flat_verdict(cs, sig)) if csig is not None else None
            v = compare(other, feats, self.orb, self.bf, flat=flat)
            if v.duplicate:
                return _verdict(c, v.why)
            if csig is not None and (locked := self._locked(csig, sig)) is not None:
                return _verdict(c, f"{v.why}; {locked}")
        return None

    def _locked(self, a: Signature, b: Signature) -> str | None:
        """Phase correlation locks hard at a jitter's shift: the same content in the same place, where ORB
        could not fit a geometry (a fine repeated texture gives ambiguous matches)."""
        shift, response = phase_shift(a, b)
        if response >= self.signals.lock_response and shift <= self.orb.max_shift:
            return f"phase lock {response:.2f} at shift {shift:.3f}"
        return None


def _verdict(c: Candidate, why: str) -> tuple[str, str, str]:
    if c.distance is None:
        return DedupeReason.ORB, c.label, why
    return DedupeReason.DHASH, c.label, f"hamming {c.distance}, confirmed: {why}"
