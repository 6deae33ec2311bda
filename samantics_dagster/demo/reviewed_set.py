"""A synthetic reviewed dataset whose true thresholds are known: for the label-quality benchmark and tests.

Each class has a true threshold tau. Every frame holds a few objects per class (rectangles in the cells of a
grid, so objects never overlap); the person's review holds all of them. SAM3's candidates are one per object
(its rectangle shifted by a pixel: IoU ~0.85), scored uniformly in [tau - overlap, 1], a share of objects
missed outright, and false candidates in empty cells scored uniformly in [floor, tau + overlap]. So the
true/false split of the candidates is known per class, and the F1-best threshold lies near tau. A share of
the frames is marked audit (as ``review_tasks``' random draw would). The tables are written as the pipeline
writes them (``sam3_labels``, ``reviewed_labels``, ``review_tasks``, ``deduped_images``, plain images in the store), so
the assets read them unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.dataset.schema import (
    DEDUPED_IMAGES,
    REVIEW_TASKS,
    REVIEWED_LABELS,
    SAM3_LABELS,
    TableName,
)
from samantics_dagster.core.dataset.tables import write_table
from samantics_dagster.core.label.masks import encode_masks

WIDTH, HEIGHT, CELL = 96, 64, 16  # a 6 x 4 grid of cells


@dataclass(frozen=True)
class ReviewedSet:
    true_thresholds: dict[int, float]  # category id -> tau
    frames: int
    audit_frames: int
    candidates: int
    reviewed_instances: int


def _rect(cell: int, shift: int = 0) -> tuple[dict, list[float], float]:
    cx, cy = (cell % (WIDTH // CELL)) * CELL, (cell // (WIDTH // CELL)) * CELL
    x0, y0, x1, y1 = cx + 2 + shift, cy + 2, cx + CELL - 2 + shift, cy + CELL - 2
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[y0:y1, x0:x1] = True
    return encode_masks([mask])[0], [float(x0), float(y0), float(x1), float(y1)], float(mask.sum())


def _inst(category_id: int, score: float, cell: int, shift: int = 0) -> dict:
    rle, box, area = _rect(cell, shift)
    return {"category_id": category_id, "bbox_xyxy": box, "score": score, "rle": rle, "area": area}


def write_reviewed_set(root: Path, category: str, true_thresholds: dict[int, float], frames: int, *,
                       seed: int = 0, floor: float = 0.1, overlap: float = 0.05, missed: float = 0.05,
                       false_per_frame: float = 1.0, audit_share: float = 0.5) -> ReviewedSet:
    """Write the tables of one category with ``frames`` reviewed frames under ``root`` (a dataset folder)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    layout = DatasetLayout(root)
    layout.images.mkdir(parents=True, exist_ok=True)
    cells = (WIDTH // CELL) * (HEIGHT // CELL)
    labels, reviewed, tasks, deduped = [], [], [], []
    n_candidates = n_truth = n_audit = 0
    for f in range(frames):
        dhash = f"{seed:04x}{f:012x}"
        rel = f"synthetic/{category}/v{f // 10}_{f % 10 * 1000}.jpg"
        free = list(rng.permutation(cells))
        cands, truth = [], []
        for cid, tau in sorted(true_thresholds.items()):
            for _ in range(int(rng.integers(0, 3))):
                cell = int(free.pop())
                truth.append(_inst(cid, 1.0, cell))
                if rng.random() >= missed:
                    cands.append(_inst(cid, float(np.float32(rng.uniform(tau - overlap, 1.0))), cell, shift=1))
            for _ in range(int(rng.poisson(false_per_frame))):
                if free:
                    cell = int(free.pop())
                    cands.append(_inst(cid, float(np.float32(rng.uniform(floor, tau + overlap))), cell))
        Image.new("RGB", (WIDTH, HEIGHT), (f % 256, 128, 64)).save(layout.image(dhash), "JPEG")  # the exports check it exists
        audit = bool(rng.random() < audit_share)
        n_audit += audit
        n_candidates += len(cands)
        n_truth += len(truth)
        labels.append({"dhash": dhash, "rel_path": rel, "status": "done", "error": None, "n_instances": len(cands),
                       "instances": json.dumps(cands), "labeler": "sam3:synthetic", "width": WIDTH, "height": HEIGHT})
        reviewed.append({"dhash": dhash, "rel_path": rel, "status": "reviewed", "task_id": f + 1, "annotator": "truth",
                         "labeler": "human:truth", "n_instances": len(truth), "instances": json.dumps(truth),
                         "width": WIDTH, "height": HEIGHT, "n_annotators": 1, "consensus": "single"})
        tasks.append({"dhash": dhash, "rel_path": rel, "status": "sent", "project_id": 1, "task_id": f + 1,
                      "priority": 0.0, "reasons": "{}", "audit": audit, "labeler": "sam3:synthetic"})
        deduped.append({"rel_path": rel, "source": "synthetic", "video_id": f"v{f // 10}", "timestamp_ms": f % 10 * 1000,
                        "bytes": 1, "mtime_ns": 1, "status": "accepted", "dhash": dhash, "width": WIDTH, "height": HEIGHT})
    write_table(SAM3_LABELS.frame(labels), layout.table(TableName.SAM3_LABELS, category))
    write_table(REVIEWED_LABELS.frame(reviewed), layout.table(TableName.REVIEWED_LABELS, category))
    write_table(REVIEW_TASKS.frame(tasks), layout.table(TableName.REVIEW_TASKS, category))
    write_table(DEDUPED_IMAGES.frame(deduped), layout.table(TableName.DEDUPED_IMAGES, category))
    return ReviewedSet(dict(true_thresholds), frames, n_audit, n_candidates, n_truth)
