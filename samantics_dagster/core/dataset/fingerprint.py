"""A file's cheap "did it change" key: what the incremental artefacts (labels.jsonl segments, the split index,
the COCO shards' manifest, the YOLO export) compare with the sources they were built from."""

from __future__ import annotations

import os
from pathlib import Path


def file_fingerprint(path: Path) -> list[int] | None:
    """(size, mtime_ns) of a file, or None when it does not exist (a list: it is stored in JSON sidecars)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]
