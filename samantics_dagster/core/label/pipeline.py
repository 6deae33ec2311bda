"""Label one category's accepted images with SAM3, resumably, with the CPU work off the GPU's path.

Results are written in parts, one parquet file per finished batch (temp file + rename), under
``tables/sam3_labels/.parts/{category}/``; a run killed mid-partition loses only the batches in
flight (the one on the device and the one being post-processed), and the next run merges the parts
and labels only what is missing. An image whose row is ``done`` under the same labeler fingerprint
(model + queries + thresholds) is never labelled again, nor is a ``done`` row brought in from an
older dataset (labeler ``imported:...``) unless asked; ``failed`` rows are retried only when asked.

Three stages overlap: a loader thread decodes batch b+1 while the main thread runs batch b on the
device, and post-processing threads turn batch b-1's masks into RLE instances and write its part.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from samantics_dagster.core.label.masks import (
    Instance, RelationRule, apply_relation_rules, build_instances, cap_detections, cross_prompt_nms,
    instances_from_rles,
)
from samantics_dagster.core.label.queries import QuerySet
from samantics_dagster.core.dataset.spec import Spec
from samantics_dagster.core.dataset.layout import parts_dir as layout_parts_dir
from samantics_dagster.core.dataset.schema import IMPORTED_PREFIX, SAM3_LABELS, LabelStatus
from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.dataset.tables import read_table, write_table

LABEL_COLUMNS = SAM3_LABELS.names
DONE, FAILED = LabelStatus.DONE, LabelStatus.FAILED
PASSENGER = RelationRule(subject="person", container="car", becomes="passenger")


# Settings that change speed or memory, never the labels: outside the fingerprint, so changing them
# relabels nothing.
_NOT_LABEL_KNOBS = ("image_batch", "pair_chunk", "upsample_budget_mb", "device_rle")


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
    upsample_budget_mb: float | None = None  # device memory per upsampling chunk; None: per-device default
    device_rle: bool | None = None  # RLE on the device; None: on CUDA only (same bytes either way)

    def labeler(self, model_fingerprint: str, queries: QuerySet) -> str:
        knobs = {k: v for k, v in asdict(self).items() if k not in _NOT_LABEL_KNOBS}
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
    post_seconds: float = 0.0  # post-processing (RLE, overlap filter, rules, part writes), summed over batches
    post_wait_seconds: float = 0.0  # of which the device had to wait for: the part not hidden behind it
    attempted: int = 0  # images this run tried to label (done or failed now), not reused ones
    failed_this_run: int = 0  # of which failed: what the failure-share check bounds
    load_seconds: float = 0.0  # JPEG decoding on the loader thread, summed over batches
    device_seconds: float = 0.0  # the device half (model, upsampling, device RLE) on the main thread

    @property
    def failed_share(self) -> float:
        return self.failed_this_run / self.attempted if self.attempted else 0.0

    @property
    def stage_seconds(self) -> dict[str, float]:
        """Seconds each of the three overlapping stages was busy. They run at the same time, so the
        slowest one sets the pace: a user sees whether the GPU or the host limits a run."""
        return {"load": self.load_seconds, "device": self.device_seconds, "post": self.post_seconds}

    @property
    def slowest_stage(self) -> str:
        return max(self.stage_seconds.items(), key=lambda kv: kv[1])[0]


Finish = Callable[[], list[list[Instance]]]
Segmenter = Callable[[list[Image.Image]], Finish | list[list[Instance]]]
"""Images -> instances per image. May return the instances, or a ``Finish`` that computes them: the
device half runs in the call, the CPU half (RLE...) in ``Finish``, on a post-processing thread."""
ProgressFn = Callable[[int, int], None]


def load_image(path: Path) -> Image.Image:
    """RGB, upright per EXIF: the orientation a viewer (and the COCO width/height) uses."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        return img.convert("RGB")


