import pytest

from samantics_dagster.core.workdir.naming import display_name, parse_frame_name


@pytest.mark.parametrize(
    "name, video, ts",
    [
        ("abc123_15400.jpg", "abc123", 15400),
        ("a_b-c_d_0.jpg", "a_b-c_d", 0),
        ("-x_Y-_99.JPG", "-x_Y-", 99),
        ("vid_12.jpeg", "vid", 12),
    ],
)
def test_parses_on_last_underscore(name, video, ts):
    parsed = parse_frame_name(name)
    assert parsed.ok, parsed.error
    assert (parsed.video_id, parsed.timestamp_ms) == (video, ts)


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("notes.jpg", "no '_'"),
        ("_123.jpg", "no '_'"),
        ("clip_final.jpg", "not whole milliseconds"),
        ("clip_-5.jpg", "not whole milliseconds"),
        ("my video_1200.jpg", "characters grabby never writes"),
        ("vid_12.png", "not a .jpg"),
        (b"vid\xff_1300.jpg", "not valid UTF-8"),
    ],
)
def test_off_pattern_names_are_errors_with_a_fix(name, fragment):
    parsed = parse_frame_name(name)
    assert not parsed.ok
    assert fragment in parsed.error
    assert "rename" in parsed.error


def test_display_name_is_parquet_safe_for_undecodable_bytes():
    shown = display_name(b"vid\xff_1300.jpg")
    assert shown == "vid\\xff_1300.jpg"
    shown.encode("utf-8")  # no lone surrogates
