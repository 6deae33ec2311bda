"""The cheap scan behind the grabby workdir sensor: which categories have new or changed frames.

What a tick costs, what a directory mtime catches, the debounce, run-key signatures, refused names and
chunking: ``docs/workdir-scan.md``. Nothing here opens a file: the workdir is only ``stat``-ed and listed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path

from samantics_dagster.core.workdir.catalog import category_folders, display_folder, iter_sources
from samantics_dagster.core.workdir.naming import is_frame_file

CURSOR_VERSION = 1
RACY_SECONDS = 2.0
_NS = 1_000_000_000
UNSEEN = [0, 0]  # a folder known to exist whose state was never recorded: mtime 0 never matches, so it is listed


class WorkdirError(RuntimeError):
    """The workdir is missing or unreadable: the sensor must fail loudly, not see an empty workdir."""


@dataclass
class ScanResult:
    categories: list[str]  # every valid category with frames seen so far (for dynamic partition add requests)
    changed: dict[str, str]  # category -> signature: frames changed since the cursor, and quiet
    waiting: dict[str, str]  # category -> reason (still being written)
    skipped: dict[str, str]  # folder (display name) -> reason
    cursor: dict  # the new cursor (JSON-serialisable, small)
    complete: bool  # every category folder was visited this tick
    folders_listed: int = 0  # root/source/category folders listed with scandir this tick
    folders_statted: int = 0  # folders stat-ed this tick (root, sources, categories)
    seconds: float = 0.0


def signature(folders: dict[str, tuple[int, int]]) -> str:
    """Stable 16-hex digest of the sorted ``(source, mtime_ns, count)`` of a category's folders."""
    rows = sorted((src, m, c) for src, (m, c) in folders.items())
    text = json.dumps(rows, separators=(",", ":"), ensure_ascii=True)
    return hashlib.blake2b(text.encode("ascii"), digest_size=8).hexdigest()


def encode_cursor(cursor: dict) -> str:
    """Compact JSON (ASCII-only, so odd names survive any storage)."""
    return json.dumps(cursor, separators=(",", ":"), ensure_ascii=True, sort_keys=True)


def decode_cursor(text: str | None) -> dict:
    """The cursor from its text; None, corrupt, foreign or old-version text gives ``{}`` (a full rescan)."""
    if not text:
        return {}
    try:
        cursor = json.loads(text)
    except (ValueError, TypeError):
        return {}
    return cursor if _valid_cursor(cursor) else {}


def _valid_cursor(cursor: object) -> bool:
    if not isinstance(cursor, dict) or cursor.get("v") != CURSOR_VERSION:
        return False
    if not isinstance(cursor.get("r", -1), int) or not isinstance(cursor.get("s", {}), dict):
        return False
    if not all(isinstance(k, str) and isinstance(v, int) for k, v in cursor.get("s", {}).items()):
        return False
    cats = cursor.get("c", {})
    if not isinstance(cats, dict):
        return False
    for cat, folders in cats.items():
        if not isinstance(cat, str) or not isinstance(folders, dict):
            return False
        for src, entry in folders.items():
            if not (isinstance(src, str) and isinstance(entry, list) and len(entry) in (2, 3)
                    and all(isinstance(x, int) for x in entry)):
                return False
    at = cursor.get("at")
    return at is None or isinstance(at, str)


def _stat_mtime(path: str) -> int:
    return os.stat(path).st_mtime_ns


def _list_frames(path: str) -> tuple[int, int]:
    """(frame count, newest frame mtime_ns) of one category folder."""
    count, newest = 0, 0
    with os.scandir(path) as it:
        for entry in it:
            name = entry.name
            if name.startswith(".") or not is_frame_file(name):
                continue
            try:
                m = entry.stat(follow_symlinks=False).st_mtime_ns
            except FileNotFoundError:  # removed since readdir; the folder's mtime changed, next tick sees it
                continue
            count += 1
            if m > newest:
                newest = m
    return count, newest


@dataclass
class _Tick:
    """One scan's clock and its tallies, shared by the steps of ``scan_workdir``."""

    now_ns: int
    quiet_ns: int  # a folder written after this is still being written
    racy_ns: int  # an mtime after this may still change within the same tick of the clock
    quiet_seconds: float
    listed: int = 0
    statted: int = 0
    skipped: dict[str, str] = field(default_factory=dict)