def make_segmenter(loaded, queries: QuerySet, spec: Spec, settings: LabelSettings) -> Segmenter:
    """Wrap the SAM3 fast path: text once; then per image batch, the model on the device now and a
    ``Finish`` that waits for the masks to reach the host and post-processes them."""
    from samantics_dagster.core.label.model import detect, encode_prompts

    texts = [q.text for q in queries.queries]
    text, text_mask = encode_prompts(loaded, texts)
    thresholds = [settings.category_thresh.get(q.category_name, settings.score_thresh) for q in queries.queries]
    cat_ids = np.array([q.category_id for q in queries.queries])
    name_to_id = {c.name: c.id for c in spec.categories}

    def segment(images: list[Image.Image]) -> Finish:
        pending = detect(loaded, images, text, text_mask, score_threshold=thresholds,
                         pair_chunk=settings.pair_chunk, max_detections_per_pair=settings.max_detections,
                         pad_chunks=loaded.compiled, upsample_budget_mb=settings.upsample_budget_mb,
                         device_rle=settings.device_rle)

        def finish() -> list[list[Instance]]:
            out = []
            for groups in pending.groups():
                inst = [i for g in groups for i in _group_instances(g, cat_ids)]
                inst = cross_prompt_nms(inst, settings.nms_iou)
                inst = cap_detections(inst, settings.max_detections)
                out.append(apply_relation_rules(inst, list(settings.relation_rules), name_to_id))
            return out

        return finish

    return segment


def _group_instances(group, cat_ids: np.ndarray) -> list[Instance]:
    """One ``MaskGroup`` as instances: from the device's run lengths if it has them (only the string
    compression is left to do here), else by encoding its host masks with pycocotools."""
    cats = cat_ids[group.prompt_index]
    if group.runs is not None:
        return instances_from_rles(group.runs.rles(), group.runs.area, group.boxes_xyxy, group.scores, cats)
    return build_instances(group.masks, group.boxes_xyxy, group.scores, cats)


def label_row(dhash: str, rel_path: str, labeler: str, *, instances: list[Instance] | None = None,
         error: str | None = None, size: tuple[int, int] | None = None) -> dict:
    records = [i.to_record() for i in instances or []]
    return {
        "dhash": dhash, "rel_path": rel_path, "status": FAILED if error else DONE, "error": error,
        "n_instances": len(records), "instances": json.dumps(records), "labeler": labeler,
        "width": size[0] if size else None, "height": size[1] if size else None,
    }


def to_table(rows: Sequence[dict]) -> pd.DataFrame:
    return SAM3_LABELS.frame(rows)


def _known_rows(previous: pd.DataFrame | None, parts_dir: Path) -> dict[str, dict]:
    """The last table plus any parts a killed run left behind (parts are newer)."""
    rows: dict[str, dict] = {}
    if previous is not None:
        rows.update({r["dhash"]: r for r in previous.to_dict("records")})
    for part in sorted(parts_dir.glob("part-*.parquet"), key=lambda p: p.stat().st_mtime_ns):
        rows.update({r["dhash"]: r for r in pd.read_parquet(part).to_dict("records")})
    return rows


def _imported(row: dict) -> bool:
    return isinstance(row["labeler"], str) and row["labeler"].startswith(IMPORTED_PREFIX)


def _reusable(old: dict, labeler: str, retry_failed: bool, relabel_imported: bool) -> bool:
    """Whether a known row stands. Imported ``done`` rows have another labeler by construction
    (no SAM3 run made them), so the fingerprint comparison would always relabel them."""
    if old["status"] == DONE and _imported(old):
        return not relabel_imported
    return old["labeler"] == labeler and (old["status"] == DONE or not retry_failed)


def _plan(wanted: list[dict], known: dict[str, dict], labeler: str, retry_failed: bool,
          relabel_imported: bool) -> tuple[dict[str, dict], list[dict], str | None]:
    """(rows that stand, by dhash; rows to label; why rows labelled before are labelled again, if they are)."""
    keep: dict[str, dict] = {}
    todo: list[dict] = []
    stale: Counter = Counter()
    why: dict[str, None] = {}  # the reasons, in first-seen order
    for rec in wanted:
        old = known.get(rec["dhash"])
        if old is not None and _reusable(old, labeler, retry_failed, relabel_imported):
            keep[rec["dhash"]] = old
        else:
            todo.append(rec)
            if old is not None and old["labeler"] != labeler:
                stale[old["labeler"]] += 1
                why[("relabel_imported is set" if old["status"] == DONE and _imported(old)
                     else "model, queries or thresholds changed")] = None
    if not stale:
        return keep, todo, None
    return keep, todo, (f"relabelling {sum(stale.values())} images labelled by {', '.join(stale)}: "
                        f"{'; '.join(why)} (now {labeler})")


