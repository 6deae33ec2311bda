"""Reference implementations the dedupe tests and benchmarks compare the shipped code against.

None of these run in the pipeline, so they live beside the benchmarks, outside the installed package:

* ``frame_dhash``: imagehash's dhash over libjpeg's 1/8-scale *grey* decode (the pipeline names the store
  by ``imaging.frame_signature``, which hashes its colour decode in grey: the same bits on 16:9 frames);
* ``dhash_full_decode``: imagehash's dhash on a full decode (what scripts without a reduced decode do);
* ``imagehash_draft``: the same with Pillow's ``Image.draft`` (the fair imagehash baseline: libjpeg's
  DCT-domain reduction, as the pipeline uses);
* ``brute_force_pairs``: all pairs within a Hamming radius by a plain numpy scan;
* ``planted_codes``: 64-bit codes shaped like video dhashes (near-duplicate clusters among random codes).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image

from samantics_dagster.core.dedupe.hashcodes import CHUNK, U64, as_codes
from samantics_dagster.core.dedupe.imaging import decode_grey, read_size


@dataclass(frozen=True)
class FrameHash:
    dhash: int
    width: int  # after EXIF orientation
    height: int


def frame_dhash(data: bytes, hash_size: int = 8) -> FrameHash:
    """imagehash's dhash over libjpeg's 1/8-scale grey decode (the hash itself only needs 9x8 pixels)."""
    w, h = read_size(data)
    grey = decode_grey(data, (w, h), min_side=hash_size + 1)
    code = int(str(imagehash.dhash(Image.fromarray(grey), hash_size=hash_size)), 16)
    return FrameHash(dhash=code, width=w, height=h)


def dhash_full_decode(data: bytes, hash_size: int = 8) -> int:
    """imagehash.dhash on a full decode."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return int(str(imagehash.dhash(img, hash_size=hash_size)), 16)


def imagehash_draft(data: bytes, hash_size: int = 8, method: str = "dhash") -> int:
    """An imagehash hash (``dhash``, ``phash``, ``whash``) after Pillow's ``draft``: libjpeg decodes in grey at
    the largest DCT reduction (1/2, 1/4, 1/8) that keeps the frame at least 64 px a side."""
    with Image.open(io.BytesIO(data)) as img:
        img.draft("L", (64, 64))
        img.load()
        return int(str(getattr(imagehash, method)(img, hash_size=hash_size)), 16)


def brute_force_pairs(codes: np.ndarray, radius: int) -> np.ndarray:
    """All pairs i < j with Hamming distance <= radius, by a chunked numpy popcount scan.

    Returns int64 (P, 2), rows sorted lexicographically. O(N^2): the reference, not for 1 M.
    """
    codes = as_codes(codes)
    n = codes.size
    step = max(1, CHUNK // max(n, 1))
    keys = []
    for a in range(0, n, step):
        ii, jj = np.nonzero(np.bitwise_count(codes[a : a + step, None] ^ codes[None, a:]) <= radius)
        ii, jj = ii + a, jj + a
        upper = jj > ii
        keys.append(ii[upper].astype(np.int64) * n + jj[upper])
    key = np.sort(np.concatenate(keys)) if keys else np.empty(0, np.int64)
    return np.stack([key // n, key % n], axis=1) if key.size else np.empty((0, 2), dtype=np.int64)


def planted_codes(
    n: int, seed: int, cluster_size: int = 20, flips_mean: float = 3.0, clustered_fraction: float = 0.5
) -> np.ndarray:
    """Codes shaped like video dhashes: near-duplicate clusters among random codes.

    ``clustered_fraction`` of the codes come in clusters of ``cluster_size``, each member a random
    centre with Poisson(``flips_mean``) random bits set to flip (drawn with replacement, so a repeat
    flips one bit); the rest are uniform. The order is shuffled so clusters are not contiguous.
    """
    rng = np.random.default_rng(seed)
    n_clustered = int(round(n * clustered_fraction))
    n_clusters = -(-n_clustered // cluster_size) if n_clustered else 0
    centres = rng.integers(0, np.iinfo(U64).max, size=n_clusters, dtype=U64, endpoint=True)
    members = centres[np.arange(n_clustered) // cluster_size]
    flips = rng.poisson(flips_mean, size=n_clustered)
    mask = np.zeros(n_clustered, dtype=U64)
    for k in range(int(flips.max(initial=0))):
        bit = U64(1) << rng.integers(0, 64, size=n_clustered, dtype=U64)
        mask |= np.where(flips > k, bit, U64(0))
    uniform = rng.integers(0, np.iinfo(U64).max, size=n - n_clustered, dtype=U64, endpoint=True)
    return rng.permutation(np.concatenate([members ^ mask, uniform]))
