"""Checks on the merged COCO export in bounded memory: one streamed pass per file (ijson), no pycocotools.

pycocotools' ``COCO(path)`` needs several times an 8 GB file's size; each per-category file is still loaded
by pycocotools in ``curated_coco_valid``, so what is left to check on the merge is what merging can break:
ids unique across categories, every annotation's image in the file, category ids in the spec, boxes inside
their image, RLE size (h, w), iscrowd 0, and counts equal to what the per-category files held (the shard
manifest). Memory: a (width, height) per image and 8 bytes per annotation id.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from samantics_dagster.core.dataset.spec import Spec
from samantics_dagster.core.export.stream import ijson_backend

_MAX_PROBLEMS = 50  # a broken merge repeats one fault a million times; the first ones say what it is


@dataclass
class MergedScan:
    images: int = 0
    annotations: int = 0
    problems: list[str] = field(default_factory=list)
    video_ids: set[str] = field(default_factory=set)

    def add(self, problem: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(problem)


def _scan_images(path: Path, scan: MergedScan) -> dict[int, tuple[int, int]]:
    sizes: dict[int, tuple[int, int]] = {}
    with open(path, "rb") as fh:
        for image in ijson_backend().items(fh, "images.item", use_float=True):
            scan.images += 1
            if image["id"] in sizes:
                scan.add(f"{path}: image id {image['id']} appears twice")
            sizes[image["id"]] = (int(image["width"]), int(image["height"]))
            if image.get("video_id"):
                scan.video_ids.add(str(image["video_id"]))
    return sizes


def _check_annotation(path: Path, ann: dict, sizes: Mapping[int, tuple[int, int]], known: set[int], scan: MergedScan) -> None:
    where = f"{path}: annotation {ann.get('id')}"
    size = sizes.get(ann.get("image_id"))  # type: ignore[arg-type]
    if size is None:
        scan.add(f"{where} refers to image {ann.get('image_id')}, which is not in the file")
        return
    w, h = size
    if ann.get("category_id") not in known:
        scan.add(f"{where} has category_id {ann.get('category_id')}, not in the spec")
    x, y, bw, bh = ann["bbox"]
    if x < 0 or y < 0 or bw < 1 or bh < 1 or x + bw > w + 1e-6 or y + bh > h + 1e-6:
        scan.add(f"{where}: bbox {ann['bbox']} is not inside {w}x{h} with w, h >= 1")
    seg = ann.get("segmentation")
    if not isinstance(seg, dict) or list(seg.get("size", [])) != [h, w] or not isinstance(seg.get("counts"), str):
        scan.add(f"{where}: RLE {seg.get('size') if isinstance(seg, dict) else seg} is not a compressed RLE of "
                 f"the image's (h, w) [{h}, {w}]")
    if ann.get("iscrowd") != 0:
        scan.add(f"{where}: iscrowd is {ann.get('iscrowd')!r}; trainers ignore crowd objects, it must be 0")


def scan_merged_coco(path: Path, spec: Spec, expected: tuple[int, int] | None = None) -> MergedScan:
    """Every problem of one merged file (first ``_MAX_PROBLEMS``), its counts and its video ids.

    ``expected``: (images, annotations) the per-category files held, less what they shared (the manifest)."""
    path = Path(path)
    scan = MergedScan()
    try:
        sizes = _scan_images(path, scan)
        known = {c.id for c in spec.categories}
        ids = array("q")
        with open(path, "rb") as fh:
            for ann in ijson_backend().items(fh, "annotations.item", use_float=True):
                scan.annotations += 1
                ids.append(int(ann["id"]))
                _check_annotation(path, ann, sizes, known, scan)
    except Exception as exc:  # noqa: BLE001 - a truncated or non-JSON file is the finding
        scan.add(f"{path}: cannot be read as COCO JSON ({type(exc).__name__}: {exc}); re-materialise coco_dataset")
        return scan
    sorted_ids = np.sort(np.frombuffer(ids, dtype=np.int64))
    dups = int((sorted_ids[1:] == sorted_ids[:-1]).sum()) if sorted_ids.size > 1 else 0
    if dups:
        scan.add(f"{path}: {dups} duplicate annotation ids")
    if expected is not None and (scan.images, scan.annotations) != tuple(expected):
        scan.add(f"{path}: {scan.images} images / {scan.annotations} annotations, but the per-category files "
                 f"hold {expected[0]} / {expected[1]} (coco/shards.json): re-materialise coco_dataset")
    return scan


def image_video_ids(path: Path) -> set[str]:
    """The video ids of a COCO file's images, streamed; stops reading at the end of the images list."""
    videos: set[str] = set()
    with open(path, "rb") as fh:
        parser = ijson_backend().parse(fh, use_float=True)
        for prefix, event, value in parser:
            if prefix == "images.item.video_id" and value:
                videos.add(str(value))
            elif prefix == "images" and event == "end_array":
                break
    return videos