def _instances_per_class(table: pd.DataFrame) -> dict[str, int]:
    """Instances in the ``done`` rows, per category id."""
    per_class: Counter = Counter()
    for blob in table.loc[table.status == DONE, "instances"]:
        per_class.update(i["category_id"] for i in json.loads(blob))
    return {str(k): v for k, v in sorted(per_class.items())}


_Loaded = tuple[dict, Image.Image | None, str | None]  # row, its image or None, why it could not be read


def _load_batch(store: ImageStore, batch: list[dict]) -> list[_Loaded]:
    """The batch's stored images; one that cannot be read is an error of its own row, not of the batch."""
    out: list[_Loaded] = []
    for rec in batch:
        try:
            out.append((rec, load_image(store.path_for(rec["dhash"])), None))
        except Exception as exc:  # noqa: BLE001 - any decode failure is recorded per image
            out.append((rec, None, f"cannot read images/{rec['dhash']}.jpg ({exc}); re-run deduped_images to "
                                   "restore it, then sam3_labels with retry_failed"))
    return out


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
    the ``done`` rows imported from an older dataset, which are otherwise kept. ``after_part(n)`` is called
    on the post-processing thread once the n-th part of this run is on disk: the kill test blocks there, so
    the process dies at a known point instead of racing a poll.

    The final table is written to ``table_path`` here, before the parts are removed, so there is no
    moment at which finished work exists nowhere on disk.
    """
    start = time.perf_counter()
    parts_dir = layout_parts_dir(table_path)
    parts_dir.mkdir(parents=True, exist_ok=True)
    known = _known_rows(read_table(table_path), parts_dir)
    wanted = accepted.drop_duplicates("dhash")[["dhash", "rel_path"]].to_dict("records")
    keep, todo, relabel = _plan(wanted, known, labeler, retry_failed, relabel_imported)
    if relabel:
        log(relabel)

    new_rows: list[dict] = []
    n_done = 0
    post_seconds = post_wait = load_seconds = device_seconds = 0.0
    parts_written = 0

    def load(batch: list[dict]) -> list[_Loaded]:
        nonlocal load_seconds
        t0 = time.perf_counter()
        out = _load_batch(store, batch)
        load_seconds += time.perf_counter() - t0  # one loader thread: no race
        return out

    def post(finish: Callable[[], list[dict]], unreadable: list[dict]) -> tuple[list[dict], float]:
        """The CPU half of a batch, then its part: written as soon as it exists, not when collected."""
        nonlocal parts_written
        t0 = time.perf_counter()
        rows = unreadable + finish()
        _write_part(parts_dir, rows)
        parts_written += 1
        if after_part:
            after_part(parts_written)
        return rows, time.perf_counter() - t0

    def collect(good: list[tuple[dict, Image.Image]], unreadable: list[dict], future: Future) -> None:
        nonlocal n_done, post_seconds, post_wait
        t0 = time.perf_counter()
        try:
            rows, secs = future.result()
        except Exception:  # noqa: BLE001 - the CPU half failed (e.g. a CUDA error surfacing late): image by image
            _free_gpu_memory()
            rows, secs = post(lambda: _one_by_one(segment, good, labeler), unreadable)
        # Inline, the whole post-processing held up the device; pipelined, only the wait for it did.
        post_wait += secs if post_workers == 0 else time.perf_counter() - t0
        post_seconds += secs
        new_rows.extend(rows)
        n_done += len(good) + len(unreadable)
        if progress:
            progress(n_done, len(todo))

    batches = [todo[i:i + image_batch] for i in range(0, len(todo), image_batch)]
    pool = ThreadPoolExecutor(max_workers=post_workers) if post_workers > 0 else _Inline()
    with ThreadPoolExecutor(max_workers=1) as loader, pool:
        pending: Future | None = loader.submit(load, batches[0]) if batches else None
        in_flight: deque[tuple[list, list, Future]] = deque()
        for b in range(len(batches)):
            loaded = pending.result()
            pending = loader.submit(load, batches[b + 1]) if b + 1 < len(batches) else None
            unreadable = [label_row(r["dhash"], r["rel_path"], labeler, error=e) for r, im, e in loaded if im is None]
            good = [(r, im) for r, im, e in loaded if im is not None]
            t0 = time.perf_counter()
            finish = _start(segment, good, labeler)  # the device half, in this thread
            device_seconds += time.perf_counter() - t0
            in_flight.append((good, unreadable, pool.submit(post, finish, unreadable)))
            while len(in_flight) > post_workers:
                collect(*in_flight.popleft())
        while in_flight:
            collect(*in_flight.popleft())

    final = {**keep, **{r["dhash"]: r for r in new_rows}}
    table = to_table(list(final.values()))
    write_table(table, table_path)
    for part in parts_dir.glob("part-*.parquet"):
        part.unlink()
    return LabelResult(table, labelled=sum(r["status"] == DONE for r in new_rows), reused=len(keep),
                       failed=int((table.status == FAILED).sum()), seconds=time.perf_counter() - start,
                       instances_per_class=_instances_per_class(table), relabel_reason=relabel,
                       post_seconds=post_seconds, post_wait_seconds=post_wait, attempted=len(new_rows),
                       failed_this_run=sum(r["status"] == FAILED for r in new_rows),
                       load_seconds=load_seconds, device_seconds=device_seconds)


def _start(segment: Segmenter, good: list[tuple[dict, Image.Image]], labeler: str) -> Callable[[], list[dict]]:
    """Run the device half of a batch now; return the CPU half, which makes the rows.

    A batch whose device half fails (e.g. CUDA OOM on a huge frame) is retried one image at a time,
    here, before the next batch goes to the device.
    """
    if not good:
        return lambda: []
    try:
        out = segment([im for _, im in good])
    except Exception:  # noqa: BLE001 - retried alone below; a lone image's error is recorded there
        _free_gpu_memory()
        rows = _one_by_one(segment, good, labeler)
        return lambda: rows
    finish = out if callable(out) else (lambda: out)
    return lambda: [label_row(r["dhash"], r["rel_path"], labeler, instances=inst, size=im.size)
                    for (r, im), inst in zip(good, finish())]


class _Inline:
    """An executor for ``post_workers=0``: runs the task at once, in the calling thread."""

    def submit(self, fn: Callable, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - handed over like a worker's error
            future.set_exception(exc)
        return future

    def __enter__(self) -> "_Inline":
        return self

    def __exit__(self, *exc) -> None:
        return None


def _one_by_one(segment: Segmenter, good: list[tuple[dict, Image.Image]], labeler: str) -> list[dict]:
    """Each image alone, both halves at once; an image that still fails becomes a ``failed`` row."""
    rows = []
    for r, im in good:
        try:
            out = segment([im])
            rows.append(label_row(r["dhash"], r["rel_path"], labeler, instances=(out() if callable(out) else out)[0],
                             size=im.size))
        except Exception as exc:  # noqa: BLE001 - recorded, the partition goes on
            rows.append(label_row(r["dhash"], r["rel_path"], labeler, error=f"{type(exc).__name__}: {exc}"[:500]))
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
    return [rec for category, table in sorted(tables.items()) for rec in category_label_records(category, table)]


LABELS_JSONL_COLUMNS = ["dhash", "rel_path", "status", "instances", "labeler", "width", "height"]  # what a record needs


def category_label_records(category: str, table: pd.DataFrame):  # type: ignore[no-untyped-def]
    """One category's labels.jsonl records, one at a time (``core.label.jsonl_segments`` writes them per category)."""
    for row in table[table.status == DONE].itertuples():
        inst = json.loads(row.instances)
        yield {
            "image": f"images/{row.dhash}.jpg", "dhash": row.dhash, "source_path": row.rel_path,
            "category": category, "width": int(row.width), "height": int(row.height),
            "boxes": [i["bbox_xyxy"] for i in inst], "category_ids": [i["category_id"] for i in inst],
            "scores": [i["score"] for i in inst], "masks": [i["rle"] for i in inst],
            "areas": [i["area"] for i in inst], "labeler": row.labeler,
        }
