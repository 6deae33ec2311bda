from PIL import Image

from samantics_dagster.core.dedupe.imaging import grey_for_matching
from samantics_dagster.core.dedupe.orb import OrbSettings, compare, orb_features
from tests.images import jpeg_bytes, photo

SETTINGS = OrbSettings()
W, H = 640, 360


def _feats(img: Image.Image):
    return orb_features(grey_for_matching(jpeg_bytes(img, quality=85), SETTINGS.max_side), SETTINGS)


def _pan(x: int) -> Image.Image:
    """A 640x360 view into a larger photo at horizontal offset x: a camera panning across it."""
    big = photo("astronaut", (1600, 900))
    return big.crop((x, 200, x + W, 200 + H))


def test_small_shift_is_a_duplicate():
    verdict = compare(_feats(_pan(300)), _feats(_pan(304)), SETTINGS)
    assert verdict.duplicate, verdict.why


def test_pan_of_200px_is_not_a_duplicate_even_though_matches_are_plentiful():
    verdict = compare(_feats(_pan(300)), _feats(_pan(500)), SETTINGS)
    assert not verdict.duplicate, verdict.why
    assert "shift" in verdict.why or "thumb" in verdict.why


def test_pan_of_200px_fails_on_geometry_when_the_screen_is_off():
    loose = OrbSettings(screen_distance=10.0)
    verdict = compare(_feats(_pan(300)), _feats(_pan(500)), loose)
    assert not verdict.duplicate
    assert verdict.why.startswith("shift")


def test_different_photos_are_not_duplicates():
    a = _feats(photo("astronaut", (W, H)))
    b = _feats(photo("coffee", (W, H)))
    assert not compare(a, b, SETTINGS).duplicate


def test_jpeg_requality_and_brightness_is_a_duplicate():
    img = _pan(100)
    brighter = Image.eval(img, lambda v: min(255, int(v * 1.04)))
    a = orb_features(grey_for_matching(jpeg_bytes(img, 92), 640), SETTINGS)
    b = orb_features(grey_for_matching(jpeg_bytes(brighter, 75), 640), SETTINGS)
    assert compare(a, b, SETTINGS).duplicate