def _sources(root: str, old: dict, tick: _Tick) -> tuple[int, str, dict[str, str]]:
    """(root mtime, real root, source -> folder path): from the cursor when the root is unchanged, else listed
    (catalog.iter_sources' rules). Raises ``WorkdirError`` when the root is missing or unreadable."""
    fix = "mount the grabby workdir there, or set GRABBY_WORKDIR to the folder that holds {source}/{category}/"
    try:
        root_m = _stat_mtime(root)
        tick.statted += 1
        if not os.path.isdir(root):
            raise WorkdirError(f"GRABBY_WORKDIR {root} is not a folder; {fix}")
        root_real = os.path.realpath(root)
        if old and old.get("r") == root_m:
            sources = {s: os.path.join(root, s) for s in old.get("s", {})}
        else:
            tick.listed += 1
            sources = {os.fsdecode(os.path.basename(p)): os.fsdecode(p) for _, p in iter_sources(Path(root))}
    except WorkdirError:
        raise
    except FileNotFoundError:
        raise WorkdirError(f"GRABBY_WORKDIR {root} does not exist; {fix}") from None
    except OSError as exc:
        raise WorkdirError(f"GRABBY_WORKDIR {root} is not readable ({exc.strerror}); {fix}") from None
    return root_m, root_real, sources


def _members(sources: dict[str, str], old_cats: dict[str, dict[str, list[int]]], old_srcs: dict[str, int],
             root_real: str, tick: _Tick) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    """(source -> mtime, category -> {source: folder path}): category membership per source, from the cursor
    when the source folder is unchanged, else listed. An unreadable source keeps its recorded categories."""
    by_source_old: dict[str, set[str]] = {}
    for cat, folders in old_cats.items():
        for src in folders:
            by_source_old.setdefault(src, set()).add(cat)
    src_mtimes: dict[str, int] = {}
    members: dict[str, dict[str, str]] = {}  # category -> {source: folder path}
    for src, src_path in sources.items():
        try:
            m = _stat_mtime(src_path)
            tick.statted += 1
            if old_srcs.get(src) == m:
                cats = by_source_old.get(src, set())
            else:
                tick.listed += 1
                cats = category_folders(src_path, src, root_real, tick.skipped)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                continue  # removed since the root was listed/recorded; the root's mtime changed too
            tick.skipped[display_folder(src)] = (f"{display_folder(src)}: source folder is not readable "
                                                 f"({exc.strerror}); fix its permissions so the sensor can list it")
            src_mtimes[src] = -1  # still a source: listed again next tick
            for cat in by_source_old.get(src, ()):  # its folders keep their recorded state meanwhile
                members.setdefault(cat, {})[src] = os.path.join(src_path, cat)
            continue
        src_mtimes[src] = m
        for cat in cats:
            members.setdefault(cat, {})[src] = os.path.join(src_path, cat)
    return src_mtimes, members


def _visit(cat: str, prev: dict[str, list[int]], folders: dict[str, str],
           tick: _Tick) -> tuple[dict[str, list[int]], bool, list[str]]:
    """(its folders' new state, whether it differs from ``prev``, why it must wait) of one category."""
    now_state: dict[str, list[int]] = {}
    differs = set(prev) != set(folders)
    wait_reasons: list[str] = []
    for src, path in sorted(folders.items()):
        folder = f"{display_folder(src)}/{display_folder(cat)}"
        try:
            m = _stat_mtime(path)
            tick.statted += 1
            entry = prev.get(src)
            if entry is not None and entry[0] == m and len(entry) == 2:
                now_state[src] = entry
                continue
            tick.listed += 1
            count, newest = _list_frames(path)
        except FileNotFoundError:
            differs = differs or src in prev
            continue
        except OSError as exc:
            tick.skipped[folder] = (f"{folder}: folder is not readable ({exc.strerror}); fix its permissions "
                                    f"so the sensor can list it")
            # keep it known, with its last recorded state, flagged to be listed again next tick
            now_state[src] = [prev[src][0], prev[src][1], 1] if src in prev else UNSEEN
            continue
        if entry is None or entry[0] != m or entry[1] != count:
            differs = True
            latest = max(m, newest)
            if latest > tick.quiet_ns:
                ago = (tick.now_ns - latest) / _NS
                wait_reasons.append(f"{folder} was written {max(ago, 0):.0f} s ago (quiet period "
                                    f"{tick.quiet_seconds:g} s)")
        racy = m > tick.racy_ns or newest > tick.racy_ns
        now_state[src] = [m, count, 1] if racy else [m, count]
    return now_state, differs, wait_reasons


