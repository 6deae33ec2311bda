"""Pillow's LANCZOS resize of a grey thumbnail to the hash's 9x8, bit for bit, without Pillow's per-call setup.

The store's names are imagehash's dhash, which takes Pillow's ``Image.resize(..., LANCZOS)`` of the frame's
grey 1/8-scale decode. Pillow computes that resize in two passes (one axis, then the other), each a sum of
8-bit pixels times integer weights (the filter's taps in fixed point, 22 fractional bits), rounded down and
clamped to 0-255 between the passes. For a 160x90 thumbnail most of its ~0.1 ms goes to recomputing the ~3000
filter taps (a ``sin`` each) on every call; the sums themselves are two small matrix products.

So the taps of each input size are computed once, the way Pillow computes them, as integer matrices, and the
passes run as float64 matrix products: every product and partial sum is an integer below 2**53, so they are
exact in any summation order. Each new input shape is checked against Pillow itself (on the frame that
brought it and on random images) before it is used; a shape that ever differs stays with Pillow. Pure numpy
+ Pillow; no Dagster imports.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from PIL import Image

_PRECISION_BITS = 22  # Pillow's fixed point for 8-bit images: 32 - 8 - 2
_SUPPORT = 3.0        # LANCZOS' support (a 3-lobe windowed sinc)
_CHECKS = 4           # random images a new shape is checked on, besides the frame that brought it


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


def taps(in_size: int, out_size: int) -> np.ndarray:
    """The ``(out_size, in_size)`` integer weights of one pass (as float64), in Pillow's order of operations:
    the filter at each input position, normalised by the sum of the window's taps, then to fixed point."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = _SUPPORT * filterscale
    out = np.zeros((out_size, in_size), np.float64)
    one = float(1 << _PRECISION_BITS)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        ss = 1.0 / filterscale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights = [_lanczos((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        total = 0.0
        for w in weights:
            total += w
        for x, w in enumerate(weights):
            k = w / total if total != 0.0 else w
            out[xx, xmin + x] = int(-0.5 + k * one) if k < 0 else int(0.5 + k * one)
    return out


_HALF = float(1 << (_PRECISION_BITS - 1))
_UNIT = 1.0 / (1 << _PRECISION_BITS)


def _rounded(sums: np.ndarray) -> np.ndarray:
    """Pillow's rounding of a pass's sums (half a unit added, then floor) and its clamp to 0-255, in place."""
    sums += _HALF
    sums *= _UNIT
    np.floor(sums, out=sums)
    return np.clip(sums, 0, 255, out=sums)


class _Resizer:
    """Two passes for one (input, output) shape; ``None`` passes where Pillow skips them (same size)."""

    def __init__(self, in_wh: tuple[int, int], out_wh: tuple[int, int], vertical_first: bool = False) -> None:
        (iw, ih), (ow, oh) = in_wh, out_wh
        self.horizontal = np.ascontiguousarray(taps(iw, ow).T) if iw != ow else None  # (in, out): pixels @ it
        self.vertical = taps(ih, oh) if ih != oh else None                             # (out, in): it @ pixels
        self.vertical_first = vertical_first

    def __call__(self, grey: np.ndarray) -> np.ndarray:
        out = grey.astype(np.float64)
        if self.vertical_first and self.vertical is not None:
            out = _rounded(self.vertical @ out)
        if self.horizontal is not None:
            out = _rounded(out @ self.horizontal)
        if not self.vertical_first and self.vertical is not None:
            out = _rounded(self.vertical @ out)
        return out.astype(np.uint8)


def pillow_resize(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """What imagehash does: ``Image.resize(size, LANCZOS)`` of the grey array, as uint8."""
    return np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.LANCZOS))


_RESIZERS: dict[tuple[tuple[int, int], tuple[int, int]], _Resizer | None] = {}
_LOCK = threading.Lock()


def _resizer_for(grey: np.ndarray, size: tuple[int, int]) -> _Resizer | None:
    key = ((grey.shape[1], grey.shape[0]), size)
    if key in _RESIZERS:
        return _RESIZERS[key]
    rng = np.random.default_rng(grey.size)
    probes = [grey] + [rng.integers(0, 256, grey.shape, dtype=np.uint8) for _ in range(_CHECKS)]
    probes.append(np.where(probes[-1] > 127, 255, 0).astype(np.uint8))  # hard edges: the most over/undershoot
    wanted = [pillow_resize(p, size) for p in probes]
    resizer: _Resizer | None = None
    for vertical_first in (False, True):  # Pillow 13 runs the vertical pass first for some (tall) shapes
        candidate = _Resizer(*key, vertical_first=vertical_first)
        if all(np.array_equal(candidate(p), w) for p, w in zip(probes, wanted)):
            resizer = candidate
            break
    # None: a Pillow whose arithmetic this does not reproduce; that shape stays with Pillow
    with _LOCK:
        _RESIZERS[key] = resizer
    return resizer


def resize_lanczos(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``Image.fromarray(grey).resize(size, LANCZOS)`` as a uint8 array, bit for bit (``grey``: 2-D uint8)."""
    resizer = _resizer_for(grey, size)
    return resizer(grey) if resizer is not None else pillow_resize(grey, size)
