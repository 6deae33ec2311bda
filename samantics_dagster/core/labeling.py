"""Label one category's accepted images with SAM3, resumably.

Results are written in parts, one parquet file per finished batch (temp file + rename), under
``tables/sam3_labels/.parts/{category}/``; a run killed mid-partition loses at most the batch in
flight, and the next run merges the parts and labels only what is missing. An image whose row is
``done`` under the same labeler fingerprint (model + queries + thresholds) is never labelled again;
``failed`` rows are retried only when asked. The next image batch is decoded on a loader thread
while the model works on the current one.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from samantics_dagster.core.masks import (
    Instance, RelationRule, apply_relation_rules, build_instances, cap_detections, cross_prompt_nms,
)
from samantics_dagster.core.queries import QuerySet, Spec
from samantics_dagster.core.store import ImageStore
from samantics_dagster.core.tables import read_table, write_table

LABEL_COLUMNS = ["dhash", "rel_path", "status", "error", "n_instances", "instances", "labeler", "width", "height"]
DONE, FAILED = "done", "failed"
PASSENGER = RelationRule(subject="person", container="car", becomes="passenger")


@dataclass(frozen=True)
class LabelSettings:
    """The knobs that change labels (all part of the fingerprint) and the batch sizes (not part of it)."""

    score_thresh: float = 0.5
    category_thresh: dict[str, float] = field(default_factory=dict)  # category name -> threshold
    nms_iou: float | None = 0.5
    max_detections: int | None = 100
    relation_rules: tuple[RelationRule, ...] = (PASSENGER,)
    image_batch: int = 4
    pair_chunk: int = 32

    def labeler(self, model_fingerprint: str, queries: QuerySet) -> str:
        knobs = {k: v for k, v in asdict(self).items() if k not in ("image_batch", "pair_chunk")}
        blob = json.dumps({"model": model_fingerprint, "queries": queries.fingerprint(), **knobs},
                          sort_keys=True, default=str)
        return f"sam3:{model_fingerprint[:8]}:{queries.fingerprint()[:8]}:{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


@dataclass
class LabelResult:
    table: pd.DataFrame
    labelled: int
    reused: int
    failed: int
    seconds: float
    instances_per_class: dict[str, int]
    relabel_reason: str | None


Segmenter = Callable[[list[Image.Image]], list[list[Instance]]]
ProgressFn = Callable[[int, int], None]


def load_image(path: Path) -> Image.Image:
    """RGB, upright per EXIF: the orientation a viewer (and the COCO width/height) uses."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        return img.convert("RGB")


def make_segmenter(loaded, queries: QuerySet, spec: Spec, settings: LabelSettings) -> Segmenter:
    """Wrap the SAM3 fast path: text once, then images -> post-processed instances."""
    from samantics_dagster.core.sam3_model import encode_prompts, segment_batch

    texts = [q.text for q in queries.queries]
    text, text_mask = encode_prompts(loaded, texts)
    thresholds = [settings.category_thresh.get(q.category_name, settings.score_thresh) for q in queries.queries]
    cat_ids = [q.category_id for q in queries.queries]
    name_to_id = {c.name: c.id for c in spec.categories}

    def segment(images: list[Image.Image]) -> list[list[Instance]]:
        per_image = segment_batch(loaded, images, text, text_mask, score_threshold=thresholds,
                                  pair_chunk=settings.pair_chunk, max_detections_per_pair=settings.max_detections,
                                  pad_chunks=loaded.compiled)
        out = []
        for dets in per_image:
            if dets:
                inst = build_instances(np.stack([d.mask for d in dets]), [d.box_xyxy for d in dets],
                                       [d.score for d in dets], [cat_ids[d.prompt_index] for d in dets])
            else:
                inst = []
            inst = cross_prompt_nms(inst, settings.nms_iou)
            inst = cap_detections(inst, settings.max_detections)
            out.append(apply_relation_rules(inst, list(settings.relation_rules), name_to_id))
        return out

    return segment


def _row(dhash: str, rel_path: str, labeler: str, *, instances: list[Instance] | None = None,
         error: str | None = None, size: tuple[int, int] | None = None) -> dict:
    records = [i.to_record() for i in instances or []]
    return {
        "dhash": dhash, "rel_path": rel_path, "status": FAILED if error else DONE, "error": error,
        "n_instances": len(records), "instances": json.dumps(records), "labeler": labeler,
        "width": size[0] if size else None, "height": size[1] if size else None,
    }


def to_table(rows: Sequence[dict]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=LABEL_COLUMNS)
    for col in ("dhash", "rel_path", "status", "error", "instances", "labeler"):
        df[col] = df[col].astype("string")
    for col in ("n_instances", "width", "height"):
        df[col] = pd.array(df[col], dtype="Int64")
    return df.sort_values("dhash", ignore_index=True)


def _known_rows(previous: pd.DataFrame | None, parts_dir: Path) -> dict[str, dict]:
    """The last table plus any parts a killed run left behind (parts are newer)."""
    rows: dict[str, dict] = {}
    if previous is not None:
        rows.update({r["dhash"]: r for r in previous.to_dict("records")})
    for part in sorted(parts_dir.glob("part-*.parquet"), key=lambda p: p.stat().st_mtime_ns):
        rows.update({r["dhash"]: r for r in pd.read_parquet(part).to_dict("records")})
    return rows


