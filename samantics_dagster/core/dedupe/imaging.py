"""Decoding frames just enough for dedupe.

dhash is taken at 9x8 pixels, so decoding a 720p frame in full to then throw 99.99% of it away is
waste: libjpeg can decode at 1/2, 1/4 or 1/8 scale inside the IDCT, which is where the dhash speed-up
comes from (``benchmarks/bench_dedupe.py``). OpenCV's ``IMREAD_REDUCED_GRAYSCALE_*`` flags reach that
with less overhead than Pillow's draft mode (1.9 vs 2.3 ms per 720p frame, measured); Pillow still
reads the header, for the size and EXIF orientation. ORB gets its own, larger reduced decode only
when a frame survives the global dhash test.

Every failure becomes a ``FrameDecodeError`` whose message says what is wrong with *this* file and
what to do, because the message ends up in the per-frame table a person reads.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image

from samantics_dagster.core.dedupe.signals import PHASE_SIZE, Signature, signature

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
# libjpeg's DCT-domain reductions, as OpenCV exposes them.
_REDUCED_GREY = {1: cv2.IMREAD_GRAYSCALE, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
                 4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}
_REDUCED_COLOUR = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
                   4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


class FrameDecodeError(ValueError):
    """A frame that can't be used; the message is meant for the per-frame table."""


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


#: Markers a plain header is made of: APP0 and APP2-15 (JFIF, ICC, Adobe), quantisation and Huffman tables,
#: restart interval, comment, and the frame (SOF0-2: baseline, extended, progressive, what cameras and
#: encoders write). APP1 (EXIF, XMP: where an orientation lives) and anything else go to Pillow.
_SOF = (0xC0, 0xC1, 0xC2)
_PLAIN = frozenset([0xE0, *range(0xE2, 0xF0), 0xDB, 0xC4, 0xDD, 0xFE, *_SOF])


def _plain_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the frame header of a plain JPEG (no APP1, one 8-bit SOF with 1 or 3 components,
    a size Pillow would open without a decompression-bomb warning); None for anything else. Pillow's
    ``Image.open`` + ``getexif`` gives the same answer for such a file at ten times the cost: most of the
    time ``frame_signature`` spends beside the decode and the thumbnails."""
    size = None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the header is over
            return size
        if marker not in _PLAIN:
            return None
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in _SOF:
            if size is not None or length < 8 or i + 10 > n or data[i + 4] != 8 or data[i + 9] not in (1, 3):
                return None
            h, w = int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
            if not w or not h or w * h > (Image.MAX_IMAGE_PIXELS or 0):
                return None
            size = (w, h)
        if length < 2:
            return None
        i += 2 + length
    return None


def read_size(data: bytes) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied), from the header alone."""
    sniff_jpeg(data)
    plain = _plain_size(data)
    if plain is not None:
        return plain
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise FrameDecodeError(f"frame is too large to decode safely ({exc}); downscale it") from exc
        except Exception as exc:  # Pillow raises several types for garbage headers
            raise FrameDecodeError(f"cannot read JPEG header ({exc}); {REENCODE_FIX}") from exc
    w, h = img.size
    return (h, w) if img.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)


def _reduction(size: tuple[int, int], min_side: int) -> int:
    factor = 8
    while factor > 1 and min(size) // factor < min_side:
        factor //= 2
    return factor


def frame_signature(data: bytes) -> Signature:
    """The dhash that names the store (imagehash's algorithm on the frame in grey) and the signals dedupe
    weighs it with (``signals.py``), from one 1/8-scale colour decode (1/4 for a short side under 256 px):
    colour is what tells a sky from a gradient when the grey layout agrees. Its bits equal those of imagehash's dhash over
    libjpeg's grey decode on 300 of 300 720p frames and 723 of 724 demo frames; committed frames pin both
    (tests/core/test_hash_stability.py)."""
    w, h = read_size(data)
    colour = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED_COLOUR[_reduction((w, h), PHASE_SIZE // 2)])
    if colour is None:
        raise FrameDecodeError(f"JPEG data is corrupt (the decoder gave up); {REENCODE_FIX}")
    return signature(colour, w, h)


def decode_grey(data: bytes, size: tuple[int, int], min_side: int) -> np.ndarray:
    """Grey pixels at the largest DCT reduction whose short side stays >= ``min_side``, upright per EXIF.

    ``size`` is the frame's full size (from ``read_size``): it picks the reduction before decoding.
    """
    grey = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED_GREY[_reduction(size, min_side)])
    if grey is None:
        raise FrameDecodeError(f"JPEG data is corrupt (the decoder gave up); {REENCODE_FIX}")
    return grey


def grey_for_matching(data: bytes, max_side: int) -> np.ndarray:
    """A grey uint8 array with its longest side at most ``max_side``, decoded at a reduced DCT scale."""
    w, h = read_size(data)
    grey = decode_grey(data, (w, h), min_side=max(1, max_side * min(w, h) // max(w, h)))
    scale = max_side / max(grey.shape)
    if scale < 1:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return grey
