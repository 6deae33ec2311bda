"""Decoding frames just enough for dedupe.

dhash is taken at 9x8 pixels, so decoding a 720p frame in full to then throw 99.99% of it away is
waste: Pillow's JPEG *draft* mode makes libjpeg decode at 1/8 scale in the DCT domain instead, which
is where the dhash speed-up comes from (see ``benchmarks/bench_dedupe.py``). ORB gets its own,
larger draft decode only when a frame survives the global dhash test.

Every failure becomes a ``FrameDecodeError`` whose message says what is wrong with *this* file and
what to do, because the message ends up in the per-frame table a person reads.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image, ImageOps

JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"RIFF": "WebP/RIFF",
    b"BM": "BMP",
}
REENCODE_FIX = "re-encode it as a baseline JPEG (e.g. `convert in out.jpg`) or remove it from the workdir"


class FrameDecodeError(ValueError):
    """A frame that can't be used; the message is meant for the per-frame table."""


@dataclass(frozen=True)
class FrameHash:
    dhash: int
    width: int  # after EXIF orientation, i.e. as a viewer and the labeller see the frame
    height: int


def sniff_jpeg(data: bytes) -> None:
    """Reject non-JPEG content before handing bytes to a decoder, with a message naming what it is."""
    if not data:
        raise FrameDecodeError(f"zero-byte file; the download was interrupted: {REENCODE_FIX}")
    if data[:2] != JPEG_SOI:
        for magic, kind in _MAGIC.items():
            if data.startswith(magic):
                raise FrameDecodeError(f"file is a {kind} image named .jpg, not a JPEG; {REENCODE_FIX}")
        if all(32 <= b < 127 or b in (9, 10, 13) for b in data[:256]):
            raise FrameDecodeError(f"file is text, not a JPEG (starts {data[:24]!r}); {REENCODE_FIX}")
        raise FrameDecodeError(f"not a JPEG (no SOI marker, starts {data[:8].hex()}); {REENCODE_FIX}")
    if JPEG_EOI not in data[-1024:]:
        raise FrameDecodeError(f"truncated JPEG (no end-of-image marker, {len(data)} bytes); "
                               "the copy was cut short: fetch the frame again or remove it")


def _open(data: bytes) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise FrameDecodeError(f"frame is too large to decode safely ({exc}); downscale it") from exc
        except Exception as exc:  # Pillow raises several types for garbage
            raise FrameDecodeError(f"cannot read JPEG header ({exc}); {REENCODE_FIX}") from exc


def _oriented_size(img: Image.Image) -> tuple[int, int]:
    orientation = img.getexif().get(0x0112, 1)
    w, h = img.size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def decode_reduced(data: bytes, *, min_size: tuple[int, int] | None = None, max_side: int | None = None,
                   mode: str = "L") -> tuple[Image.Image, tuple[int, int]]:
    """Decode at the smallest DCT scale still >= ``min_size`` (or >= the frame scaled to ``max_side``).

    Returns (image, full oriented size). The image is EXIF-transposed, so a frame stored sideways
    hashes the same as its upright twin.
    """
    sniff_jpeg(data)
    img = _open(data)
    full_size = _oriented_size(img)
    if max_side is not None:
        scale = min(1.0, max_side / max(img.size))
        min_size = (max(1, int(img.width * scale)), max(1, int(img.height * scale)))
    try:
        img.draft(mode, min_size)
        img = img.convert(mode)
        img = ImageOps.exif_transpose(img)
    except Image.DecompressionBombError as exc:
        raise FrameDecodeError(f"frame is too large to decode safely ({exc}); downscale it") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise FrameDecodeError(f"JPEG data is corrupt ({exc}); {REENCODE_FIX}") from exc
    return img, full_size


def frame_dhash(data: bytes, hash_size: int = 8) -> FrameHash:
    """imagehash's dhash over a 1/8-scale draft decode (the hash itself only needs 9x8 pixels)."""
    img, (w, h) = decode_reduced(data, min_size=(hash_size + 1, hash_size))
    return FrameHash(dhash=int(str(imagehash.dhash(img, hash_size=hash_size)), 16), width=w, height=h)


def dhash_full_decode(data: bytes, hash_size: int = 8) -> int:
    """The baseline: imagehash.dhash on a full decode (what the old scripts did). Used by the benchmark."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return int(str(imagehash.dhash(img, hash_size=hash_size)), 16)


def grey_for_matching(data: bytes, max_side: int) -> np.ndarray:
    """A grey uint8 array with its longest side at most ``max_side``, decoded at a reduced DCT scale."""
    img, _ = decode_reduced(data, max_side=max_side)
    scale = max_side / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)
