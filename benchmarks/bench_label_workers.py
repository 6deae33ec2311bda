"""One category labelled in-process against Ray actors (``core.label.ray_workers``), the same run, same images.

Baseline "in-process": ``label_partition`` as the asset runs it without Ray (one process: decode thread,
device on the main thread, one post-processing thread), at its best torch thread setting (1 or 2 threads,
both measured, the faster one is the baseline). Against it: Ray with 1 actor (at the round's faster
in-process thread count) and 2 actors (1 CPU, 1 torch thread each: two threads in all, as the baseline may use). On the CPU the actors are stand-ins for GPUs;
with ``--full`` each actor takes a GPU (``num_gpus=1``) and the baseline labels on one.

Rates count labelling only: the model is already loaded for the baseline, and the Ray runs' start-up (the
cluster, then loading every replica) is printed apart. Rounds are interleaved (each round runs every
variant once, in turn), so a machine shared with other work slows all of them alike; the median round is
reported. The tables must be identical byte for byte: the Ray table against the in-process table at one
thread (the actors' precision and thread count).

    python benchmarks/bench_label_workers.py                 # CPU stand-ins, tiny model (CI: --quick)
    python benchmarks/bench_label_workers.py --full          # GPUs: MODEL_CACHE's SAM3, --images of your own
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from samantics_dagster.core.dataset.layout import DatasetLayout  # noqa: E402
from samantics_dagster.core.dataset.schema import TableName  # noqa: E402
from samantics_dagster.core.dataset.spec import CategorySpec, Spec  # noqa: E402
from samantics_dagster.core.dataset.store import ImageStore  # noqa: E402
from samantics_dagster.core.label.model import load_sam3  # noqa: E402
from samantics_dagster.core.label.pipeline import LabelSettings, label_partition, make_segmenter  # noqa: E402
from samantics_dagster.core.label.queries import Query, QuerySet  # noqa: E402
from samantics_dagster.core.label.ray_workers import ReplicaSpec, label_partition_ray  # noqa: E402

NAMES = ["person", "car", "bicycle", "dog"]
SPEC = Spec(tuple(CategorySpec(i + 1, n, "thing") for i, n in enumerate(NAMES)))
QUERIES = QuerySet(tuple(Query(i + 1, n, n) for i, n in enumerate(NAMES)))
CATEGORY = "bench"


def make_images(root: Path, n: int, size: tuple[int, int]) -> pd.DataFrame:
    """``n`` JPEG frames (scikit-image's photos, shifted and resized) in an image store under ``root``."""
    from skimage import data

    photos = [np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB"))
              for name in ("astronaut", "coffee", "chelsea", "rocket")]
    store = ImageStore(root)
    store.root.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        arr = np.roll(photos[i % len(photos)], (7 * i, 11 * i), axis=(0, 1))
        dhash = f"{i:016x}"
        Image.fromarray(arr).resize(size, Image.BILINEAR).save(store.path_for(dhash), "JPEG", quality=90)
        names.append(dhash)
    return pd.DataFrame({"dhash": names, "rel_path": [f"{CATEGORY}/{d}.jpg" for d in names]})


def fresh(base: Path, images: Path, name: str) -> tuple[Path, Path]:
    root = base / name
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(images, root)
    return root, DatasetLayout(root).table(TableName.SAM3_LABELS, CATEGORY)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="GPUs: one actor per GPU, the real SAM3 from MODEL_CACHE")
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--size", default="640x480", help="frame size WxH")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--image-batch", type=int, default=2)
    ap.add_argument("--share-batches", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="CI: 8 small frames, one round (the code path, not figures)")
    args = ap.parse_args()
    if args.quick:
        args.images, args.size, args.rounds, args.share_batches = 8, "160x120", 1, 1
    # Ray starts its workers at nice 15 (its ``worker_niceness``), the baseline runs at the caller's priority: on a
    # machine with other work the actors would lose CPU the baseline keeps. The same priority for every row.
    os.environ.setdefault("RAY_worker_niceness", str(os.nice(0)))
    import ray
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    w, h = (int(v) for v in args.size.split("x"))
    settings = LabelSettings(image_batch=args.image_batch)
    tmp = Path(tempfile.mkdtemp(prefix="bench-label-workers-"))
    try:
        if args.full:
            from samantics_dagster.core.label.model import resolve_model_dir

            model_dir = resolve_model_dir(Path(os.environ["MODEL_CACHE"]))
        else:
            from samantics_dagster.demo.tiny_sam3 import save_tiny_sam3

            model_dir = save_tiny_sam3(tmp / "tiny-sam3")
        accepted = make_images(tmp / "images", args.images, (w, h))
        cpus = os.cpu_count() or 2
        t0 = time.perf_counter()
        ray.init(num_cpus=2 if not args.full else cpus, object_store_memory=100 * 1024**2, include_dashboard=False,
                 logging_level="ERROR", log_to_driver=False)
        cluster_s = time.perf_counter() - t0
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if args.full and gpus < 2:
            print(f"--full needs 2 GPUs for the 2-actor row; Ray sees {gpus}", file=sys.stderr)

        loaded = {t: None for t in (1, 2)}
        rates: dict[str, list[float]] = {"in-process 1 thread": [], "in-process 2 threads": [], "ray 1 actor": [],
                                         "ray 2 actors": []}
        starts: dict[str, list[float]] = {"ray 1 actor": [], "ray 2 actors": []}
        tables: dict[str, bytes] = {}
        for r in range(args.rounds):
            for threads in (1, 2):
                torch.set_num_threads(threads)
                if loaded[threads] is None:
                    loaded[threads] = load_sam3(model_dir, device="cuda" if args.full else "cpu")  # type: ignore[assignment]
                m = loaded[threads]
                labeler = settings.labeler(m.fingerprint, QUERIES, m.precision)  # type: ignore[union-attr]
                segment = make_segmenter(m, QUERIES, SPEC, settings)  # type: ignore[arg-type]
                root, table = fresh(tmp, tmp / "images", "inproc")
                res = label_partition(accepted, ImageStore(root), segment, labeler, table_path=table,
                                      image_batch=settings.image_batch)
                key = f"in-process {threads} thread{'s' if threads > 1 else ''}"
                rates[key].append(res.labelled / res.seconds)
                tables[key] = table.read_bytes()
            torch.set_num_threads(1)
            best = max((1, 2), key=lambda t: rates[f"in-process {t} thread{'s' if t > 1 else ''}"][-1])
            for n, cpus_each in ((1, float(best)), (2, 1.0)):  # 1 actor at this round's best in-process threads
                wait_free = time.monotonic() + 60  # the last run's actors are killed asynchronously
                while ray.available_resources().get("GPU" if args.full else "CPU", 0) < (n if args.full else 2):
                    assert time.monotonic() < wait_free, f"Ray resources not free again: {ray.available_resources()}"
                    time.sleep(0.2)
                root, table = fresh(tmp, tmp / "images", "ray")
                replica = ReplicaSpec(str(model_dir), gpu=args.full, cpus=1.0 if args.full else cpus_each)
                rr = label_partition_ray(accepted, root, replica, SPEC, QUERIES, settings, table_path=table,
                                         max_actors=n, share_batches=args.share_batches, log=lambda _: None)
                key = f"ray {n} actor{'s' if n > 1 else ''}"
                assert len(rr.actors) == n, f"{key}: {len(rr.actors)} actors worked"
                rates[key].append(rr.labelled / (rr.seconds - rr.start_seconds))
                starts[key].append(rr.start_seconds)
                tables[key] = table.read_bytes()
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in rates.items()) + " img/s",
                  flush=True)
        ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in rates.items()}
    best_threads = max((1, 2), key=lambda t: med[f"in-process {t} thread{'s' if t > 1 else ''}"])
    base_key = f"in-process {best_threads} thread{'s' if best_threads > 1 else ''}"
    base = med[base_key]
    print(f"\n{args.images} images {w}x{h}, image_batch {args.image_batch}, shares of {args.share_batches} batches, "
          f"{args.rounds} interleaved rounds (median), {'GPUs' if args.full else 'CPU stand-ins, tiny SAM3'}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"{'variant':<24}{'img/s':>9}{'x in-process':>14}{'rounds':>28}")
    for k, v in rates.items():
        print(f"{k:<24}{med[k]:>9.2f}{med[k] / base:>13.2f}x{'  ' + ' '.join(f'{x:.2f}' for x in v):>28}")
    print(f"baseline: {base_key} (the faster in-process setting)")
    print(f"Ray start-up, apart: cluster {cluster_s:.1f} s; replicas loaded: 1 actor "
          f"{statistics.median(starts['ray 1 actor']):.1f} s, 2 actors {statistics.median(starts['ray 2 actors']):.1f} s")
    identical = tables["ray 2 actors"] == tables["in-process 1 thread"]  # the same threads per process: 1
    for k in ("in-process 2 threads", "ray 1 actor"):
        same = tables[k] == tables["in-process 1 thread"]
        print(f"table of {k} vs in-process 1 thread: {'identical' if same else 'differs (2 torch threads)'}")
    print(f"label workers: in-process {base:.2f} img/s; ray 1 actor {med['ray 1 actor']:.2f} img/s; "
          f"ray 2 actors {med['ray 2 actors']:.2f} img/s ({med['ray 2 actors'] / base:.2f}x over in-process); "
          f"tables identical: {'yes' if identical else 'no'}")


if __name__ == "__main__":
    main()
