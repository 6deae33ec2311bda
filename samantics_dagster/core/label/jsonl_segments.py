"""labels.jsonl built from per-category segments (``.index/labels/{category}.jsonl``, ``DatasetLayout``).

Rebuilding labels.jsonl from every sam3_labels table after each category's run held the whole dataset's
records in memory (4.9 GB at 200 k images, issue 14). Now each category's records are written once to its
segment, with a sidecar holding the (size, mtime_ns) of the table it came from; a run rebuilds only the
segments whose table changed or went away, then writes labels.jsonl by copying the segments in category
order in the kernel (``os.sendfile``): the same bytes as ``write_jsonl(labels_jsonl_records(tables))``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import IO

from samantics_dagster.core.dataset.atomic import write_atomic, write_text_atomic
from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.dataset.schema import TableName
from samantics_dagster.core.dataset.tables import read_table, write_jsonl
from samantics_dagster.core.export.stream import file_fingerprint
from samantics_dagster.core.label.pipeline import LABELS_JSONL_COLUMNS, category_label_records


@dataclass
class SegmentsResult:
    records: int = 0
    rebuilt: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _key(layout: DatasetLayout, category: str) -> dict | None:
    path = layout.labels_segment_key(category)
    try:
        key = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # no sidecar or a torn one: the segment is rebuilt
    return key if layout.labels_segment(category).is_file() else None


def refresh_segments(layout: DatasetLayout) -> SegmentsResult:
    """Rebuild the segments whose sam3_labels table changed, drop those whose table is gone."""
    result = SegmentsResult()
    categories = layout.table_categories(TableName.SAM3_LABELS)
    for category in categories:
        table_path = layout.table(TableName.SAM3_LABELS, category)
        fingerprint = file_fingerprint(table_path)
        key = _key(layout, category)
        if key is not None and key.get("table") == fingerprint:
            continue
        table = read_table(table_path, columns=LABELS_JSONL_COLUMNS)
        n = write_jsonl(category_label_records(category, table), layout.labels_segment(category))
        write_text_atomic(layout.labels_segment_key(category), json.dumps({"table": fingerprint, "records": n}))
        result.rebuilt.append(category)
    for category in sorted(set(layout.labels_segment_categories()) - set(categories)):
        layout.labels_segment_key(category).unlink(missing_ok=True)
        layout.labels_segment(category).unlink(missing_ok=True)
        result.removed.append(category)
    return result


def write_labels_jsonl(layout: DatasetLayout) -> SegmentsResult:
    """Refresh the segments, then replace labels.jsonl with them concatenated in category order."""
    result = refresh_segments(layout)
    categories = layout.labels_segment_categories()

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
    result.records = sum(int((_key(layout, c) or {}).get("records", 0)) for c in categories)
    return result
