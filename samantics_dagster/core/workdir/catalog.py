"""The ingress catalog: one row per frame file under ``{workdir}/{source}/{category}/``.

Only ``stat`` is done here (no reads): the catalog is cheap to rebuild on every run, and its
``bytes``/``mtime_ns`` are the fingerprint later stages use to skip frames they have already seen.
Symlinks are followed only while they stay inside the workdir, so a stray link can't pull a user's
home directory into the dataset.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from samantics_dagster.core.workdir.naming import display_name, is_frame_file, parse_frame_name

INGRESS_COLUMNS = [
    "rel_path", "source", "category", "video_id", "timestamp_ms", "bytes", "mtime_ns", "parse_error",
]


@dataclass(frozen=True)
class FrameEntry:
    rel_path: str
    abs_path: bytes  # bytes, so odd file names round-trip to the file system exactly
    source: str
    category: str
    video_id: str | None
    timestamp_ms: int | None
    size: int
    mtime_ns: int
    parse_error: str | None


def _inside(root_real: str, path: bytes) -> bool:
    real = os.path.realpath(path)
    root = os.fsencode(root_real)
    return real == root or real.startswith(root + b"/")


def iter_sources(workdir: Path) -> Iterator[tuple[str, bytes]]:
    """Source folders (``youtube``, ``vimeo``...), skipping hidden ones and links that leave the workdir."""
    root = os.fsencode(workdir)
    root_real = os.path.realpath(workdir)
    if not os.path.isdir(root):
        return
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        name = entry.name.decode("utf-8", "backslashreplace")
        if name.startswith(".") or not entry.is_dir(follow_symlinks=True):
            continue
        if entry.is_symlink() and not _inside(root_real, entry.path):
            continue
        yield name, entry.path


def list_categories(workdir: Path) -> list[str]:
    """Category folder names across all sources (the candidates for ``category`` partitions)."""
    names: set[str] = set()
    root_real = os.path.realpath(workdir)
    for _, src_path in iter_sources(workdir):
        for entry in os.scandir(src_path):
            name = entry.name.decode("utf-8", "backslashreplace")
            if name.startswith(".") or not entry.is_dir(follow_symlinks=True):
                continue
            if entry.is_symlink() and not _inside(root_real, entry.path):
                continue
            names.add(name)
    return sorted(names)


def scan_category(workdir: Path, category: str) -> list[FrameEntry]:
    """Every ``*.jpg`` in ``{source}/{category}/`` for every source, with its stat fingerprint.

    Non-frame files (``.txt``, ``.json`` sidecars grabby may leave) are not frames and are skipped;
    a ``.jpg`` whose name is off the pattern is kept with ``parse_error`` so it is seen and reported.
    """
    root_real = os.path.realpath(workdir)
    frames: list[FrameEntry] = []
    for source, src_path in iter_sources(workdir):
        cat_path = os.path.join(src_path, os.fsencode(category))
        if not os.path.isdir(cat_path):
            continue
        if os.path.islink(cat_path) and not _inside(root_real, cat_path):
            continue
        for entry in os.scandir(cat_path):
            raw_name: bytes = entry.name
            if raw_name.startswith(b".") or not is_frame_file(os.fsdecode(raw_name)):
                continue
            rel_path = f"{source}/{category}/{display_name(raw_name)}"
            error: str | None = None
            size, mtime_ns = 0, 0
            if entry.is_symlink() and not _inside(root_real, entry.path):
                error = "symlink points outside GRABBY_WORKDIR; copy the frame into the workdir instead of linking it"
            elif not entry.is_file(follow_symlinks=True):
                continue
            else:
                st = entry.stat(follow_symlinks=True)
                size, mtime_ns = st.st_size, st.st_mtime_ns
            parsed = parse_frame_name(raw_name)
            frames.append(FrameEntry(
                rel_path=rel_path, abs_path=entry.path, source=source, category=category,
                video_id=parsed.video_id, timestamp_ms=parsed.timestamp_ms, size=size, mtime_ns=mtime_ns,
                parse_error=error or parsed.error,
            ))
    frames.sort(key=lambda f: f.rel_path)
    return frames


def frames_to_table(frames: list[FrameEntry]) -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "rel_path": [f.rel_path for f in frames],
            "source": [f.source for f in frames],
            "category": [f.category for f in frames],
            "video_id": pd.array([f.video_id for f in frames], dtype="string"),
            "timestamp_ms": pd.array([f.timestamp_ms for f in frames], dtype="Int64"),
            "bytes": pd.array([f.size for f in frames], dtype="int64"),
            "mtime_ns": pd.array([f.mtime_ns for f in frames], dtype="int64"),
            "parse_error": pd.array([f.parse_error for f in frames], dtype="string"),
        },
        columns=INGRESS_COLUMNS,
    )
    return table