def scan_workdir(workdir: Path, cursor: dict | None, *, now: float | None = None, quiet_seconds: float = 30.0,
                 time_budget_s: float = 20.0) -> ScanResult:
    """One sensor tick's scan of ``{workdir}/{source}/{category}/`` against ``cursor`` (see the module doc).

    ``now`` (epoch seconds, default the wall clock) is what the quiet period is measured against.
    Raises ``WorkdirError`` if the workdir is missing or unreadable.
    """
    t0 = time.perf_counter()
    deadline = t0 + time_budget_s
    wall_ns = time.time_ns()
    now_ns = wall_ns if now is None else int(now * _NS)
    tick = _Tick(now_ns=now_ns, quiet_ns=now_ns - int(quiet_seconds * _NS),
                 racy_ns=wall_ns - int(RACY_SECONDS * _NS), quiet_seconds=quiet_seconds)
    old = cursor if cursor and _valid_cursor(cursor) else {}
    old_cats: dict[str, dict[str, list[int]]] = old.get("c", {})
    old_srcs: dict[str, int] = old.get("s", {})
    root_m, root_real, sources = _sources(os.fspath(workdir), old, tick)
    src_mtimes, members = _members(sources, old_cats, old_srcs, root_real, tick)

    # Visit categories in name order, starting at the resume point and wrapping around.
    order = sorted(set(members) | set(old_cats))
    start = bisect_left(order, old["at"]) if old.get("at") else 0
    order = order[start:] + order[:start]
    new_cats: dict[str, dict[str, list[int]]] = {c: f for c, f in old_cats.items()}
    changed: dict[str, str] = {}
    waiting: dict[str, str] = {}
    visited = 0
    for cat in order:
        if visited and time.perf_counter() >= deadline:
            break
        visited += 1
        prev = old_cats.get(cat, {})
        now_state, differs, wait_reasons = _visit(cat, prev, members.get(cat, {}), tick)
        if wait_reasons:
            waiting[cat] = "; ".join(wait_reasons) + "; waiting for grabby to finish the batch"
            # The cursor keeps this category's last reported state; its new folders are remembered as
            # UNSEEN (so an unchanged source still yields them next tick) and listed again.
            # Its recorded folders are flagged to be listed again whatever their mtime says (a copy that
            # restores mtimes could otherwise put a folder back on its recorded mtime with new frames in it).
            new_cats[cat] = {**{s: UNSEEN for s in members.get(cat, {})},
                             **{s: [e[0], e[1], 1] for s, e in prev.items()}}
            continue
        if not now_state:
            new_cats.pop(cat, None)  # every folder of it is gone: drop without a report
            continue
        new_cats[cat] = now_state
        if differs and (any(e[1] for e in now_state.values()) or any(e[1] for e in prev.values())):
            changed[cat] = signature({s: (e[0], e[1]) for s, e in now_state.items()})

    complete = visited == len(order)
    new_cursor: dict = {"v": CURSOR_VERSION, "c": new_cats}
    if complete:
        # Root and source mtimes are recorded only when every category was visited (else re-listed next
        # tick, so categories found by this tick's listing can't be forgotten), and never when racy.
        new_cursor["r"] = root_m if root_m <= tick.racy_ns else -1
        new_cursor["s"] = {s: (m if m <= tick.racy_ns else -1) for s, m in src_mtimes.items()}
    else:
        new_cursor["r"] = old.get("r", -1)
        new_cursor["s"] = {s: old_srcs[s] for s in src_mtimes if s in old_srcs}
        new_cursor["at"] = order[visited]
    categories = sorted(c for c, f in new_cats.items() if any(e[1] for e in f.values()))
    return ScanResult(
        categories=categories, changed=changed, waiting=waiting, skipped=tick.skipped, cursor=new_cursor,
        complete=complete, folders_listed=tick.listed, folders_statted=tick.statted,
        seconds=time.perf_counter() - t0,
    )
