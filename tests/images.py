"""Small helpers for tests: real photos from scikit-image as PIL images and JPEG bytes."""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from PIL import Image
from skimage import data


@cache
def _raw(name: str) -> Image.Image:
    arr = getattr(data, name)()
    img = Image.fromarray(np.asarray(arr))
    return img.convert("RGB")


def photo(name: str, size: tuple[int, int], box: tuple[int, int, int, int] | None = None) -> Image.Image:
    img = _raw(name)
    if box is not None:
        img = img.crop(box)
    return img.resize(size, Image.BICUBIC)


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def shifted(img: Image.Image, dx: int, dy: int = 0) -> Image.Image:
    """The same frame moved by (dx, dy) pixels, edges filled by replication, as a jittery camera does."""
    arr = np.asarray(img)
    arr = np.roll(arr, (dy, dx), axis=(0, 1))
    return Image.fromarray(arr)
