"""Frame names as grabby writes them: ``{video_id}_{timestamp_ms}.jpg``.

Video ids may themselves contain ``_`` and ``-`` (YouTube ids do), so the name is split on the *last*
underscore. Anything off the pattern is reported as a parse error rather than guessed at: an unparsed
frame has no video, so it can be neither ORB-deduped within its video nor kept out of a split leak.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

FRAME_EXTENSIONS = (".jpg", ".jpeg")
_VIDEO_ID = re.compile(r"[A-Za-z0-9_-]+")
_TIMESTAMP = re.compile(r"[0-9]+")
NAME_FIX = "grabby names frames {video_id}_{timestamp_ms}.jpg (video id of letters, digits, '_' or '-'); rename the file to match"


@dataclass(frozen=True)
class ParsedName:
    video_id: str | None
    timestamp_ms: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def display_name(raw: str | bytes) -> str:
    """A printable, parquet-safe form of a file name.

    ``os.scandir`` hands back undecodable bytes as lone surrogates, which Arrow refuses to store; the
    bytes are shown as ``\\xNN`` instead so the row can still be recorded and a person can find the file.
    """
    data = raw if isinstance(raw, bytes) else os.fsencode(raw)
    return data.decode("utf-8", errors="backslashreplace")


def is_frame_file(name: str) -> bool:
    return name.lower().endswith(FRAME_EXTENSIONS)


def parse_frame_name(name: str | bytes) -> ParsedName:
    """Parse a frame file name; the error says what is wrong and how to fix it."""
    data = name if isinstance(name, bytes) else os.fsencode(name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return ParsedName(None, None, f"file name is not valid UTF-8 ({display_name(data)!r}); {NAME_FIX}")
    stem, dot, ext = text.rpartition(".")
    if not dot or f".{ext.lower()}" not in FRAME_EXTENSIONS:
        return ParsedName(None, None, f"not a .jpg frame ({text!r}); {NAME_FIX}")
    video_id, sep, ts = stem.rpartition("_")
    if not sep or not video_id:
        return ParsedName(None, None, f"no '_' before the timestamp in {text!r}; {NAME_FIX}")
    if not _TIMESTAMP.fullmatch(ts):
        return ParsedName(None, None, f"timestamp {ts!r} in {text!r} is not whole milliseconds; {NAME_FIX}")
    if not _VIDEO_ID.fullmatch(video_id):
        return ParsedName(None, None, f"video id {video_id!r} in {text!r} has characters grabby never writes; {NAME_FIX}")
    return ParsedName(video_id, int(ts), None)
