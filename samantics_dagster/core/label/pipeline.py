"""Label one category's accepted images with SAM3, resumably, with the CPU work off the GPU's path.

Results are written in parts, one parquet file per finished batch (temp file + rename), under
``tables/sam3_labels/.parts/{category}/``; a run killed mid-partition loses only the batches in
flight (the one on the device and the one being post-processed), and the next run merges the parts
and labels only what is missing. An image whose row is ``done`` under the same labeler fingerprint
(model + queries + candidate floor) is never labelled again, nor is a ``done`` row brought in from an
older dataset (labeler ``imported:...``) unless asked; ``failed`` rows are retried only when asked, except
those that failed on a device error, which every run tries again (``core.label.failures``).

Three stages overlap: a loader thread decodes batch b+1 while the main thread runs batch b on the
device, and post-processing threads turn batch b-1's masks into RLE instances and write its part
(``core.label.stages``). The table, its parts and the resume plan are in ``core.label.resume``; every
name they export that callers used from here is still importable from here.

Each row keeps the candidates: every instance above ``candidate_floor``, the top ``max_candidates`` per
(image, prompt), before class thresholds, NMS and relation rules (``core.label.candidates``: those are
applied when curating, so the fingerprint does not depend on them).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

from samantics_dagster.core.dataset.layout import parts_dir as layout_parts_dir
from samantics_dagster.core.dataset.schema import IMPORTED_PREFIX, SAM3_LABELS
from samantics_dagster.core.dataset.spec import Spec
from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.dataset.tables import read_table
from samantics_dagster.core.label.candidates import DEFAULT_FLOOR, PASSENGER, Selection, select, select_records
from samantics_dagster.core.label.masks import Instance, build_instances, instances_from_rles
from samantics_dagster.core.label.precision import Relabel, precision_counts, with_precision
from samantics_dagster.core.label.queries import QuerySet
from samantics_dagster.core.label.resume import (
    DONE,
    FAILED,
    instances_per_class,
    known_rows,
    label_row,
    merge_parts,
    plan,
    to_table,
)
from samantics_dagster.core.label.stages import BatchStages, Finish, ProgressFn, Segmenter, load_image

if TYPE_CHECKING:
    from samantics_dagster.core.label.detect import MaskGroup
    from samantics_dagster.core.label.model import LoadedSam3

__all__ = [
    "DONE", "FAILED", "IMPORTED_PREFIX", "LABELS_JSONL_COLUMNS", "LABEL_COLUMNS", "PASSENGER", "Finish",
    "LabelResult", "LabelSettings", "ProgressFn", "Segmenter", "Selection", "select", "category_label_records", "label_partition",
    "label_row", "labels_jsonl_records", "load_image", "make_segmenter", "to_table",
]

LABEL_COLUMNS = SAM3_LABELS.names


# Settings that change speed or memory, never the labels: outside the fingerprint, so changing them
# relabels nothing.
_NOT_LABEL_KNOBS = ("image_batch", "pair_chunk", "upsample_budget_mb", "device_rle")


@dataclass(frozen=True)
class LabelSettings:
    """The knobs that change the candidates (part of the fingerprint) and the batch sizes (not part of it).

    Class thresholds, NMS and relation rules are not here: they choose among the candidates when curating.
    """

    candidate_floor: float = DEFAULT_FLOOR  # keep every instance scoring above this
    max_candidates: int | None = 100  # per (image, prompt), highest scores first
    image_batch: int = 4
    pair_chunk: int = 32
    upsample_budget_mb: float | None = None  # device memory per upsampling chunk; None: per-device default
    device_rle: bool | None = None  # RLE on the device; None: on CUDA only (same bytes either way)

    def labeler(self, model_fingerprint: str, queries: QuerySet, precision: str | None = None) -> str:
        """``sam3:{model}:{queries}:{knobs}@{precision}``: the part before ``@`` decides whether a row stands,
        the precision (dtype, torch and transformers major.minor; ``LoadedSam3.precision``) is recorded and
        reported, and relabels only when asked (``core.label.precision``)."""
        knobs = {k: v for k, v in asdict(self).items() if k not in _NOT_LABEL_KNOBS}
        blob = json.dumps({"model": model_fingerprint, "queries": queries.fingerprint(), **knobs},
                          sort_keys=True, default=str)
        base = f"sam3:{model_fingerprint[:8]}:{queries.fingerprint()[:8]}:{hashlib.sha1(blob.encode()).hexdigest()[:8]}"
        return with_precision(base, precision)


@dataclass
class LabelResult:
    table: pd.DataFrame
    labelled: int
    reused: int
    failed: int
    seconds: float
    instances_per_class: dict[str, int]
    relabel_reason: str | None
    post_seconds: float = 0.0  # post-processing (RLE, overlap filter, rules, part writes), summed over batches
    post_wait_seconds: float = 0.0  # of which the device had to wait for: the part not hidden behind it
    attempted: int = 0  # images this run tried to label (done or failed now), not reused ones
    failed_this_run: int = 0  # of which failed (the check judges the whole table: core.label.failures)
    load_seconds: float = 0.0  # JPEG decoding on the loader thread, summed over batches
    device_seconds: float = 0.0  # the device half (model, upsampling, device RLE) on the main thread
    precisions: dict[str, int] = field(default_factory=dict)  # done rows per precision (core.label.precision)

    @property
    def stage_seconds(self) -> dict[str, float]:
        """Seconds each of the three overlapping stages was busy. They run at the same time, so the
        slowest one sets the pace: a user sees whether the GPU or the host limits a run."""
        return {"load": self.load_seconds, "device": self.device_seconds, "post": self.post_seconds}

    @property
    def slowest_stage(self) -> str:
        return max(self.stage_seconds.items(), key=lambda kv: kv[1])[0]


def make_segmenter(loaded: LoadedSam3, queries: QuerySet, spec: Spec, settings: LabelSettings) -> Segmenter:
    """Wrap the SAM3 fast path: text once; then per image batch, the model on the device now and a
    ``Finish`` that waits for the masks to reach the host and post-processes them."""
    from samantics_dagster.core.label.detect import detect, encode_prompts

    texts = [q.text for q in queries.queries]
    text, text_mask = encode_prompts(loaded, texts)
    cat_ids = np.array([q.category_id for q in queries.queries])

    def segment(images: list[Image.Image]) -> Finish:
        pending = detect(loaded, images, text, text_mask, score_threshold=settings.candidate_floor,
                         pair_chunk=settings.pair_chunk, max_detections_per_pair=settings.max_candidates,
                         pad_chunks=loaded.compiled, pad_images_to=settings.image_batch if loaded.compiled else None,
                         upsample_budget_mb=settings.upsample_budget_mb,
                         device_rle=settings.device_rle)

        def finish() -> list[list[Instance]]:
            return [[i for g in groups for i in _group_instances(g, cat_ids)] for groups in pending.groups()]

        return finish

    return segment


def _group_instances(group: MaskGroup, cat_ids: np.ndarray) -> list[Instance]:
    """One ``MaskGroup`` as instances: from the device's run lengths if it has them (only the string
    compression is left to do here), else by encoding its host masks with pycocotools."""
    cats = cat_ids[group.prompt_index]
    if group.runs is not None:
        return instances_from_rles(group.runs.rles(), group.runs.area, group.boxes_xyxy, group.scores, cats)
    if group.masks is None:  # detect() keeps one or the other; neither would be a bug there, not bad input
        raise ValueError("MaskGroup has neither device run lengths nor host masks (see core.label.detect.detect)")
    return build_instances(group.masks, group.boxes_xyxy, group.scores, cats)


def label_partition(
    accepted: pd.DataFrame,
    store: ImageStore,
    segment: Segmenter,
    labeler: str,
    *,
    table_path: Path,
    image_batch: int = 4,
    retry_failed: bool = False,
    relabel_imported: bool = False,
    relabel: Relabel = Relabel.changed,
    post_workers: int = 1,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] = print,
    after_part: Callable[[int], None] | None = None,
) -> LabelResult:
    """Label the accepted rows (``dhash``, ``rel_path``) of one category; returns the whole table.

    ``post_workers`` threads post-process finished batches while the next runs on the device; at most
    that many batches wait for them, which bounds host memory (a batch's full-size masks). One is
    enough: pycocotools' encoder holds the GIL, so a second thread adds no encoding speed. ``0`` runs
    everything in the calling thread, one batch after the other. ``relabel_imported`` labels again
    the ``done`` rows imported from an older dataset, which are otherwise kept; ``relabel=other_precision``
    labels again the rows made at another precision than ``labeler``'s. ``after_part(n)`` is called
    on the post-processing thread once the n-th part of this run is on disk: the kill test blocks there, so
    the process dies at a known point instead of racing a poll.

    The final table is written to ``table_path`` here, before the parts are removed, so there is no
    moment at which finished work exists nowhere on disk.
    """
    start = time.perf_counter()
    parts_dir = layout_parts_dir(table_path)
    parts_dir.mkdir(parents=True, exist_ok=True)
    known = known_rows(read_table(table_path), parts_dir)
    wanted = accepted.drop_duplicates("dhash")[["dhash", "rel_path"]].to_dict("records")
    keep, todo, why = plan(wanted, known, labeler, retry_failed, relabel_imported, relabel)
    if why:
        log(why)

    stages = BatchStages(store, segment, labeler, parts_dir, post_workers=post_workers, total=len(todo),
                         progress=progress, after_part=after_part)
    new_rows = stages.run([todo[i:i + image_batch] for i in range(0, len(todo), image_batch)])
    table = merge_parts(keep, new_rows, table_path, parts_dir)
    t = stages.times
    return LabelResult(table, labelled=sum(r["status"] == DONE for r in new_rows), reused=len(keep),
                       failed=int((table.status == FAILED).sum()), seconds=time.perf_counter() - start,
                       instances_per_class=instances_per_class(table), relabel_reason=why,
                       post_seconds=t.post, post_wait_seconds=t.post_wait, attempted=len(new_rows),
                       failed_this_run=sum(r["status"] == FAILED for r in new_rows),
                       load_seconds=t.load, device_seconds=t.device,
                       precisions=precision_counts(table.loc[table.status == DONE, "labeler"]))


def labels_jsonl_records(tables: dict[str, pd.DataFrame], selection: Selection | None = None) -> list[dict]:
    """One record per labelled image in the seed's labels.jsonl format (boxes XYXY, category ids, RLE masks):
    the instances that pass ``selection`` (``None``: every candidate)."""
    return [rec for category, table in sorted(tables.items())
            for rec in category_label_records(category, table, selection)]


LABELS_JSONL_COLUMNS = ["dhash", "rel_path", "status", "instances", "labeler", "width", "height"]  # what a record needs


def category_label_records(category: str, table: pd.DataFrame, selection: Selection | None = None) -> Iterator[dict]:
    """One category's labels.jsonl records, one at a time (``core.label.jsonl_segments`` writes them per category);
    the instances that pass ``selection`` (``None``: every candidate)."""
    for row in table[table.status == DONE].itertuples():
        inst = json.loads(row.instances)
        if selection is not None:
            inst = select_records(inst, selection)
        yield {
            "image": f"images/{row.dhash}.jpg", "dhash": row.dhash, "source_path": row.rel_path,
            "category": category, "width": int(row.width), "height": int(row.height),
            "boxes": [i["bbox_xyxy"] for i in inst], "category_ids": [i["category_id"] for i in inst],
            "scores": [i["score"] for i in inst], "masks": [i["rle"] for i in inst],
            "areas": [i["area"] for i in inst], "labeler": row.labeler,
        }
