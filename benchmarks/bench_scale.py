"""Dataset-wide work at 10 k / 100 k / 1 M images: the streamed, incremental code against the code it replaced.

Builds a synthetic labelled dataset per size (real pycocotools RLEs from a pool of 640x480 masks, 10
instances per image, ``--categories`` categories) through the tables' own writers and the per-category
COCO files through ``write_coco_frames``, then adds a 1 k-frame category and measures, each step in its own
subprocess (wall time and that process's peak RSS from ``os.wait4``):

- adding the category, as its runs' automation does it with the defaults: split index, labels.jsonl
  segments, the partition's near-duplicate audit, coco_dataset's shards.json and its checks from the byte
  indexes and the split index (the single files wait for the full export above
  ``SINGLE_FILES_MAX_IMAGES``); against the code it replaced, which rewrote everything each time:
  ``split_of_groups`` over every table, ``labels_jsonl_records`` over every table, ``merge_coco`` of
  ``json.load``-ed files, ``validate_coco`` (pycocotools) on the merged files;
- the full export: labels.jsonl from the segments, the byte-range merge of coco/*.json, the streamed checks
  of the merged files, the all-pairs near-duplicate audit, and ``samantics status``.

    .venv/bin/python benchmarks/bench_scale.py --sizes 10000,100000 [--root /tmp/bench_scale] [--no-baseline-above N] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.coco_reference: the baseline merge

RLE_POOL = 64
W, H = 640, 480
NEW_CATEGORY = "zz_new"


def _rle_pool(rng: np.random.Generator) -> list[dict]:
    from pycocotools import mask as mask_utils

    yy, xx = np.mgrid[:H, :W]
    pool = []
    for _ in range(RLE_POOL):
        cx, cy, rx, ry = rng.uniform(60, 580), rng.uniform(60, 420), rng.uniform(8, 60), rng.uniform(8, 60)
        m = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).astype(np.uint8)
        rle = mask_utils.encode(np.asfortranarray(m))
        x, y, w, h = mask_utils.toBbox(rle)
        pool.append({"rle": {"size": [H, W], "counts": rle["counts"].decode()}, "area": float(m.sum()),
                     "bbox_xyxy": [float(x), float(y), float(x + w), float(y + h)]})
    return pool


def _write_category(root: Path, category: str, n: int, start: int, pool: list[dict], rng: np.random.Generator) -> None:
    from samantics_dagster.core.curate.split_index import load_split_index, replace_category
    from samantics_dagster.core.dataset.frame import CocoFrame
    from samantics_dagster.core.dataset.layout import DatasetLayout
    from samantics_dagster.core.dataset.schema import (
        CURATED_COCO,
        DEDUPED_IMAGES,
        INGRESS_FRAMES,
        SAM3_LABELS,
        TableName,
    )
    from samantics_dagster.core.dataset.spec import load_spec
    from samantics_dagster.core.dataset.tables import write_table
    from samantics_dagster.core.export.stream import write_coco_frames

    layout = DatasetLayout(root)
    dhashes = [f"{int(v):016x}" for v in rng.integers(0, 1 << 62, size=n)]
    rel = [f"yt/{category}/v{(start + k) // 50}_{k}.jpg" for k in range(n)]
    videos = [f"v{(start + k) // 50}" for k in range(n)]
    splits = ["val" if (start + k) // 50 % 7 == 0 else "train" for k in range(n)]
    from samantics_dagster.demo.spec import DEMO_SPEC

    ids = [c["id"] for c in DEMO_SPEC["categories"]]
    insts = []
    for _ in range(n):
        picks = rng.integers(0, RLE_POOL, size=10)
        insts.append([{"category_id": int(ids[p % len(ids)]), "bbox_xyxy": pool[p]["bbox_xyxy"], "score": 0.9,
                       "rle": pool[p]["rle"], "area": pool[p]["area"]} for p in picks])
    write_table(_ingress(INGRESS_FRAMES, rel),
                layout.table(TableName.INGRESS_FRAMES, category))
    write_table(DEDUPED_IMAGES.frame([{"rel_path": r, "status": "accepted", "dhash": d, "dhash_threshold": 10,
                                       "video_id": v, "bytes": 1, "mtime_ns": 1, "timestamp_ms": 0, "width": W,
                                       "height": H} for r, d, v in zip(rel, dhashes, videos)]),
                layout.table(TableName.DEDUPED_IMAGES, category))
    write_table(SAM3_LABELS.frame([{"dhash": d, "rel_path": r, "status": "done", "n_instances": 10,
                                    "instances": json.dumps(i), "labeler": "bench", "width": W, "height": H}
                                   for d, r, i in zip(dhashes, rel, insts)]), layout.table(TableName.SAM3_LABELS, category))
    curated = CURATED_COCO.frame([{"dhash": d, "rel_path": r, "video_id": v, "status": "included", "split": s,
                                   "n_annotations": 10} for d, r, v, s in zip(dhashes, rel, videos, splits)])
    write_table(curated, layout.table(TableName.CURATED_COCO, category))
    replace_category(layout, load_split_index(layout), category, curated)
    spec = load_spec(layout.spec)
    for split in ("train", "val"):
        frames = [CocoFrame(dhash=d, width=W, height=H, instances=i, source_path=r, video_id=v, category=category)
                  for d, r, v, s, i in zip(dhashes, rel, videos, splits, insts) if s == split]
        write_coco_frames(layout.coco_category(category, split), spec, frames)


def _ingress(schema, rel):  # type: ignore[no-untyped-def]
    import pandas as pd

    df = pd.DataFrame({"rel_path": rel})
    for col in schema.columns:
        if col.name != "rel_path":
            df[col.name] = 0 if col.dtype in ("int64", "Int64") else None
    return schema.frame(df)


def build(root: Path, size: int, categories: int) -> None:
    from samantics_dagster.demo.spec import DEMO_SPEC

    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / "coco-spec.json").write_text(json.dumps(DEMO_SPEC))
    rng = np.random.default_rng(size)
    pool = _rle_pool(rng)
    per = size // categories
    for c in range(categories):
        _write_category(root, f"cat{c:03d}", per, c * per, pool, rng)


# ---- the operations, each run in a fresh process -------------------------------------------------------------

def op(name: str, root: Path) -> str:
    from samantics_dagster.core.dataset.layout import DatasetLayout
    from samantics_dagster.core.dataset.schema import TableName
    from samantics_dagster.core.dataset.spec import load_spec
    from samantics_dagster.core.dataset.tables import read_all, read_table

    layout = DatasetLayout(root)
    spec = load_spec(layout.spec)
    if name == "add_category_tables":  # labelling's output for the new 1 k-frame category (not measured work)
        _write_category(root, NEW_CATEGORY, 1000, 10_000_000, _rle_pool(np.random.default_rng(1)), np.random.default_rng(2))
    elif name == "new_splits":
        from samantics_dagster.core.curate.split_index import load_split_index, previous_splits, replace_category
        index = load_split_index(layout)
        previous_splits(index, skip=None)
        replace_category(layout, index, NEW_CATEGORY, read_table(layout.table(TableName.CURATED_COCO, NEW_CATEGORY)))
    elif name == "old_splits":
        from samantics_dagster.core.curate.filters import split_of_groups
        split_of_groups(read_all(root, TableName.CURATED_COCO))
    elif name == "new_labels_jsonl":  # the full export's labels.jsonl
        from samantics_dagster.core.label.jsonl_segments import write_labels_jsonl
        return f"rebuilt {write_labels_jsonl(layout).rebuilt}"
    elif name == "auto_labels_jsonl":  # a category run's labels_jsonl: segments; the file waits above the limit
        from samantics_dagster.core.export.shards import single_files_due
        from samantics_dagster.core.label.jsonl_segments import write_labels_jsonl
        from samantics_dagster.core.settings import SINGLE_FILES_MAX_IMAGES
        result = write_labels_jsonl(layout, due=lambda n: single_files_due("auto", n, SINGLE_FILES_MAX_IMAGES))
        return f"rebuilt {result.rebuilt}, labels.jsonl {'rewritten' if result.written else 'waits'}"
    elif name == "auto_coco":  # a category run's coco_dataset: shards.json; the merged files wait above the limit
        from samantics_dagster.core.export.shards import export_coco, single_files_due
        from samantics_dagster.core.settings import SINGLE_FILES_MAX_IMAGES
        export = export_coco(layout, spec, lambda n: single_files_due("auto", n, SINGLE_FILES_MAX_IMAGES), "bench")
        return f"{export.images} images, single files {'rewritten' if export.merged is not None else 'wait'}"
    elif name == "auto_checks":  # coco_dataset's checks when the single files wait: ids and the split index
        from samantics_dagster.core.curate.split_index import leaked_index_groups, load_split_index
        from samantics_dagster.core.export.shards import load_shards, shard_problems
        leaked, _ = leaked_index_groups(load_split_index(layout))
        return f"{len(shard_problems(load_shards(layout)))} problems, {len(leaked)} leaked videos"
    elif name == "old_labels_jsonl":
        from samantics_dagster.core.dataset.tables import write_jsonl
        from samantics_dagster.core.label.pipeline import labels_jsonl_records
        write_jsonl(labels_jsonl_records(read_all(root, TableName.SAM3_LABELS)), root / "labels.old.jsonl")
    elif name == "new_dedupe_check":
        from samantics_dagster.core.dedupe.audit import AUDIT_COLUMNS, partition_violations
        return f"{len(partition_violations(read_all(root, TableName.DEDUPED_IMAGES, columns=AUDIT_COLUMNS), NEW_CATEGORY))} violations"
    elif name == "old_dedupe_check":
        from samantics_dagster.core.dedupe.audit import near_duplicate_violations
        return f"{len(near_duplicate_violations(read_all(root, TableName.DEDUPED_IMAGES)))} violations"
    elif name == "new_export":  # the full export's coco_dataset
        from samantics_dagster.core.export.shards import export_coco
        export_coco(layout, spec, lambda n: True, "bench")
    elif name == "old_export":
        from benchmarks.coco_reference import merge_coco
        from samantics_dagster.core.dataset.atomic import write_json_atomic
        for split in ("train", "val"):
            files = [layout.coco_category(c, split) for c in layout.table_categories(TableName.CURATED_COCO)]
            parts = [json.loads(f.read_text()) for f in files if f.is_file()]
            write_json_atomic(merge_coco(parts, spec), root / "coco" / f"{split}.old.json")
            del parts
    elif name == "new_checks":
        from samantics_dagster.core.export.stream_check import image_video_ids, scan_merged_coco
        problems = [p for f in layout.coco_merged_files() for p in scan_merged_coco(f, spec).problems]
        for f in layout.coco_merged_files():
            image_video_ids(f)
        return f"{len(problems)} problems"
    elif name == "old_checks":
        from samantics_dagster.core.export.coco import validate_coco
        return f"{sum(len(validate_coco(f, None, spec)) for f in layout.coco_merged_files())} problems"
    elif name == "status":
        from samantics_dagster.core.tools.status import status_table
        return f"{len(status_table(root))} categories"
    else:
        raise SystemExit(f"unknown op {name}")
    return ""


def measure(name: str, root: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS in GB, what it said) of one operation in a fresh interpreter."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--op", name, "--root", str(root)], stdout=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read().decode().strip() if proc.stdout else ""
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        return seconds, usage.ru_maxrss / 2**20, f"FAILED (exit {os.waitstatus_to_exitcode(status)})"
    return seconds, usage.ru_maxrss / 2**20, out


ADD = [("sticky splits (split index)", "new_splits", "old_splits"),
       ("labels_jsonl (segments; labels.jsonl waits above the limit)", "auto_labels_jsonl", "old_labels_jsonl"),
       ("near-dup check of the partition", "new_dedupe_check", None),
       ("coco_dataset (shards.json; merged files wait above the limit)", "auto_coco", "old_export"),
       ("coco_dataset checks (byte indexes, split index)", "auto_checks", "old_checks")]
FULL = [("labels.jsonl", "new_labels_jsonl", None), ("merged coco/*.json + shards.json", "new_export", None),
        ("streamed checks of the merged files", "new_checks", None),
        ("all-pairs near-dup audit", "old_dedupe_check", None), ("samantics status", "status", None)]


def _rows(steps: list, root: Path, size: int, baseline_max: int) -> tuple[float, float]:
    total, base_total = 0.0, 0.0
    for label, new, old in steps:
        ns, nr, nout = measure(new, root)
        total += ns
        if old is None:
            print(f"| {label} | {ns:.2f} | {nr:.2f} | – | – | {nout} |")
        elif size > baseline_max:
            print(f"| {label} | {ns:.2f} | {nr:.2f} | skipped | skipped | baseline above --no-baseline-above; {nout} |")
        else:
            os_, or_, oout = measure(old, root)
            base_total += os_
            print(f"| {label} | {ns:.2f} | {nr:.2f} | {os_:.2f} | {or_:.2f} | {nout} / {oout} |")
        sys.stdout.flush()
    return total, base_total


def run_size(root: Path, size: int, categories: int, baseline_max: int, reuse: bool) -> None:
    t0 = time.perf_counter()
    if not (reuse and (root / "coco-spec.json").is_file()):
        build(root, size, categories)
        sys.stdout.write(f"\n## {size} images, {categories} categories (built in {time.perf_counter() - t0:.0f} s)\n")
        measure("new_labels_jsonl", root)  # segments and labels.jsonl exist before the new category, as in use
        measure("new_export", root)
    else:
        sys.stdout.write(f"\n## {size} images, {categories} categories (reused {root})\n")
    measure("add_category_tables", root)
    header = "| step | new s | new peak GB | baseline s | baseline peak GB | notes |\n|---|---|---|---|---|---|"
    print(f"\n### adding a 1 k-frame category (what its runs' automation does)\n{header}")
    total, base_total = _rows(ADD, root, size, baseline_max)
    print(f"| **total** | **{total:.2f}** | | {base_total:.2f} | | bar at 1 M: < 10 s |")
    print(f"\n### the full export (nightly_export, `samantics export coco`)\n{header}")
    _rows(FULL, root, size, baseline_max)
    sizes = {p.name: p.stat().st_size / 2**30 for p in (root / "coco").glob("*.json")}
    print(f"merged files GB: {json.dumps({k: round(v, 3) for k, v in sizes.items()})}; "
          f"labels.jsonl {(root / 'labels.jsonl').stat().st_size / 2**30:.3f} GB")
    old_merged = root / "coco" / "train.old.json"
    if old_merged.is_file():
        same = old_merged.read_bytes() == (root / "coco" / "train.json").read_bytes()
        print(f"streamed train.json byte-identical to merge_coco's: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated image counts (1000000 needs ~20 GB of disk)")
    ap.add_argument("--categories", type=int, default=20)
    ap.add_argument("--root", default="/tmp/bench_scale")
    ap.add_argument("--no-baseline-above", type=int, default=200_000, help="skip the baseline above this size (memory)")
    ap.add_argument("--reuse", action="store_true", help="measure on a dataset an earlier run built at --root")
    ap.add_argument("--op", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.op:
        print(op(args.op, Path(args.root)))
        return
    for size in (int(s) for s in args.sizes.split(",")):
        run_size(Path(args.root) / str(size), size, args.categories, args.no_baseline_above, args.reuse)


if __name__ == "__main__":
    main()
