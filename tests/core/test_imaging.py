import io

import imagehash
import numpy as np
import pytest
from PIL import Image

from samantics_dagster.core.dedupe.imaging import FrameDecodeError, dhash_full_decode, frame_dhash, grey_for_matching
from tests.images import jpeg_bytes, photo


def test_reduced_decode_hash_is_close_to_full_decode_hash():
    data = jpeg_bytes(photo("astronaut", (1280, 720)))
    fast = frame_dhash(data).dhash
    full = dhash_full_decode(data)
    assert bin(fast ^ full).count("1") <= 4


def test_dimensions_come_from_the_header_after_exif_orientation():
    img = photo("coffee", (640, 360))
    rotated = img.transpose(Image.Transpose.ROTATE_90)  # stored sideways (360x640)
    exif = Image.Exif()
    exif[0x0112] = 6  # viewers rotate it back upright
    buf = io.BytesIO()
    rotated.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    h = frame_dhash(buf.getvalue())
    assert (h.width, h.height) == (640, 360)
    upright = frame_dhash(jpeg_bytes(img)).dhash
    assert bin(h.dhash ^ upright).count("1") <= 6


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: b"", "zero-byte"),
        (lambda: jpeg_bytes(photo("camera", (320, 240)))[:3000], "truncated"),
        (lambda: _png_bytes(), "PNG image named .jpg"),
        (lambda: b"<html>not found</html>\n", "text, not a JPEG"),
        (lambda: b"\x00\x01\x02garbage" * 10, "no SOI marker"),
    ],
)
def test_bad_files_raise_clear_errors(make, fragment):
    with pytest.raises(FrameDecodeError) as err:
        frame_dhash(make())
    assert fragment in str(err.value)


def test_corrupt_scan_data_is_a_decode_error():
    data = bytearray(jpeg_bytes(photo("camera", (320, 240))))
    data[600:2000] = b"\xff" * 1400  # markers in the middle of entropy-coded data
    try:
        frame_dhash(bytes(data))
    except FrameDecodeError as exc:
        assert "corrupt" in str(exc) or "header" in str(exc)


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grey_and_cmyk_jpegs_hash(mode):
    img = photo("chelsea", (320, 240)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    h = frame_dhash(buf.getvalue())
    ref = frame_dhash(jpeg_bytes(photo("chelsea", (320, 240)))).dhash
    assert (h.width, h.height) == (320, 240)
    assert bin(h.dhash ^ ref).count("1") <= 8


def test_grey_for_matching_limits_the_long_side():
    grey = grey_for_matching(jpeg_bytes(photo("astronaut", (1280, 720))), 640)
    assert grey.shape == (360, 640) and grey.dtype == np.uint8


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    photo("camera", (64, 64)).save(buf, "PNG")
    return buf.getvalue()


def test_baseline_matches_imagehash():
    data = jpeg_bytes(photo("rocket", (320, 240)))
    assert dhash_full_decode(data) == int(str(imagehash.dhash(Image.open(io.BytesIO(data)))), 16)
