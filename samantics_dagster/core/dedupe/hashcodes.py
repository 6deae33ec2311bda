"""64-bit perceptual hash codes as numpy arrays: validation, hex round trip, distance.

The shared ground of the Hamming search (``hamming.py``: pairs within a radius, the radius index),
split from it; its names are re-exported there. numpy only, no Dagster.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

U64 = np.uint64
CHUNK = 1 << 22  # elements per broadcast block: ~32 MB of uint64, keeps memory flat


def n_threads() -> int:
    """Cores this process may use (the container's affinity, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def as_codes(codes: np.ndarray | Sequence[int]) -> np.ndarray:
    """Validate and view as a contiguous 1-D uint64 array (Python ints above 2**63 included)."""
    arr = codes if isinstance(codes, np.ndarray) else np.array(codes, dtype=U64)
    if arr.ndim != 1:
        raise ValueError(f"codes must be 1-D, got shape {arr.shape}")
    if arr.dtype != U64:
        if arr.size and arr.dtype.kind not in "ui":
            raise TypeError(f"codes must be unsigned 64-bit integers, got {arr.dtype}")
        arr = arr.astype(U64)
    return np.ascontiguousarray(arr)


def hex_to_codes(hexes: Sequence[str]) -> np.ndarray:
    """16-hex-char hash strings (the store's file names) -> uint64 codes, vectorised via bytes."""
    hexes = list(hexes)
    bad = next((h for h in hexes if len(h) != 16), None)
    if bad is not None:
        raise ValueError(f"expected 16 hex characters, got {bad!r}")
    return np.frombuffer(bytes.fromhex("".join(hexes)), dtype=">u8").astype(U64)


def codes_to_hex(codes: np.ndarray) -> list[str]:
    """uint64 codes -> zero-padded lowercase 16-char hex, the inverse of ``hex_to_codes``."""
    text = as_codes(codes).astype(">u8").tobytes().hex()
    return [text[k : k + 16] for k in range(0, len(text), 16)]


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise Hamming distance (popcount of xor), broadcasting like any ufunc."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, dtype=U64), np.asarray(b, dtype=U64)))
