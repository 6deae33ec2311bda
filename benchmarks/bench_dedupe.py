"""Dedupe benchmark: dhash speed and dedupe quality, each against a named baseline in the same run.

1. dhash rate on 720p JPEGs: this project's reduced (draft-mode) decode against `imagehash.dhash` on a
   full decode of the same files. Bar: >= 5x faster.
2. Quality on the sample workdir (the builder records which frames show the same scene): this
   project's exact + global dhash + per-video ORB at several thresholds, against imagededup's DHash
   and PHash at 6/10/14 (`pip install imagededup` - `make bench` does it). Bar: every scene keeps a
   frame (scene recall 1.0) and >= 90% of the redundant frames are removed.

Usage: python benchmarks/bench_dedupe.py [--quick] [--frames 300]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.dedupe_reference import dhash_full_decode, frame_dhash  # noqa: E402
from samantics_dagster.core.dataset.store import ImageStore  # noqa: E402
from samantics_dagster.core.dedupe.engine import dedupe_partition  # noqa: E402
from samantics_dagster.core.dedupe.imaging import frame_signature  # noqa: E402
from samantics_dagster.core.dedupe.settings import DedupeSettings  # noqa: E402
from samantics_dagster.core.workdir.catalog import frames_to_table, list_categories, scan_category  # noqa: E402
from samantics_dagster.demo.sample import SampleTruth, build_sample_workdir, score_by_class, score_dedupe  # noqa: E402


def make_720p_jpegs(n: int, seed: int = 0) -> list[bytes]:
    from skimage import data

    rng = np.random.default_rng(seed)
    photos = [np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB"))
              for name in ("astronaut", "coffee", "chelsea", "rocket", "camera")]
    out = []
    for i in range(n):
        base = Image.fromarray(photos[i % len(photos)]).resize((1280, 720), Image.BICUBIC)
        # sensor noise as a decoded video frame has it; 120-180 KB per frame, like grabby's 720p output
        arr = np.asarray(base).astype(np.float32) + rng.normal(0, 2.0, size=(720, 1280, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=int(rng.integers(80, 93)))
        out.append(buf.getvalue())
    return out


def _decode_only(data: bytes) -> object:
    """The 1/8-scale grey decode frame_dhash runs, alone: the floor of any dhash with identical bits."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)


def bench_dhash(n: int, rounds: int = 5) -> tuple[list[tuple], float, float]:
    """Per-frame cost on one thread (rounds interleaved, median: the machine's load moves every method
    alike), and the rate as the pipeline runs it (a thread per core)."""
    files = make_720p_jpegs(n)
    ours = lambda d: frame_dhash(d).dhash  # noqa: E731
    methods = {"imagehash.dhash, full decode (baseline)": dhash_full_decode,
               "samantics frame_dhash, reduced decode, 1 thread": ours,
               "samantics frame_signature (+ structure, thumbnails), 1 thread": frame_signature,
               "libjpeg-turbo 1/8 grey decode alone (the floor), 1 thread": _decode_only}
    samples: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            fn(files[0])
            t0 = time.perf_counter()
            for d in files:
                fn(d)
            samples[name].append(time.perf_counter() - t0)
    timings = {name: float(np.median(v)) for name, v in samples.items()}
    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:  # what dedupe_partition does
        list(pool.map(frame_signature, files[:workers]))
        t0 = time.perf_counter()
        list(pool.map(frame_signature, files))
        timings[f"samantics frame_signature, pipeline ({workers} threads)"] = time.perf_counter() - t0
    base = timings["imagehash.dhash, full decode (baseline)"]
    rows = [(name, n, f"{n / secs:.0f}", f"{secs / n * 1000:.2f}", f"{base / secs:.2f}x") for name, secs in timings.items()]
    single = base / timings["samantics frame_dhash, reduced decode, 1 thread"]
    pipeline = base / timings[f"samantics frame_signature, pipeline ({workers} threads)"]
    return rows, single, pipeline


def run_samantics(workdir: Path, settings: DedupeSettings) -> tuple[list[str], float, int, float]:
    """Accepted rel_paths, wall seconds, frames, and process CPU seconds (all threads): on a shared machine
    the CPU time is the steadier figure of the two."""
    dataset = Path(tempfile.mkdtemp(prefix="bench-dataset-"))
    try:
        store = ImageStore(dataset)
        accepted, frames, t0, c0 = [], 0, time.perf_counter(), time.process_time()
        for category in list_categories(workdir):
            table = frames_to_table(scan_category(workdir, category))
            frames += len(table)
            result = dedupe_partition(table, workdir, store, settings)
            accepted += result.table.loc[result.table.status == "accepted", "rel_path"].tolist()
        return accepted, time.perf_counter() - t0, frames, time.process_time() - c0
    finally:
        shutil.rmtree(dataset)


