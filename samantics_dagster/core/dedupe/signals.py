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
from functools import cached_property

import cv2
import numpy as np

from samantics_dagster.core.dedupe.lanczos import resize_lanczos

MARGIN = 2            # grey levels (0-255) of a 9x8 cell difference for its bit to count as decided
COLOUR_SIZE = (16, 9)  # (w, h) of the colour thumbnail
PHASE_SIZE = 64       # side of the grey thumbnail for phase correlation
MAX_OFFSET = 24.0     # grey levels of global brightness two frames of one scene may differ by (jitter, exposure)
GREY_CHROMA = 3.0     # a thumbnail whose channels never spread more than this is a greyscale frame (a grey
                      # JPEG decodes to R = G = B; a grey-ish colour frame spreads 4+ and keeps its colour)
_WINDOW = cv2.createHanningWindow((PHASE_SIZE, PHASE_SIZE), cv2.CV_32F)


def _quadric(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Design matrix of a quadratic surface over a w x h grid (1, x, y, x^2, xy, y^2) and its pseudo-inverse."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = (xx.ravel() - (w - 1) / 2) / w, (yy.ravel() - (h - 1) / 2) / h
    basis = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    return basis, np.linalg.pinv(basis).astype(np.float32)


# A quadratic surface fitted to a thumbnail and taken away: smooth illumination (a gradient, a lens's
# vignette, a lamp's fall-off) is not scene structure. Left in, it decides dhash bits alike in unrelated
# frames, and phase correlation locks on to the vignette (which moves with the camera, not the scene).
_SURFACE, _SURFACE_PINV = _quadric(PHASE_SIZE, PHASE_SIZE)
# Phase correlation weighs every frequency alike; sensor noise and JPEG blocks own the high ones, and on a
# smooth frame (a sky, a blurred object) they drown the few low frequencies that carry the content. A
# Gaussian low-pass on the normalised cross-power spectrum keeps the peak where the content is.
_FY = np.fft.fftfreq(PHASE_SIZE)[:, None] * PHASE_SIZE
_FX = np.fft.rfftfreq(PHASE_SIZE)[None, :] * PHASE_SIZE
LOWPASS_SIGMA = 5.0  # cycles per thumbnail
PLATEAU = 0.85  # share of the highest correlation peak a peak near zero shift must reach to be taken
_LOWPASS = np.exp(-(_FX**2 + _FY**2) / (2 * LOWPASS_SIGMA**2))
_LOWPASS_NORM = float(np.fft.irfft2(_LOWPASS, s=(PHASE_SIZE, PHASE_SIZE))[0, 0])  # the peak of a perfect match
_HASH_SURFACE, _HASH_SURFACE_PINV = _quadric(9, 8)


@dataclass(frozen=True)
class Signature:
    """A frame's hash and the signals beside it (all from one reduced decode)."""

    dhash: int
    width: int          # as displayed (EXIF orientation applied)
    height: int
    structure: int      # bits of 64 decided by a clear margin, 0 for a constant hash
    colour: np.ndarray  # (9, 16, 3) uint8 RGB thumbnail
    grey: np.ndarray    # (64, 64) uint8 thumbnail (aspect squashed: shifts are measured per axis)

    @cached_property
    def texture(self) -> float:
        """Grey std of the 64x64 thumbnail once a fitted quadratic surface is taken away: ~0.4 on a ramp.
        Only the flat test reads it (frames with little structure), so it is computed when first asked for,
        not for every frame hashed."""
        return float(_deplaned(self.grey).std())


def hash_and_structure(grey: np.ndarray, hash_size: int = 8) -> tuple[int, int]:
    """imagehash's dhash bits (same resize, same order) and how many of them a clear margin decides once
    smooth illumination is taken away: a bit counts only if its difference is >= ``MARGIN`` both in the
    thumbnail and in what is left of it after a fitted quadratic surface (a vignette or a lamp's gradient
    decides bits, but alike in every frame it lights)."""
    small = resize_lanczos(grey, (hash_size + 1, hash_size)).astype(np.int16)  # Pillow's LANCZOS, bit for bit
    diff = small[:, 1:] - small[:, :-1]
    bits = (diff > 0).ravel()
    code = int.from_bytes(np.packbits(bits).tobytes(), "big")
    decided_mask = np.abs(diff) >= MARGIN
    if hash_size == 8:
        flat = small.astype(np.float32).ravel()
        rest = (flat - _HASH_SURFACE @ (_HASH_SURFACE_PINV @ flat)).reshape(small.shape)
        decided_mask &= np.abs(rest[:, 1:] - rest[:, :-1]) >= MARGIN
    decided = int(decided_mask.sum())
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
    return Signature(code, width, height, structure, np.ascontiguousarray(thumb), phase)


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
    """The thumbnail less its fitted quadratic surface (smooth illumination)."""
    f = grey.astype(np.float32).ravel()
    return (f - _SURFACE @ (_SURFACE_PINV @ f)).reshape(PHASE_SIZE, PHASE_SIZE)


def _near_zero(shift: float, w: int, h: int) -> np.ndarray:
    """Thumbnail offsets (wrapped) whose shift, scaled back to the frame, is at most ``shift`` of its long side."""
    oy = (np.fft.fftfreq(PHASE_SIZE) * PHASE_SIZE)[:, None] * h / PHASE_SIZE
    ox = (np.fft.fftfreq(PHASE_SIZE) * PHASE_SIZE)[None, :] * w / PHASE_SIZE
    return np.hypot(ox, oy) <= shift * max(w, h, 1)


def _mean_chroma(thumb: np.ndarray) -> np.ndarray:
    """The thumbnail's mean opponent colour (R - G, (R + G)/2 - B): its hue is the angle, its saturation the
    length. Unchanged by a global brightness offset, scaled by contrast: what exposure does to one scene."""
    c = thumb.reshape(-1, 3).astype(np.float32).mean(axis=0)
    return np.array([c[0] - c[1], (c[0] + c[1]) / 2 - c[2]], np.float32)


def grey_against_colour(a: Signature, b: Signature, min_chroma: float) -> bool:
    """One frame greyscale (``GREY_CHROMA``), the other tinted (mean chroma >= ``min_chroma``)."""
    ga, gb = _chroma(a.colour.astype(np.float32)) < GREY_CHROMA, _chroma(b.colour.astype(np.float32)) < GREY_CHROMA
    if ga == gb:
        return False
    tinted = b if ga else a
    return float(np.hypot(*_mean_chroma(tinted.colour))) >= min_chroma


def hue_difference(a: Signature, b: Signature, min_chroma: float) -> float:
    """Degrees between the frames' mean hues; 0 when either is too grey (chroma < ``min_chroma``) to have one.

    At low saturation two walls 60 degrees of hue apart differ by a few grey levels per channel, within
    what a colour distance must allow for exposure; their hue angle does not move with exposure."""
    ca, cb = _mean_chroma(a.colour), _mean_chroma(b.colour)
    na, nb = float(np.hypot(*ca)), float(np.hypot(*cb))
    if min(na, nb) < min_chroma:
        return 0.0
    cos = float(np.dot(ca, cb)) / (na * nb)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def phase_shift(a: Signature, b: Signature, prefer_within: float = 0.0) -> tuple[float, float]:
    """(shift of ``b`` against ``a`` as a fraction of the long side, peak response) by phase correlation.

    Shifts are measured per axis on the squashed 64x64 thumbnails and scaled back to the frame's pixels.
    A response near 0 means no shift explains the pair (different content, or nothing to lock on to).
    On smooth content (a sky's clouds) the peak is broad and its top wanders by a few thumbnail pixels:
    with ``prefer_within`` (a shift, as a fraction of the long side) a peak within that shift that reaches
    ``PLATEAU`` of the highest one is taken instead.
    """
    fa, fb = np.fft.rfft2(_deplaned(a.grey) * _WINDOW), np.fft.rfft2(_deplaned(b.grey) * _WINDOW)
    cross = fb * np.conj(fa)
    cross *= _LOWPASS / (np.abs(cross) + 1e-6)
    surface = np.fft.irfft2(cross, s=(PHASE_SIZE, PHASE_SIZE))
    py, px = np.unravel_index(int(np.argmax(surface)), surface.shape)
    if prefer_within > 0:
        near = np.where(_near_zero(prefer_within, a.width, a.height), surface, -np.inf)
        ny, nx = np.unravel_index(int(np.argmax(near)), surface.shape)
        if near[ny, nx] >= PLATEAU * surface[py, px]:
            py, px = ny, nx
    response = float(surface[py, px]) / _LOWPASS_NORM
    # sub-pixel: the centroid of the 3x3 around the peak (wrapping), as OpenCV's phaseCorrelate does on 5x5
    ys, xs = (np.arange(py - 1, py + 2) % PHASE_SIZE), (np.arange(px - 1, px + 2) % PHASE_SIZE)
    patch = np.clip(surface[np.ix_(ys, xs)], 0, None)
    total = float(patch.sum()) or 1.0
    offs = np.array([-1.0, 0.0, 1.0])
    dy = (py + float((patch.sum(axis=1) * offs).sum()) / total + PHASE_SIZE / 2) % PHASE_SIZE - PHASE_SIZE / 2
    dx = (px + float((patch.sum(axis=0) * offs).sum()) / total + PHASE_SIZE / 2) % PHASE_SIZE - PHASE_SIZE / 2
    w, h = a.width, a.height
    shift = math.hypot(dx * w / PHASE_SIZE, dy * h / PHASE_SIZE) / max(w, h, 1)
    return shift, float(response)
