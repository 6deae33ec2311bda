"""The store's file names are dhashes: a library upgrade that changes a hash renames frames.

Pillow 13 changed the order of its two resize passes for tall images, which changes imagehash's dhash of
some shapes between versions; libjpeg-turbo's scaled decode or OpenCV's colour conversion could change too.
These committed JPEGs (wide, tall, EXIF-rotated, small) pin today's hashes: if this fails after an upgrade,
new frames would be named differently from the frames the store holds. Pin the old version, or plan a
rename of the store.

Two hashes per frame: ``frame_signature``'s names the store (imagehash's dhash of the 1/8-scale colour
decode in grey, 1/4 for a short side under 256 px); ``frame_dhash`` (libjpeg's grey decode, what the dhash
benchmark times) gives the same bits on 300 of 300 720p frames and 723 of 724 demo-sample frames, and on
a small frame it decodes at another scale.
"""

import json
from pathlib import Path

import pytest

from benchmarks.dedupe_reference import frame_dhash
from samantics_dagster.core.dedupe.imaging import frame_signature

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED = json.loads((FIXTURES / "frame_hashes.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_hashes_of_committed_frames_have_not_changed(name):
    data = (FIXTURES / f"{name}.jpg").read_bytes()
    want = EXPECTED[name]
    assert len(data) == want["bytes"]
    store, grey = frame_signature(data), frame_dhash(data)
    assert (f"{store.dhash:016x}", store.width, store.height) == (want["store_dhash"], want["width"], want["height"])
    assert (f"{grey.dhash:016x}", grey.width, grey.height) == (want["grey_decode_dhash"], want["width"], want["height"])
