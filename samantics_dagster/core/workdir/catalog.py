"""The ingress catalog: one row per frame file under ``{workdir}/{source}/{category}/``.

Only ``stat`` is done here (no reads): the catalog is cheap to rebuild on every run, and its
``bytes``/``mtime_ns`` are the fingerprint later stages use to skip frames they have already seen.
Symlinks are followed only while they stay inside the workdir, so a stray link can't pull a user's
home directory into the dataset.
"""

from __future__ import annotations

import os
import unicodedata
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


def inside(root_real: str, path: bytes) -> bool:
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
        if entry.is_symlink() and not inside(root_real, entry.path):
            continue
        yield name, entry.path


MAX_KEY_BYTES = 200
# Dagster 1.13.27 refuses these in partition keys (dagster/_core/definitions/partitions/utils/base.py,
# INVALID_PARTITION_SUBSTRINGS: "..." is the UI/CLI range syntax "a...b", the rest don't display).
# It enforces them for static partitions only; ``add_dynamic_partitions`` stores any string, which then
# breaks range selection in the UI and CLI -- so they are refused here before they reach the instance.
DAGSTER_INVALID_SUBSTRINGS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")


def partition_key_problem(name: str) -> str | None:
    """Why ``name`` can't be a ``category`` partition key, or None if it can.

    Refused: hidden names, names that are not valid UTF-8 (``os.fsdecode`` surrogates), Dagster's
    invalid substrings, '/', ',' and leading/trailing whitespace (``dagster job backfill --partitions``
    splits keys on ',' and strips them), control characters and keys over ``MAX_KEY_BYTES`` bytes (a key
    is also a file name, ``tables/{asset}/{category}.parquet``, and part of every run key).
    """
    if name.startswith("."):
        return "hidden folder (starts with '.')"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8"
    bad = [s for s in DAGSTER_INVALID_SUBSTRINGS if s in name]
    if bad:
        return f"Dagster refuses {', '.join(repr(s) for s in bad)} in a partition key"
    if "/" in name:
        return "'/' in a partition key"
    if "," in name:  # `dagster job backfill --partitions a,b` splits on commas: the key could not be named
        return "',' in a partition key (Dagster's CLI separates partition keys with commas)"
    if name != name.strip():  # ... and strips whitespace around each key
        return "leading or trailing whitespace (Dagster's CLI strips it from partition keys)"
    controls = sorted({f"U+{ord(c):04X}" for c in name if unicodedata.category(c) == "Cc"})
    if controls:
        return f"control characters ({', '.join(controls)})"
    if len(encoded) > MAX_KEY_BYTES:
        return f"name is {len(encoded)} bytes, longer than {MAX_KEY_BYTES}"
    return None


def skip_reason(folder: str, problem: str) -> str:
    if problem.startswith("hidden"):
        return (f"{folder}: {problem}; hidden folders are never ingested -- rename it without the leading '.' "
                f"if its frames belong in the dataset")
    return (f"{folder}: {problem}; not usable as a category partition key -- rename the folder to a UTF-8 "
            f"name of at most {MAX_KEY_BYTES} bytes without '...', ',', '/', control characters or "
            f"surrounding spaces")


def display_folder(name: str) -> str:
    """A folder name as reasons show it (bytes that are not UTF-8 as ``\\xff``)."""
    return display_name(os.fsencode(name))


def category_folders(src_path: str | bytes, src_name: str, root_real: str, skipped: dict[str, str]) -> set[str]:
    """The valid category folder names of one source; each refused folder goes to ``skipped`` with a
    reason naming it and the fix. The one rule for the sensor, ``samantics add-partitions`` and the demo:
    hidden names, names that are not partition keys (``partition_key_problem``) and links leaving the
    workdir are refused."""
    names: set[str] = set()
    src_name = os.fsdecode(src_name)
    with os.scandir(os.fsdecode(src_path)) as it:
        for entry in it:
            try:
                if not entry.is_dir(follow_symlinks=True):
                    continue
            except OSError:
                continue
            folder = f"{display_folder(src_name)}/{display_folder(entry.name)}"
            if entry.is_symlink() and not inside(root_real, os.fsencode(entry.path)):
                skipped[folder] = (f"{folder}: symlink points outside GRABBY_WORKDIR; copy or move the "
                                   f"folder into the workdir instead of linking it")
                continue
            problem = partition_key_problem(entry.name)
            if problem:
                skipped[folder] = skip_reason(folder, problem)
                continue
            names.add(entry.name)
    return names


def list_category_folders(workdir: Path) -> tuple[list[str], dict[str, str]]:
    """(category names across all sources, refused folder -> reason): ``category_folders`` over every source."""
    names: set[str] = set()
    skipped: dict[str, str] = {}
    root_real = os.path.realpath(workdir)
    for source, src_path in iter_sources(workdir):
        names |= category_folders(src_path, source, root_real, skipped)
    return sorted(names), dict(sorted(skipped.items()))


def list_categories(workdir: Path) -> list[str]:
    """Category folder names across all sources (the candidates for ``category`` partitions)."""
    return list_category_folders(workdir)[0]


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
        if os.path.islink(cat_path) and not inside(root_real, cat_path):
            continue
        for entry in os.scandir(cat_path):
            raw_name: bytes = entry.name
            if raw_name.startswith(b".") or not is_frame_file(os.fsdecode(raw_name)):
                continue
            rel_path = f"{source}/{category}/{display_name(raw_name)}"
            error: str | None = None
            size, mtime_ns = 0, 0
            if entry.is_symlink() and not inside(root_real, entry.path):
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
