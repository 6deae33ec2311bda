"""labels.jsonl built from per-category segments (``.index/labels/{category}.jsonl``, ``DatasetLayout``).

Rebuilding labels.jsonl from every sam3_labels table after each category's run held the whole dataset's
records in memory (4.9 GB at 200 k images, measured with benchmarks/bench_scale.py). Now each category's records are written once to its
segment, with a sidecar holding the (size, mtime_ns) of the table it came from; a run rebuilds only the
segments whose table changed or went away, then writes labels.jsonl by copying the segments in category
order in the kernel (``os.sendfile``): the same bytes as ``write_jsonl(labels_jsonl_records(tables))``.

That concatenation is the one step that still costs the whole dataset (2.3 GB at 1 M images): the caller
decides by the record count whether it is due (``core.export.shards.single_files_due``, as for the merged
COCO files); ``labels_jsonl_current`` tells from fingerprints alone whether the file is up to date.

The records hold what passes today's thresholds (``sam-queries.yaml``, ``core.label.candidates``), so a
segment's key also holds the selection's fingerprint: a threshold change rebuilds every segment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from samantics_dagster.core.dataset.atomic import remove_stale_temps, write_atomic, write_text_atomic
from samantics_dagster.core.dataset.fingerprint import file_fingerprint
from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.dataset.schema import TableName
from samantics_dagster.core.dataset.tables import read_table, write_jsonl
from samantics_dagster.core.label.candidates import Selection
from samantics_dagster.core.label.pipeline import LABELS_JSONL_COLUMNS, category_label_records
from samantics_dagster.core.label.taxonomy import dataset_selection


@dataclass
class SegmentsResult:
    records: int = 0
    rebuilt: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    stale_temps: int = 0  # temp files a killed rebuild left, removed first
    written: bool = False  # labels.jsonl rewritten by this call
    current: bool = False  # labels.jsonl holds exactly today's segments


def _key(layout: DatasetLayout, category: str) -> dict | None:
    path = layout.labels_segment_key(category)
    try:
        key = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # no sidecar or a torn one: the segment is rebuilt
    return key if layout.labels_segment(category).is_file() else None


def refresh_segments(layout: DatasetLayout, selection: Selection | None = None) -> SegmentsResult:
    """Rebuild the segments whose sam3_labels table or selection changed, drop those whose table is gone.
    ``selection``: what passes (``None``: as ``sam-queries.yaml`` says)."""
    if selection is None:
        selection = dataset_selection(layout)
    result = SegmentsResult()
    categories = layout.table_categories(TableName.SAM3_LABELS)
    for category in categories:
        table_path = layout.table(TableName.SAM3_LABELS, category)
        fingerprint = file_fingerprint(table_path)
        key = _key(layout, category)
        if key is not None and key.get("table") == fingerprint and key.get("selection") == selection.fingerprint():
            continue
        table = read_table(table_path, columns=LABELS_JSONL_COLUMNS)
        n = write_jsonl(category_label_records(category, table, selection), layout.labels_segment(category))
        write_text_atomic(layout.labels_segment_key(category),
                          json.dumps({"table": fingerprint, "selection": selection.fingerprint(), "records": n}))
        result.rebuilt.append(category)
    for category in sorted(set(layout.labels_segment_categories()) - set(categories)):
        layout.labels_segment_key(category).unlink(missing_ok=True)
        layout.labels_segment(category).unlink(missing_ok=True)
        result.removed.append(category)
    return result


def _concat_key(layout: DatasetLayout, categories: list[str]) -> dict:
    return {"file": file_fingerprint(layout.labels_jsonl),
            "segments": {c: file_fingerprint(layout.labels_segment(c)) for c in categories}}


def labels_jsonl_current(layout: DatasetLayout) -> bool:
    """Whether labels.jsonl is the concatenation of today's segments (neither changed since it was written)."""
    try:
        recorded = json.loads(layout.labels_jsonl_key.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(recorded == _concat_key(layout, layout.labels_segment_categories()))


def write_labels_jsonl(layout: DatasetLayout, due: Callable[[int], bool] = lambda records: True,
                       selection: Selection | None = None) -> SegmentsResult:
    """Refresh the segments, then, if ``due(records)``, replace labels.jsonl with them in category order.

    The caller holds the ``labels.jsonl`` dataset lock (every writer of the segments and the file does), so the
    temp files a killed rebuild left are removed first."""
    stale = remove_stale_temps(layout.labels_segments)
    stale += remove_stale_temps(layout.labels_jsonl.parent, layout.labels_jsonl.name)
    stale += remove_stale_temps(layout.labels_jsonl_key.parent, layout.labels_jsonl_key.name)
    result = refresh_segments(layout, selection)
    result.stale_temps = stale
    categories = layout.labels_segment_categories()
    result.records = sum(int((_key(layout, c) or {}).get("records", 0)) for c in categories)
    if not due(result.records):
        result.current = labels_jsonl_current(layout)
        return result

    def write(fh: IO[bytes]) -> None:
        fh.flush()
        out = fh.fileno()
        for category in categories:
            with open(layout.labels_segment(category), "rb") as seg:
                size, offset = os.fstat(seg.fileno()).st_size, 0
                while offset < size:
                    sent = os.sendfile(out, seg.fileno(), offset, size - offset)
                    if sent == 0:
                        break
                    offset += sent

    write_atomic(layout.labels_jsonl, write)
    write_text_atomic(layout.labels_jsonl_key, json.dumps(_concat_key(layout, categories)))
    result.written = result.current = True
    return result