def run_imagededup(workdir: Path, truth: SampleTruth, method: str, thresholds: list[int]) -> list[tuple]:
    try:
        from imagededup import methods
    except ImportError:
        return [(f"imagededup {method}", t, "-", "-", "not installed (pip install imagededup)", "-", "-") for t in thresholds]
    logging.disable(logging.INFO)  # imagededup logs every step at INFO on its own handlers
    # imagededup crashes on non-UTF-8 file names, so it gets the sample's good frames under plain names.
    flat = Path(tempfile.mkdtemp(prefix="bench-peer-"))
    names = {}
    for i, rel in enumerate(sorted(truth.scene_of)):
        names[f"{i:06d}.jpg"] = rel
        shutil.copyfile(workdir / rel, flat / f"{i:06d}.jpg")
    hasher = getattr(methods, method)(verbose=False)
    t0 = time.perf_counter()
    encodings = hasher.encode_images(image_dir=str(flat))
    secs = time.perf_counter() - t0
    shutil.rmtree(flat)
    rows = []
    for t in thresholds:
        removed = set(hasher.find_duplicates_to_remove(encoding_map=encodings, max_distance_threshold=t))
        kept = [names[k] for k in encodings if k not in removed]
        score = score_dedupe(truth, kept)
        rows.append((f"imagededup {method}", t, f"{score.scene_recall:.3f}", f"{score.removed_fraction:.3f}",
                     _verdict(score), f"{len(encodings) / secs:.0f}", _per_class(truth, kept)))
    return rows


def _verdict(score) -> str:
    return "PASS" if score.scene_recall >= 0.99 and score.removed_fraction >= 0.9 else "fail"


def _per_class(truth: SampleTruth, kept: list[str]) -> str:
    """Scenes kept / redundant removed per scene class, e.g. ``sky 1.00/0.95``."""
    return " ".join(f"{cls} {s.scene_recall:.2f}/{s.removed_fraction:.2f}" for cls, s in score_by_class(truth, kept).items())


def print_table(header: tuple, rows: list[tuple]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths))  # noqa: E731
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI to keep the script alive")
    parser.add_argument("--frames", type=int, default=300, help="720p JPEGs for the dhash rate")
    parser.add_argument("--seed", type=int, default=1, help="sample seed (other seeds: footage never tuned on)")
    parser.add_argument("--no-low-texture", action="store_true", help="the photo-only sample of before issue 12")
    args = parser.parse_args()

    print("## dhash rate, 720p JPEGs, one thread")
    rows, single, pipeline = bench_dhash(40 if args.quick else args.frames)
    print_table(("method", "frames", "frames/s", "ms/frame", "vs baseline"), rows)
    print(f"bar: dhash >= 5x imagehash on a full decode, both on one thread: {'PASS' if single >= 5 else 'FAIL'} "
          f"({single:.2f}x, median of interleaved rounds; the pipeline's threaded rate is {pipeline:.1f}x; the "
          "decode alone is the ceiling of any dhash that keeps imagehash's bits)\n")

    root = Path(tempfile.mkdtemp(prefix="bench-sample-"))
    try:
        workdir = root / "grabby"
        kwargs = {"videos_per_source": 1, "scenes_per_video": 3} if args.quick else {}
        truth = build_sample_workdir(workdir, seed=args.seed, low_texture=0 if args.no_low_texture else 4, **kwargs)
        n_scenes = len(set(truth.scene_of.values()))
        print(f"## dedupe quality on the sample: {len(truth.scene_of)} good frames, {n_scenes} scenes, "
              f"{len(truth.bad_files)} bad files")
        rows = []
        defaults = DedupeSettings()
        grid = [defaults.dhash_threshold] if args.quick else sorted({4, 6, defaults.dhash_threshold, 8, 10})
        for thr in grid:
            for use_orb in (True, False):
                settings = DedupeSettings(dhash_threshold=thr, use_orb=use_orb)
                accepted, secs, frames, cpu = run_samantics(workdir, settings)
                score = score_dedupe(truth, accepted)
                label = "samantics dhash" + (" + ORB" if use_orb else "") + (" (default)" if settings == defaults else "")
                rows.append((label, thr, f"{score.scene_recall:.3f}", f"{score.removed_fraction:.3f}",
                             _verdict(score), f"{frames / secs:.0f} ({frames / cpu:.0f}/CPU-s)", _per_class(truth, accepted)))
        for method in ("DHash", "PHash"):
            rows += run_imagededup(workdir, truth, method, [6, 10, 14])
        print_table(("method", "threshold", "scenes kept", "redundant removed", "bar", "frames/s",
                     "per class: kept/removed"), rows)
        default_row = next(r for r in rows if "(default)" in r[0])
        peers = [r for r in rows if r[0].startswith("imagededup") and r[2] != "-"]
        best = max(peers, key=lambda r: (float(r[2]) >= 0.99, float(r[2]) + float(r[3])), default=None)
        better = best is not None and float(default_row[2]) >= float(best[2]) and float(default_row[3]) >= float(best[3])
        print(f"bar: defaults keep >= 99% of scenes and remove >= 90%: {default_row[4]}; at least as good on both as "
              f"imagededup's best ({best[0] + ' ' + str(best[1]) if best else 'n/a'}): {'PASS' if better else 'FAIL' if best else 'n/a'}")
    finally:
        shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
