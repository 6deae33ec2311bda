"""What a frame's hash rests on, and the second signals that decide where the hash can't.

A 9x8 dhash bit is the sign of the difference between two neighbouring cells of a grey 9x8 thumbnail.
On a smooth frame (sky, lit wall, gradient, a fade to black, a blurred object on a flat background) those
differences are a grey level or two, so the bits are decided by noise and jitter, and unrelated smooth
frames collide at distance <= 4 (every scene lost on unseen footage was such a match). So each
frame carries, from the same 1/8-scale decode as its hash:

* ``structure``: how many of the 64 bits are decided by a clear margin (|difference| >= ``MARGIN`` grey
  levels). A match is final on the hash alone only between frames with enough structure; a constant hash
  (a steep gradient is all ones or all zeros) counts as little structure too, because every gradient of
  that direction shares it;
* a 16x9 colour thumbnail: a sky and a gradient of the same grey layout differ completely in colour, and
  two crops of one gradient differ in the colours they span;
* a 64x64 grey thumbnail for phase correlation: where ORB finds too few corners, the shift between two
  frames is still measurable, and a move of more than ``orb_max_shift`` is a new view.

Pure numpy + OpenCV + Pillow; no Dagster imports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

MARGIN = 2            # grey levels (0-255) of a 9x8 cell difference for its bit to count as decided
COLOUR_SIZE = (16, 9)  # (w, h) of the colour thumbnail
PHASE_SIZE = 64       # side of the grey thumbnail for phase correlation
MAX_OFFSET = 24.0     # grey levels of global brightness two frames of one scene may differ by (jitter, exposure)
GREY_CHROMA = 8.0     # a thumbnail whose channels never spread more than this is a greyscale frame
_WINDOW = cv2.createHanningWindow((PHASE_SIZE, PHASE_SIZE), cv2.CV_32F)
# A plane a + b*x + c*y fitted to a thumbnail and taken away before correlating: a smooth gradient has no
# position to lock on to, and left in it makes a peak at an arbitrary shift.
_YY, _XX = np.mgrid[0:PHASE_SIZE, 0:PHASE_SIZE].astype(np.float32)
_PLANE = np.stack([np.ones(PHASE_SIZE * PHASE_SIZE, np.float32), _XX.ravel(), _YY.ravel()], axis=1)
_PLANE_PINV = np.linalg.pinv(_PLANE).astype(np.float32)


@dataclass(frozen=True)
class Signature:
    """A frame's hash and the signals beside it (all from one reduced decode)."""

    dhash: int
    width: int          # as displayed (EXIF orientation applied)
    height: int
    structure: int      # bits of 64 decided by a clear margin, 0 for a constant hash
    colour: np.ndarray  # (9, 16, 3) uint8 RGB thumbnail
    grey: np.ndarray    # (64, 64) uint8 thumbnail (aspect squashed: shifts are measured per axis)
    texture: float = 0.0  # grey std of that thumbnail once a fitted plane is taken away: ~0.4 on a pure gradient


def hash_and_structure(grey: np.ndarray, hash_size: int = 8) -> tuple[int, int]:
    """imagehash's dhash bits (same resize, same order) and how many of them a clear margin decides."""
    small = np.asarray(Image.fromarray(grey).resize((hash_size + 1, hash_size), Image.Resampling.LANCZOS),
                       dtype=np.int16)
    diff = small[:, 1:] - small[:, :-1]
    bits = (diff > 0).ravel()
    code = int.from_bytes(np.packbits(bits).tobytes(), "big")
    decided = int((np.abs(diff) >= MARGIN).sum())
    ones = int(bits.sum())
    # A (nearly) constant hash is shared by every frame with a gradient of that direction.
    constancy = min(ones, bits.size - ones)
    return code, min(decided, 4 * constancy)


def signature(colour_bgr: np.ndarray, width: int, height: int) -> Signature:
    """All signals of a frame from its reduced colour decode (BGR, as OpenCV gives it)."""
    grey = cv2.cvtColor(colour_bgr, cv2.COLOR_BGR2GRAY)
    code, structure = hash_and_structure(grey)
    thumb = cv2.resize(colour_bgr, COLOUR_SIZE, interpolation=cv2.INTER_AREA)[..., ::-1]
    phase = cv2.resize(grey, (PHASE_SIZE, PHASE_SIZE), interpolation=cv2.INTER_AREA)
    return Signature(code, width, height, structure, np.ascontiguousarray(thumb), phase, float(_deplaned(phase).std()))


def _chroma(thumb: np.ndarray) -> float:
    """The largest channel spread of any thumbnail pixel: ~0 for a greyscale frame."""
    return float((thumb.max(axis=2) - thumb.min(axis=2)).max())


def colour_distance(a: Signature, b: Signature) -> float:
    """Mean absolute RGB difference of the colour thumbnails (grey levels), after allowing the two frames
    a global brightness offset of up to ``MAX_OFFSET`` (what exposure and jitter change in one scene)."""
    ca, cb = a.colour.astype(np.float32), b.colour.astype(np.float32)
    if min(_chroma(ca), _chroma(cb)) < GREY_CHROMA:  # a greyscale copy of a colour frame: compare the greys
        ca, cb = ca.mean(axis=2, keepdims=True), cb.mean(axis=2, keepdims=True)
    delta = ca - cb
    offset = float(np.clip(delta.mean(), -MAX_OFFSET, MAX_OFFSET))
    return float(np.abs(delta - offset).mean())


def _deplaned(grey: np.ndarray) -> np.ndarray:
    f = grey.astype(np.float32).ravel()
    return (f - _PLANE @ (_PLANE_PINV @ f)).reshape(PHASE_SIZE, PHASE_SIZE)


def phase_shift(a: Signature, b: Signature) -> tuple[float, float]:
    """(shift of ``b`` against ``a`` as a fraction of the long side, peak response) by phase correlation.

    Shifts are measured per axis on the squashed 64x64 thumbnails and scaled back to the frame's pixels.
    A response near 0 means no shift explains the pair (different content, or nothing to lock on to).
    """
    fa, fb = _deplaned(a.grey), _deplaned(b.grey)
    (dx, dy), response = cv2.phaseCorrelate(fa, fb, _WINDOW)
    w, h = a.width, a.height
    shift = math.hypot(dx * w / PHASE_SIZE, dy * h / PHASE_SIZE) / max(w, h, 1)
    return shift, float(response)
