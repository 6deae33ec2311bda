import io

import imagehash
import numpy as np
import pytest
from PIL import Image

from benchmarks.dedupe_reference import dhash_full_decode, frame_dhash
from samantics_dagster.core.dedupe.imaging import FrameDecodeError, grey_for_matching
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


def test_signature_hash_is_imagehash_dhash_of_the_same_pixels_and_structure_tells_smooth_from_busy():
    import cv2

    from samantics_dagster.core.dedupe.imaging import frame_signature
    from samantics_dagster.core.dedupe.signals import hash_and_structure

    busy = jpeg_bytes(photo("astronaut", (640, 360)))
    grey = cv2.cvtColor(cv2.imdecode(np.frombuffer(busy, np.uint8), cv2.IMREAD_REDUCED_COLOR_8), cv2.COLOR_BGR2GRAY)
    code, _ = hash_and_structure(grey)
    assert code == int(str(imagehash.dhash(Image.fromarray(grey))), 16)
    sig = frame_signature(busy)
    assert sig.dhash == code and (sig.width, sig.height) == (640, 360)
    ramp = np.broadcast_to(np.linspace(40, 200, 640, dtype=np.float32)[None, :, None], (360, 640, 3))
    smooth = frame_signature(jpeg_bytes(Image.fromarray(ramp.astype(np.uint8), "RGB")))
    flat = frame_signature(jpeg_bytes(Image.new("RGB", (640, 360), (120, 130, 140))))
    assert sig.structure >= 40  # a photo's bits are decided by clear gradients
    assert smooth.structure == 0  # a ramp's hash is constant: every ramp of that direction shares it
    assert flat.structure <= 8
    assert sig.colour.shape == (9, 16, 3) and sig.grey.shape == (64, 64)
    assert smooth.texture < 0.7 < sig.texture  # a ramp leaves nothing for phase correlation to lock on to


def test_a_greyscale_copy_of_a_colour_frame_has_the_colour_distance_of_its_greys():
    """A grabber may deliver a frame as greyscale JPEG: it is the same scene, and a sky is still not a wall."""
    from samantics_dagster.core.dedupe.imaging import frame_signature
    from samantics_dagster.core.dedupe.signals import colour_distance

    img = photo("coffee", (640, 360))
    colour, grey = frame_signature(jpeg_bytes(img)), frame_signature(jpeg_bytes(img.convert("L")))
    other = frame_signature(jpeg_bytes(photo("astronaut", (640, 360)).convert("L")))
    assert colour_distance(colour, grey) < 5
    assert colour_distance(colour, other) > 20