def label_partition(
    accepted: pd.DataFrame,
    store: ImageStore,
    segment: Segmenter,
    labeler: str,
    *,
    table_path: Path,
    image_batch: int = 4,
    retry_failed: bool = False,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] = print,
) -> LabelResult:
    """Label the accepted rows (``dhash``, ``rel_path``) of one category; returns the whole table.

    The final table is written to ``table_path`` here, before the parts are removed, so there is no
    moment at which finished work exists nowhere on disk.
    """
    start = time.perf_counter()
    parts_dir = table_path.parent / ".parts" / table_path.stem
    parts_dir.mkdir(parents=True, exist_ok=True)
    known = _known_rows(read_table(table_path), parts_dir)
    wanted = accepted.drop_duplicates("dhash")[["dhash", "rel_path"]].to_dict("records")
    keep, todo = {}, []
    stale = Counter()
    for rec in wanted:
        old = known.get(rec["dhash"])
        if old is not None and old["labeler"] == labeler and (old["status"] == DONE or not retry_failed):
            keep[rec["dhash"]] = old
        else:
            todo.append(rec)
            if old is not None and old["labeler"] != labeler:
                stale[old["labeler"]] += 1
    relabel = None
    if stale:
        relabel = f"relabelling {sum(stale.values())} images labelled by {', '.join(stale)}: model, queries or thresholds changed (now {labeler})"
        log(relabel)

    new_rows: list[dict] = []
    n_done = 0

    def load(batch: list[dict]) -> list[tuple[dict, Image.Image | None, str | None]]:
        out = []
        for rec in batch:
            try:
                out.append((rec, load_image(store.path_for(rec["dhash"])), None))
            except Exception as exc:  # noqa: BLE001 - any decode failure is recorded per image
                out.append((rec, None, f"cannot read images/{rec['dhash']}.jpg ({exc}); re-run deduped_images to restore it, then sam3_labels with retry_failed"))
        return out

    batches = [todo[i:i + image_batch] for i in range(0, len(todo), image_batch)]
    with ThreadPoolExecutor(max_workers=1) as loader:
        pending: Future | None = loader.submit(load, batches[0]) if batches else None
        for b in range(len(batches)):
            loaded = pending.result()
            pending = loader.submit(load, batches[b + 1]) if b + 1 < len(batches) else None
            rows = [_row(r["dhash"], r["rel_path"], labeler, error=e) for r, im, e in loaded if im is None]
            good = [(r, im) for r, im, e in loaded if im is not None]
            rows += _segment_with_fallback(segment, good, labeler)
            _write_part(parts_dir, rows)
            new_rows += rows
            n_done += len(loaded)
            if progress:
                progress(n_done, len(todo))

    final = {**keep, **{r["dhash"]: r for r in new_rows}}
    table = to_table(list(final.values()))
    write_table(table, table_path)
    for part in parts_dir.glob("part-*.parquet"):
        part.unlink()
    per_class: Counter = Counter()
    for blob in table.loc[table.status == DONE, "instances"]:
        per_class.update(i["category_id"] for i in json.loads(blob))
    return LabelResult(table, labelled=sum(r["status"] == DONE for r in new_rows), reused=len(keep),
                       failed=int((table.status == FAILED).sum()), seconds=time.perf_counter() - start,
                       instances_per_class={str(k): v for k, v in sorted(per_class.items())}, relabel_reason=relabel)


def _segment_with_fallback(segment: Segmenter, good: list[tuple[dict, Image.Image]], labeler: str) -> list[dict]:
    """A batch that fails (e.g. CUDA OOM on a huge frame) is retried one image at a time."""
    if not good:
        return []
    try:
        results = segment([im for _, im in good])
        return [_row(r["dhash"], r["rel_path"], labeler, instances=inst, size=im.size)
                for (r, im), inst in zip(good, results)]
    except Exception:  # noqa: BLE001 - retried alone below; a lone image's error is recorded there
        _free_gpu_memory()
    rows = []
    for r, im in good:
        try:
            rows.append(_row(r["dhash"], r["rel_path"], labeler, instances=segment([im])[0], size=im.size))
        except Exception as exc:  # noqa: BLE001 - recorded, the partition goes on
            rows.append(_row(r["dhash"], r["rel_path"], labeler, error=f"{type(exc).__name__}: {exc}"[:500]))
        _free_gpu_memory()
    return rows


def _free_gpu_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def _write_part(parts_dir: Path, rows: list[dict]) -> None:
    if rows:
        write_table(to_table(rows), parts_dir / f"part-{time.time_ns()}-{uuid.uuid4().hex[:6]}.parquet")


def labels_jsonl_records(tables: dict[str, pd.DataFrame]) -> list[dict]:
    """One record per labelled image in the seed's labels.jsonl format (boxes XYXY, category ids, RLE masks)."""
    records = []
    for category, table in sorted(tables.items()):
        for row in table[table.status == DONE].itertuples():
            inst = json.loads(row.instances)
            records.append({
                "image": f"images/{row.dhash}.jpg", "dhash": row.dhash, "source_path": row.rel_path,
                "category": category, "width": int(row.width), "height": int(row.height),
                "boxes": [i["bbox_xyxy"] for i in inst], "category_ids": [i["category_id"] for i in inst],
                "scores": [i["score"] for i in inst], "masks": [i["rle"] for i in inst],
                "areas": [i["area"] for i in inst], "labeler": row.labeler,
            })
    return records
