"""COCO files written and merged as streams: no whole COCO dict, no whole file in memory.

At a million images the merged ``coco/train.json`` is ~8 GB; ``json.load`` of every category's file and
``json.dump`` of the merge needed ~19 GB (benchmarks/bench_scale.py). Here:

- ``write_coco_stream`` writes the header, then one image or annotation at a time, byte-identical to
  ``json.dump(obj, separators=(",", ":"))`` of the same dict (each item is encoded by the same encoder);
- ``write_coco_frames`` is ``build_coco`` + ``write_json_atomic`` as a stream (one category's file);
- ``merge_coco_files`` copies byte ranges when every part has a current ``byte_index`` sidecar (written by
  ``write_coco_frames``; no parsing, I/O-bound), else it is the in-memory ``merge_coco`` (``benchmarks/coco_reference.py``, the tests' reference) as a k-way merge (``heapq.merge``) of the per-category files, each
  read with ijson: images sorted by id, annotations by (image_id, id) in every file (``build_coco``), so the
  merge of sorted streams is the sorted merge. Memory: one item per file, plus 16 bytes per annotation to
  detect an annotation id shared by two images (``merge_coco``'s error) after the write.

Everything is written through ``atomic_path``: a failed merge leaves the previous file in place.
"""

from __future__ import annotations

import heapq
import json
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from samantics_dagster.core.dataset.atomic import write_atomic
from samantics_dagster.core.dataset.spec import Spec
from samantics_dagster.core.export.byte_index import (
    ItemIndex,
    ItemRecorder,
    Readers,
    copy_items,
    load_index,
    plan_merge,
)
from samantics_dagster.core.export.coco import (
    CocoFrame,
    annotation_records,
    categories_json,
    coco_order,
    image_records,
)

_ENCODER = json.JSONEncoder(separators=(",", ":"))  # what json.dump(..., separators=(",", ":")) uses per value
_BUFFER = 1 << 20


def ijson_backend():  # type: ignore[no-untyped-def]
    """ijson's C backend (yajl2_c): the pure-Python one is ~20x slower on a GB-sized file."""
    import ijson

    try:
        return ijson.get_backend("yajl2_c")
    except ImportError:  # a platform without the compiled backend still works, slowly
        return ijson


def write_coco_stream(fh: IO[bytes], spec: Spec, images: Iterable[dict], annotations: Iterable[dict],
                      recorder: ItemRecorder | None = None) -> tuple[int, int]:
    """Write ``{"info", "licenses", "images", "annotations", "categories"}`` to ``fh`` item by item, the bytes
    ``json.dump`` writes for that dict with compact separators; returns (images, annotations) written. With a
    ``recorder``, each item's byte range is recorded (``byte_index``)."""
    enc = _ENCODER.encode
    head = f'{{"info":{enc(spec.info)},"licenses":{enc(spec.licenses)},"images":['.encode()
    fh.write(head)
    pos = len(head)
    counts = []
    for key, items in (("images", images), ("annotations", annotations)):
        if key == "annotations":
            sep = b'],"annotations":['
            fh.write(sep)
            pos += len(sep)
        record = None if recorder is None else recorder.image if key == "images" else recorder.annotation
        n = 0
        for item in items:
            data = enc(item).encode()
            if n:
                fh.write(b",")
                pos += 1
            if record is not None:
                record(item, pos, len(data))
            fh.write(data)
            pos += len(data)
            n += 1
        counts.append(n)
    fh.write(f'],"categories":{enc(categories_json(spec))}}}'.encode())
    return counts[0], counts[1]


def _write_file(path: Path, write: Callable[[IO[bytes]], tuple[int, int]]) -> tuple[int, int]:
    """``write_atomic`` with a 1 MiB buffer and the counts ``write`` returns."""
    out: list[tuple[int, int]] = []

    def body(raw: IO[bytes]) -> None:
        buffered = open(raw.fileno(), "wb", buffering=_BUFFER, closefd=False)  # noqa: SIM115 (closefd=False: raw stays open)
        out.append(write(buffered))
        buffered.flush()

    write_atomic(path, body)
    return out[0]


def write_coco_frames(path: Path, spec: Spec, frames: Sequence[CocoFrame]) -> tuple[int, int]:
    """One category's COCO file, byte-identical to ``write_json_atomic(build_coco(spec, frames), path)``."""
    ordered, img_ids, ann_ids = coco_order(frames)
    recorder = ItemRecorder()
    counts = _write_file(path, lambda fh: write_coco_stream(
        fh, spec, image_records(ordered, img_ids), annotation_records(ordered, img_ids, ann_ids), recorder))
    recorder.save(path)  # after the rename: it records the final file's size and mtime
    return counts


@dataclass
class PartCount:
    """What one per-category file gave the merge (the shard manifest's entry)."""

    path: Path
    images: int = 0
    annotations: int = 0


