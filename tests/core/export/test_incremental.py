"""The incremental dataset-wide pieces give what the whole-dataset code gave: labels.jsonl from segments,
sticky splits from the split index, the near-duplicate audit of one partition against the rest."""

import json
import os
import signal
import subprocess
import sys

import numpy as np

from samantics_dagster.core.curate.filters import split_of_groups
from samantics_dagster.core.curate.split_index import load_split_index, previous_splits, replace_category
from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.dataset.schema import CURATED_COCO, DEDUPED_IMAGES, SAM3_LABELS, TableName
from samantics_dagster.core.dataset.tables import read_all, write_jsonl, write_table
from samantics_dagster.core.dedupe.audit import near_duplicate_violations, partition_violations
from samantics_dagster.core.dedupe.hamming import codes_to_hex
from samantics_dagster.core.label.jsonl_segments import write_labels_jsonl
from samantics_dagster.core.label.pipeline import labels_jsonl_records
from samantics_dagster.core.label.taxonomy import dataset_selection
from samantics_dagster.demo.spec import write_demo_spec


def _labels(rng, n, failed_every=4):
    rows = []
    for k in range(n):
        inst = [{"category_id": int(rng.integers(1, 9)), "bbox_xyxy": [1.5, 2, 9, 7.25], "score": float(rng.random()),
                 "rle": {"size": [24, 32], "counts": "PX1a0"}, "area": 12.0}]
        rows.append({"dhash": f"{int(rng.integers(0, 1 << 62)):016x}", "rel_path": f"yt/x/v_{k}.jpg",
                     "status": "failed" if k % failed_every == 0 else "done", "error": None, "n_instances": 1,
                     "instances": json.dumps(inst), "labeler": "m", "width": 32, "height": 24})
    return SAM3_LABELS.frame(rows)


def _old_labels_jsonl(layout, path):
    write_jsonl(labels_jsonl_records(read_all(layout.root, TableName.SAM3_LABELS), dataset_selection(layout)), path)
    return path.read_bytes()


def test_labels_jsonl_from_segments_equals_the_full_rebuild_and_rebuilds_only_what_changed(tmp_path):
    rng = np.random.default_rng(0)
    layout = DatasetLayout(tmp_path)
    write_demo_spec(tmp_path)
    for c in ("cars", "dogs", "birds"):
        write_table(_labels(rng, 7), layout.table(TableName.SAM3_LABELS, c))
    first = write_labels_jsonl(layout)
    assert first.rebuilt == ["birds", "cars", "dogs"] and first.records == 15
    assert layout.labels_jsonl.read_bytes() == _old_labels_jsonl(layout, tmp_path / "old.jsonl")
    write_table(_labels(rng, 9), layout.table(TableName.SAM3_LABELS, "cars"))
    layout.table(TableName.SAM3_LABELS, "birds").unlink()
    second = write_labels_jsonl(layout)
    assert second.rebuilt == ["cars"] and second.removed == ["birds"]
    assert layout.labels_jsonl.read_bytes() == _old_labels_jsonl(layout, tmp_path / "old.jsonl")
    assert write_labels_jsonl(layout).rebuilt == []
    # the records hold what passes the thresholds: a threshold change rebuilds every segment, with no table changed
    before = layout.labels_jsonl.read_bytes()
    layout.queries.write_text(layout.queries.read_text() + "_threshold: 0.8\n")
    assert write_labels_jsonl(layout).rebuilt == ["cars", "dogs"]
    assert layout.labels_jsonl.read_bytes() == _old_labels_jsonl(layout, tmp_path / "old.jsonl")
    assert len(layout.labels_jsonl.read_bytes()) < len(before)


