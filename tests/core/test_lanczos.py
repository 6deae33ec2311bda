"""The hash's 9x8 resize reproduces Pillow's LANCZOS bit for bit (the store's names depend on every bit), and the
plain-header size reader agrees with Pillow where it answers at all."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samantics_dagster.core.dedupe import lanczos
from samantics_dagster.core.dedupe.imaging import _plain_size, read_size
from tests.images import jpeg_bytes, photo

FIXTURES = Path(__file__).parent / "fixtures"


def _images(shape: tuple[int, int], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, shape, dtype=np.uint8)
    edges = np.where(noise > 127, 255, 0).astype(np.uint8)  # the most ringing LANCZOS can make: clamped both ways
    ramp = np.clip(np.cumsum(rng.normal(0, 5, shape), axis=1) + 128, 0, 255).astype(np.uint8)
    return [noise, edges, ramp, np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8)]


# wide and tall 1/8 decodes (Pillow runs the passes in another order for some tall shapes), small ones that
# are enlarged, and shapes where one axis needs no pass at all
@pytest.mark.parametrize("shape", [(90, 160), (160, 90), (45, 80), (135, 240), (347, 169), (35, 11), (8, 9),
                                   (8, 30), (30, 9), (1, 1), (5, 7), (100, 100)])
def test_resize_is_pillows_lanczos_bit_for_bit(shape):
    for k, img in enumerate(_images(shape, seed=shape[0] * 1000 + shape[1])):
        assert np.array_equal(lanczos.resize_lanczos(img, (9, 8)), lanczos.pillow_resize(img, (9, 8))), (shape, k)


def test_a_shape_whose_arithmetic_differs_stays_with_pillow(monkeypatch):
    """The check on first use is what guards the names: taps that are off send the shape to Pillow."""
    monkeypatch.setattr(lanczos, "_RESIZERS", {})
    monkeypatch.setattr(lanczos, "taps", lambda n, m: np.ones((m, n)))  # a wrong filter
    img = _images((90, 160), seed=1)[0]
    assert np.array_equal(lanczos.resize_lanczos(img, (9, 8)), lanczos.pillow_resize(img, (9, 8)))
    assert lanczos._RESIZERS == {((160, 90), (9, 8)): None}


def _pillow_size(data: bytes) -> tuple[int, int]:
    img = Image.open(io.BytesIO(data))
    w, h = img.size
    return (h, w) if img.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.jpg")))
def test_the_plain_header_reader_agrees_with_pillow_or_leaves_the_file_to_it(name):
    data = (FIXTURES / f"{name}.jpg").read_bytes()
    assert read_size(data) == _pillow_size(data)
    if name.startswith("exif"):
        assert _plain_size(data) is None  # an orientation lives in APP1: Pillow reads it


def test_the_plain_header_reader_answers_for_plain_frames_only():
    plain = jpeg_bytes(photo("coffee", (320, 180)))
    assert _plain_size(plain) == (320, 180) == _pillow_size(plain)
    buf = io.BytesIO()
    Image.open(io.BytesIO(plain)).save(buf, "JPEG", exif=Image.Exif().tobytes())  # an APP1 segment, no orientation
    assert _plain_size(buf.getvalue()) is None and read_size(buf.getvalue()) == (320, 180)
    at = plain.index(b"\xff\xc0") + 5  # the frame header's height: a decompression bomb's size goes to Pillow
    bomb = plain[:at] + (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big") + plain[at + 4:]
    assert _plain_size(bomb) is None