@dataclass
class MergeResult:
    path: Path  # the merged file
    images: int
    annotations: int
    parts: list[PartCount] = field(default_factory=list)
    shared_images: int = 0  # images present in two files (same file_name), written once
    shared_annotations: int = 0


def _stream(path: Path, prefix: str, counter: PartCount, attr: str) -> Iterator[dict]:
    """The items under ``prefix`` of one file, counted into ``counter.<attr>``; the handle closes at the end."""
    with open(path, "rb") as fh:
        for item in ijson_backend().items(fh, prefix, use_float=True):
            setattr(counter, attr, getattr(counter, attr) + 1)
            yield item


def _unique_images(stream: Iterator[dict], result: MergeResult) -> Iterator[dict]:
    """Equal ids are adjacent in the merged stream (stable: the earlier file's image wins, as in merge_coco)."""
    prev: dict | None = None
    for image in stream:
        if prev is not None and image["id"] == prev["id"]:
            if image["file_name"] != prev["file_name"]:
                raise ValueError(f"image id {image['id']} is both {prev['file_name']} and {image['file_name']}")
            result.shared_images += 1
            continue
        prev = image
        yield image


def _unique_annotations(stream: Iterator[dict], result: MergeResult, ids: array, owners: array) -> Iterator[dict]:
    """Drops an annotation seen in an earlier file (same id, same image); records ids to check afterwards
    that no id belongs to two images (those are not adjacent)."""
    prev: dict | None = None
    for ann in stream:
        if prev is not None and ann["id"] == prev["id"] and ann["image_id"] == prev["image_id"]:
            result.shared_annotations += 1
            continue
        prev = ann
        ids.append(ann["id"])
        owners.append(ann["image_id"])
        yield ann


def _shared_annotation_id(ids: array, owners: array) -> str | None:
    """An annotation id that two images claim, described, or None (ids are 53-bit, so int64 holds them)."""
    if len(ids) < 2:
        return None
    a = np.frombuffer(ids, dtype=np.int64)
    order = np.argsort(a, kind="stable")
    dup = np.flatnonzero(a[order][1:] == a[order][:-1])
    if dup.size == 0:
        return None
    i, j = order[dup[0]], order[dup[0] + 1]
    return f"annotation id {int(a[i])} belongs to images {owners[i]} and {owners[j]}"


def merge_coco_files(paths: Sequence[Path], spec: Spec, out: Path) -> MergeResult:
    """``write_json_atomic(merge_coco([json.load(p) for p in paths], spec), out)`` as a stream; the same bytes.

    Raises ``ValueError`` (and leaves ``out`` as it was) where ``merge_coco`` would: one image id with two
    file names, or one annotation id on two images."""
    indexes = [load_index(Path(p)) for p in paths]
    if all(ix is not None for ix in indexes):
        return _merge_by_index([ix for ix in indexes if ix is not None], spec, Path(out))
    result = MergeResult(Path(out), 0, 0, [PartCount(Path(p)) for p in paths])
    ids, owners = array("q"), array("q")

    def write(fh: IO[bytes]) -> tuple[int, int]:
        images = heapq.merge(*(_stream(c.path, "images.item", c, "images") for c in result.parts),
                             key=lambda im: im["id"])
        annotations = heapq.merge(*(_stream(c.path, "annotations.item", c, "annotations") for c in result.parts),
                                  key=lambda a: (a["image_id"], a["id"]))
        counts = write_coco_stream(fh, spec, _unique_images(images, result),
                                   _unique_annotations(annotations, result, ids, owners))
        problem = _shared_annotation_id(ids, owners)
        if problem:
            raise ValueError(f"{out}: {problem}; re-run curated_coco for the categories involved")
        return counts

    result.images, result.annotations = _write_file(out, write)
    return result


def _merge_by_index(indexes: list[ItemIndex], spec: Spec, out: Path) -> MergeResult:
    """The fast path: every part has a current byte index, so items are copied as bytes (no parsing)."""
    result = MergeResult(out, 0, 0, [PartCount(ix.path, len(ix.img_id), len(ix.ann_id)) for ix in indexes])
    readers = Readers([ix.path for ix in indexes])
    try:
        plan = plan_merge(indexes, readers)
        result.shared_images, result.shared_annotations = plan.shared_images, plan.shared_annotations

        def write(fh: IO[bytes]) -> tuple[int, int]:
            enc = _ENCODER.encode
            fh.write(f'{{"info":{enc(spec.info)},"licenses":{enc(spec.licenses)},"images":['.encode())
            n_img = copy_items(fh, readers, plan.img_file, plan.img_off, plan.img_len)
            fh.write(b'],"annotations":[')
            n_ann = copy_items(fh, readers, plan.ann_file, plan.ann_off, plan.ann_len)
            fh.write(f'],"categories":{enc(categories_json(spec))}}}'.encode())
            return n_img, n_ann

        result.images, result.annotations = _write_file(out, write)
    finally:
        readers.close()
    return result