def _killed_mid_write(path):
    """A real writer SIGKILLed inside ``atomic_path``: its temp file stays, as after a chaos kill."""
    code = ("import os, signal, sys; from pathlib import Path; from samantics_dagster.core.dataset.atomic import atomic_path\n"
            "with atomic_path(Path(sys.argv[1])) as tmp:\n    tmp.write_text('half')\n"
            f"    os.kill(os.getpid(), {int(signal.SIGKILL)})\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def test_labels_jsonl_rebuild_removes_the_temp_files_a_killed_rebuild_left(tmp_path):
    rng = np.random.default_rng(1)
    layout = DatasetLayout(tmp_path)
    write_demo_spec(tmp_path)
    write_table(_labels(rng, 5), layout.table(TableName.SAM3_LABELS, "cars"))
    write_labels_jsonl(layout)
    for path in (layout.labels_segment("cars"), layout.labels_jsonl, layout.labels_jsonl_key):
        _killed_mid_write(path)
    other = tmp_path / ".coco-split.json-abc.tmp"  # another writer's temp in the same folder: not ours to remove
    other.write_text("live")
    left = sorted(p.name for p in tmp_path.rglob(".*.tmp"))
    assert len(left) == 4, left
    result = write_labels_jsonl(layout)
    assert result.stale_temps == 3
    assert sorted(p.name for p in tmp_path.rglob(".*.tmp")) == [other.name]
    assert layout.labels_jsonl.read_bytes() == _old_labels_jsonl(layout, tmp_path / "old.jsonl")


def _curated(rng, category, videos):
    rows = [{"dhash": f"{category}{k:04d}", "rel_path": f"{category}/{k}.jpg", "video_id": videos[k % len(videos)],
             "status": "included" if k % 3 else "excluded", "reason": None, "split": ["train", "val"][int(rng.integers(2))],
             "n_annotations": 1} for k in range(12)]
    return CURATED_COCO.frame(rows)


def test_split_index_gives_the_tables_splits_and_notices_tables_written_behind_it(tmp_path):
    rng = np.random.default_rng(1)
    layout = DatasetLayout(tmp_path)
    for c, videos in (("cars", ["v1", "v2", None]), ("dogs", ["v2", "v3"])):
        table = _curated(rng, c, videos)
        write_table(table, layout.table(TableName.CURATED_COCO, c))
        replace_category(layout, load_split_index(layout), c, table)
    tables = lambda: read_all(tmp_path, TableName.CURATED_COCO)  # noqa: E731
    assert previous_splits(load_split_index(layout)) == split_of_groups(tables())
    assert previous_splits(load_split_index(layout), skip="cars") == split_of_groups(tables(), skip="cars")
    # a table written without the index, one deleted, and a lost index are all picked up from the tables
    write_table(_curated(rng, "ants", ["v1", "v9"]), layout.table(TableName.CURATED_COCO, "ants"))
    layout.table(TableName.CURATED_COCO, "dogs").unlink()
    assert previous_splits(load_split_index(layout)) == split_of_groups(tables())
    os.unlink(layout.split_index)
    assert previous_splits(load_split_index(layout)) == split_of_groups(tables())


def _deduped(codes, thresholds, category):
    return DEDUPED_IMAGES.frame([{"rel_path": f"{category}/{k}.jpg", "status": "accepted" if k % 5 else "rejected",
                                  "dhash": h, "dhash_threshold": t, "bytes": 1, "mtime_ns": 1, "timestamp_ms": 0,
                                  "width": 8, "height": 8} for k, (h, t) in enumerate(zip(codes, thresholds))])


def test_partition_audit_finds_exactly_the_full_audits_pairs_that_involve_the_partition(tmp_path):
    rng = np.random.default_rng(2)
    base = rng.integers(0, 1 << 63, size=60, dtype=np.uint64)
    near = base ^ (np.uint64(1) << rng.integers(0, 64, size=60).astype(np.uint64))  # 1 bit away
    codes = np.concatenate([base, near, rng.integers(0, 1 << 63, size=60, dtype=np.uint64)])
    rng.shuffle(codes)
    hexes = codes_to_hex(codes)
    thresholds = rng.choice([0, 1, 4], size=len(hexes))
    tables = {c: _deduped(hexes[i::3], thresholds[i::3], c) for i, c in enumerate(("a", "b", "c"))}
    full = near_duplicate_violations(tables)
    assert len(full) and len(full.examples) == full.total  # the planted pairs are found, all spelled out
    for c in tables:
        pairs = {frozenset(p) for p in zip(full.examples["a"], full.examples["b"]) if any(x.startswith(f"{c}:") for x in p)}
        got = partition_violations(tables, c).examples
        assert {frozenset(p) for p in zip(got["a"], got["b"])} == pairs


def test_labels_jsonl_waits_when_not_due_and_says_whether_it_is_current(tmp_path):
    from samantics_dagster.core.label.jsonl_segments import labels_jsonl_current

    rng = np.random.default_rng(3)
    layout = DatasetLayout(tmp_path)
    write_demo_spec(tmp_path)
    write_table(_labels(rng, 5), layout.table(TableName.SAM3_LABELS, "cars"))
    assert write_labels_jsonl(layout).current and labels_jsonl_current(layout)
    before = layout.labels_jsonl.read_bytes()
    write_table(_labels(rng, 6), layout.table(TableName.SAM3_LABELS, "dogs"))
    waited = write_labels_jsonl(layout, due=lambda records: records <= 5)  # 7 labelled records: above it
    assert waited.rebuilt == ["dogs"] and waited.records == 7 and not waited.written and not waited.current
    assert layout.labels_jsonl.read_bytes() == before and not labels_jsonl_current(layout)
    assert write_labels_jsonl(layout, due=lambda records: True).written and labels_jsonl_current(layout)
    assert layout.labels_jsonl.read_bytes() == _old_labels_jsonl(layout, tmp_path / "old.jsonl")
