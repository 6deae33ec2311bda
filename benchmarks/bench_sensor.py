"""Workdir sensor tick benchmark: the cursor scan vs listing every file, on a synthetic grabby workdir.

    .venv/bin/python benchmarks/bench_sensor.py [--sources 2 --categories 500 --files-per-folder 1000] [--quick]

Builds ``{sources} x {categories}`` category folders of empty ``{video}_{ms}.jpg`` files (1 M files in 1 k
folders by default; made with ``os.open(O_CREAT | O_EXCL)``, not images) under a temp folder, reused
on later runs when its marker file says it is complete. Then times one sensor tick's scan:

* cold: empty cursor (the first tick; chunked over ticks if it ran past ``--budget``);
* warm: nothing changed (every folder is one ``stat``);
* warm + 5: new frames in 5 folders (those 5 are listed).

Baseline, in the same run: a naive tick that lists every file every time, once with ``os.walk`` (names
only) and once with ``os.scandir`` + ``stat`` of every frame (what the cursor scan learns about a
changed folder: count and newest mtime). "cold" means an empty cursor, not a cold page cache.

Bar: a tick far inside Dagster's 60 s default sensor timeout -- cold in seconds, warm
in milliseconds. ``--quick`` (20 k files) keeps this from rotting in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samantics_dagster.core.workdir.naming import is_frame_file  # noqa: E402
from samantics_dagster.core.workdir.scan import encode_cursor, scan_workdir  # noqa: E402

SENSOR_TIMEOUT_S = 60.0
WARM_BAR_S = 0.5
MARKER = ".bench-complete.json"
PAST = time.time() - 24 * 3600  # every built frame is long quiet


def build_workdir(root: Path, sources: int, categories: int, per_folder: int) -> tuple[Path, float, bool]:
    """The synthetic workdir (reused if its marker matches); returns (path, seconds to build, reused)."""
    layout = {"sources": sources, "categories": categories, "files_per_folder": per_folder}
    workdir = root / "grabby"
    marker = root / MARKER  # beside the workdir, not in it: the scan must not see it
    if marker.exists() and json.loads(marker.read_text()) == layout:
        return workdir, 0.0, True
    if root.exists():
        shutil.rmtree(root)
    start = time.perf_counter()
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
    for s in range(sources):
        for c in range(categories):
            folder = workdir / f"source{s}" / f"category{c:04d}"
            folder.mkdir(parents=True)
            base = os.fspath(folder)
            for i in range(per_folder):
                fd = os.open(f"{base}/vid{i // 100:03d}-{s}_{(i % 100) * 400}.jpg", flags, 0o644)
                os.utime(fd, (PAST, PAST))
                os.close(fd)
            os.utime(folder, (PAST, PAST))
        os.utime(workdir / f"source{s}", (PAST, PAST))
    os.utime(workdir, (PAST, PAST))
    marker.write_text(json.dumps(layout))
    return workdir, time.perf_counter() - start, False


def naive_walk(workdir: Path) -> tuple[int, int]:
    """Baseline 1: os.walk every folder, count frame names. (folders listed, frames)."""
    folders = frames = 0
    for _, _, files in os.walk(workdir):
        folders += 1
        frames += sum(1 for f in files if not f.startswith(".") and is_frame_file(f))
    return folders, frames


def naive_scandir_stat(workdir: Path) -> tuple[int, int]:
    """Baseline 2: scandir every category folder and stat every frame (count + newest mtime)."""
    folders = frames = 0
    for src in os.scandir(workdir):
        for cat in os.scandir(src.path):
            folders += 1
            newest = 0
            for e in os.scandir(cat.path):
                if not e.name.startswith(".") and is_frame_file(e.name):
                    frames += 1
                    newest = max(newest, e.stat(follow_symlinks=False).st_mtime_ns)
    return folders, frames


def add_frames(workdir: Path, folders: list[Path], n: int, tag: int) -> None:
    at = PAST + 3600
    for folder in folders:
        for i in range(n):
            fd = os.open(os.fspath(folder / f"new{tag}_{i}.jpg"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.utime(fd, (at, at))
            os.close(fd)
        os.utime(folder, (at, at))


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=2)
    ap.add_argument("--categories", type=int, default=500, help="category folders per source")
    ap.add_argument("--files-per-folder", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="2 x 50 folders x 200 files = 20 k (CI smoke run)")
    ap.add_argument("--dir", type=Path, default=None, help="where to build (default: a reused temp folder)")
    ap.add_argument("--budget", type=float, default=20.0, help="time_budget_s per tick")
    ap.add_argument("--repeats", type=int, default=5, help="warm ticks timed (median shown)")
    args = ap.parse_args()
    if args.quick:
        args.sources, args.categories, args.files_per_folder = 2, 50, 200
    n_folders = args.sources * args.categories
    n_files = n_folders * args.files_per_folder
    root = args.dir or Path(tempfile.gettempdir()) / (
        f"samantics-bench-sensor-{args.sources}x{args.categories}x{args.files_per_folder}")

    workdir, build_s, reused = build_workdir(root, args.sources, args.categories, args.files_per_folder)
    print(f"cores: {len(os.sched_getaffinity(0))}  python {sys.version.split()[0]}  workdir {workdir}")
    print(f"data: {n_files:,} empty frames in {n_folders:,} category folders ({args.sources} sources x "
          f"{args.categories} categories x {args.files_per_folder} files); "
          + ("reused" if reused else f"built in {build_s:.1f} s") + "\n")

    rows = []
    # Baselines: every tick lists every file.
    (folders, frames), secs = timed(naive_walk, workdir)
    rows.append(("naive os.walk, every file, every tick", "-", folders, "-", "-", secs, "-"))
    (folders, frames2), secs = timed(naive_scandir_stat, workdir)
    assert frames == frames2 == n_files, (frames, frames2, n_files)
    rows.append(("naive scandir + stat every frame", "-", folders, frames2, "-", secs, "-"))

    # Cold: empty cursor, as many ticks as the budget needs.
    cursor: dict = {}
    ticks, cold_s, listed, statted, changed = 0, 0.0, 0, 0, set()
    worst_tick = 0.0
    while True:
        result = scan_workdir(workdir, cursor, time_budget_s=args.budget)
        ticks += 1
        cold_s += result.seconds
        worst_tick = max(worst_tick, result.seconds)
        listed += result.folders_listed
        statted += result.folders_statted
        changed |= set(result.changed)
        cursor = result.cursor
        if len(changed) == args.categories or ticks > 100:
            break
    assert len(changed) == args.categories, len(changed)
    cursor_bytes = len(encode_cursor(cursor))
    rows.append((f"cursor scan, cold ({ticks} tick{'s' if ticks > 1 else ''})", "empty", listed, statted,
                 len(changed), cold_s, cursor_bytes))

    # Warm, nothing changed.
    warm = []
    for _ in range(args.repeats):
        result = scan_workdir(workdir, cursor, time_budget_s=args.budget)
        assert not result.changed and result.folders_listed == 0 and result.complete
        warm.append(result.seconds)
    warm_s = statistics.median(warm)
    rows.append((f"cursor scan, warm, no change (median of {args.repeats})", "full", result.folders_listed,
                 result.folders_statted, 0, warm_s, len(encode_cursor(result.cursor))))

    # Warm, new frames in 5 folders (a new tag per run, so a reused workdir keeps working).
    targets = [workdir / f"source{i % args.sources}" / f"category{(i * 37) % args.categories:04d}" for i in range(5)]
    tag = int(time.time())
    try:
        add_frames(workdir, targets, 10, tag)
        result = scan_workdir(workdir, cursor, time_budget_s=args.budget)
    finally:
        for folder in targets:  # leave the reusable workdir as built
            for f in folder.glob(f"new{tag}_*.jpg"):
                f.unlink()
            os.utime(folder, (PAST, PAST))
    assert set(result.changed) == {t.name for t in targets}, result.changed
    rows.append(("cursor scan, warm, +10 frames in 5 folders", "full", result.folders_listed,
                 result.folders_statted, len(result.changed), result.seconds, len(encode_cursor(result.cursor))))
    new_frames_s = result.seconds

    header = (f"{'tick':<46} {'cursor':>6} {'listed':>7} {'statted':>9} {'changed':>8} {'seconds':>9} "
              f"{'cursor B':>9}")
    print(header)
    print("-" * len(header))
    for name, cur, lst, st, ch, secs, cb in rows:
        print(f"{name:<46} {cur:>6} {lst!s:>7} {st!s:>9} {ch!s:>8} {secs:>9.4f} {cb!s:>9}")
    print(f"\n'listed' = folders read with scandir; 'statted' = folders (and, for the naive scan, files) stat-ed. "
          f"Cold worst single tick: {worst_tick:.2f} s (budget {args.budget:g} s).")
    naive_s = rows[0][5]
    print(f"warm tick vs naive os.walk: {naive_s / warm_s:,.0f}x faster")
    ok = worst_tick < SENSOR_TIMEOUT_S and warm_s < WARM_BAR_S and new_frames_s < WARM_BAR_S
    print(f"bar: {n_files:,} frames, tick < {SENSOR_TIMEOUT_S:g} s (Dagster's sensor timeout), warm < "
          f"{WARM_BAR_S * 1000:g} ms: {'PASS' if ok else 'FAIL'} (cold {cold_s:.2f} s, warm {warm_s * 1000:.1f} ms, "
          f"+5 folders {new_frames_s * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
