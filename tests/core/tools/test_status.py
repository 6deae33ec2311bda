"""The status table counts what is pending at each stage, from the tables' own writers."""

from pathlib import Path

from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.dataset.schema import CURATED_COCO, DEDUPED_IMAGES, INGRESS_FRAMES, SAM3_LABELS, TableName
from samantics_dagster.core.dataset.tables import write_table
from samantics_dagster.core.tools.status import status_table


def test_status_counts_pending_frames_and_labels(tmp_path: Path) -> None:
    layout = DatasetLayout(tmp_path)
    frames = [f"youtube/gym/v_{i}.jpg" for i in range(6)]
    write_table(INGRESS_FRAMES.frame([{"rel_path": r, "source": "youtube", "category": "gym", "bytes": 1,
                                       "mtime_ns": 1} for r in frames]), layout.table(TableName.INGRESS_FRAMES, "gym"))
    # 4 of 6 decided: 3 accepted (two share a hash), 1 rejected
    dd = [{"rel_path": frames[0], "status": "accepted", "dhash": "a" * 16, "bytes": 1, "mtime_ns": 1},
          {"rel_path": frames[1], "status": "accepted", "dhash": "b" * 16, "bytes": 1, "mtime_ns": 1},
          {"rel_path": frames[2], "status": "accepted", "dhash": "b" * 16, "bytes": 1, "mtime_ns": 1},
          {"rel_path": frames[3], "status": "rejected", "reason": "orb", "dhash": "c" * 16, "bytes": 1, "mtime_ns": 1}]
    write_table(DEDUPED_IMAGES.frame(dd), layout.table(TableName.DEDUPED_IMAGES, "gym"))
    write_table(SAM3_LABELS.frame([{"dhash": "a" * 16, "status": "done"}]), layout.table(TableName.SAM3_LABELS, "gym"))
    write_table(CURATED_COCO.frame([{"dhash": "a" * 16, "status": "included"}]), layout.table(TableName.CURATED_COCO, "gym"))
    (row,) = status_table(tmp_path).to_dict("records")
    assert row["frames"] == 6 and row["pending_dedupe"] == 2 and row["accepted"] == 3 and row["rejected_orb"] == 1
    assert row["labelled"] == 1 and row["pending_label"] == 1  # hash b is accepted twice, labelled never
    assert row["included"] == 1 and row["excluded"] == 0
