"""COCO instances JSON: build it from labelled frames and validate what a trainer will read.

Ids are derived from the image's dhash (the store's key), not from row order, so a frame keeps its
image id and its annotations keep theirs across re-runs, in the per-category file and in the merged one
alike. They are 53-bit (JSON numbers stay exact in JavaScript viewers; BSON int64 in FiftyOne holds them)
and come from a hash of the dhash, because dhashes themselves cluster (low-texture frames hash near zero)
and their leading bits would collide. A collision, about 1 in 20 000 at a million images, moves the later
dhash to the next free id; ``validate_coco`` checks uniqueness either way.

Pitfalls this module exists to avoid (each one a trainer or an evaluator trips over): RLE ``counts`` must be str for
JSON; ``iscrowd`` must be 0 or trainers ignore the object; ``area`` is the mask's, as COCOeval buckets by it;
boxes must lie inside the image and have w, h ≥ 1 or MMDetection drops them; category ids keep their gaps.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from samantics_dagster.core.dataset.frame import CocoFrame, clip_box
from samantics_dagster.core.dataset.schema import SPLITS as SCHEMA_SPLITS
from samantics_dagster.core.dataset.spec import Spec

_ID_BITS = 53
K = TypeVar("K", str, tuple[str, int])  # an image's key (dhash) or an annotation's (dhash, index)
SPLITS = SCHEMA_SPLITS  # COCO files are written per split, in this order


def _hash_id(text: str) -> int:
    digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return (int.from_bytes(digest, "big") & ((1 << _ID_BITS) - 1)) or 1


def image_id(dhash: str) -> int:
    return _hash_id(dhash)


def annotation_id(dhash: str, index: int) -> int:
    return _hash_id(f"{dhash}/{index}")


def _unique(ids: Iterable[tuple[K, int]], taken: set[int]) -> dict[K, int]:
    """Key -> id, probing upward past ids already taken; keys are visited in sorted order (deterministic)."""
    out: dict[K, int] = {}
    for key, wanted in sorted(ids):
        while wanted in taken:
            wanted = wanted % ((1 << _ID_BITS) - 1) + 1
        taken.add(wanted)
        out[key] = wanted
    return out


def categories_json(spec: Spec) -> list[dict]:
    """The spec's categories as COCO lists them: ids with their gaps, supercategory, keypoints and skeleton kept."""
    return [{"id": c.id, "name": c.name, "supercategory": c.supercategory, **copy.deepcopy(c.extra)}
            for c in spec.categories]


def _mask_box(rle: dict) -> list[float] | None:
    """The mask's tight XYWH box (what pycocotools' loadRes gives a segmentation): FiftyOne's COCO importer
    crops each mask to its ``bbox``, so SAM3's own box, which need not enclose its mask, would cut masks."""
    from pycocotools import mask as mask_utils

    box = [float(v) for v in mask_utils.toBbox({"size": rle["size"], "counts": rle["counts"].encode("ascii")})]
    return box if box[2] >= 1 and box[3] >= 1 else None


def build_coco(spec: Spec, frames: Sequence[CocoFrame]) -> dict:
    """A COCO instances dict: images with ``file_name`` relative to the dataset, XYWH boxes (the mask's
    tight box; the model's, clipped to the image, only for an empty mask), compressed RLE, the mask's area,
    ``iscrowd`` 0 and the model's ``score`` (an extra key that pycocotools and the trainers ignore).
    ``core.export.stream.write_coco_frames`` writes the same records without building this dict."""
    ordered, img_ids, ann_ids = coco_order(frames)
    return {
        "info": copy.deepcopy(spec.info), "licenses": copy.deepcopy(spec.licenses),
        "images": list(image_records(ordered, img_ids)),
        "annotations": list(annotation_records(ordered, img_ids, ann_ids)), "categories": categories_json(spec),
    }


def coco_order(frames: Sequence[CocoFrame]) -> tuple[list[CocoFrame], dict[str, int], dict[tuple[str, int], int]]:
    """Frames in image-id order with their image ids and annotation ids (collisions probed, deterministic)."""
    img_ids = _unique(((f.dhash, image_id(f.dhash)) for f in frames), set())
    ann_keys = [((f.dhash, k), annotation_id(f.dhash, k)) for f in frames for k in range(len(f.instances))]
    ann_ids = _unique(ann_keys, set())
    return sorted(frames, key=lambda f: img_ids[f.dhash]), img_ids, ann_ids


def image_records(ordered: Sequence[CocoFrame], img_ids: Mapping[str, int]) -> Iterator[dict]:
    """The ``images`` list, one frame at a time (``ordered`` as ``coco_order`` returns it)."""
    for f in ordered:
        image = {"id": img_ids[f.dhash], "file_name": f.file_name, "width": int(f.width), "height": int(f.height)}
        if f.source_path is not None:
            image["source_path"] = f.source_path
        if f.video_id is not None:
            image["video_id"] = f.video_id
        if f.category is not None:
            image["category"] = f.category
        yield {**image, **f.extra}


def annotation_records(ordered: Sequence[CocoFrame], img_ids: Mapping[str, int],
                       ann_ids: Mapping[tuple[str, int], int]) -> Iterator[dict]:
    """The ``annotations`` list sorted by (image_id, id), one image's run at a time: frames come in image-id
    order, so sorting each run of equal image ids gives the whole list's order without holding it."""
    run: list[dict] = []
    for f in ordered:
        if run and run[0]["image_id"] != img_ids[f.dhash]:
            yield from sorted(run, key=lambda a: a["id"])
            run = []
        for k, inst in enumerate(f.instances):
            rle = {"size": [int(v) for v in inst["rle"]["size"]], "counts": _str_counts(inst["rle"]["counts"])}
            run.append({
                "id": ann_ids[(f.dhash, k)], "image_id": img_ids[f.dhash], "category_id": int(inst["category_id"]),
                "bbox": _mask_box(rle) or clip_box(inst["bbox_xyxy"], int(f.width), int(f.height)), "segmentation": rle,
                "area": float(inst["area"]), "iscrowd": 0, "score": round(float(inst["score"]), 4),
            })
    yield from sorted(run, key=lambda a: a["id"])


def _str_counts(counts: str | bytes) -> str:
    if isinstance(counts, bytes):
        return counts.decode("ascii")
    if not isinstance(counts, str):
        raise ValueError("uncompressed (list) RLE counts: encode with pycocotools.mask.frPyObjects first")
    return counts


def validate_coco(path: Path, dataset_dir: Path | None, spec: Spec | None) -> list[str]:
    """Every problem that would make a trainer reject or silently mis-read the file, one line each.

    pycocotools loads it and ``loadRes`` accepts its annotations (what COCOeval does with detections);
    ids are unique; every category id is in the spec; every box lies inside its image with w, h ≥ 1;
    every RLE's size is its image's (h, w) and decodes; ``iscrowd`` is 0; every image file exists.
    """
    import numpy as np
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    problems: list[str] = []
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"{path}: cannot read as JSON ({exc})"]
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            return [f"{path}: missing the `{key}` list"]
    images = {im["id"]: im for im in data["images"]}
    if len(images) != len(data["images"]):
        problems.append(f"{path}: {len(data['images']) - len(images)} duplicate image ids")
    ann_ids = [a["id"] for a in data["annotations"]]
    if len(set(ann_ids)) != len(ann_ids):
        problems.append(f"{path}: {len(ann_ids) - len(set(ann_ids))} duplicate annotation ids")
    known = {c.id for c in spec.categories} if spec else {c["id"] for c in data["categories"]}
    for ann in data["annotations"]:
        where = f"{path}: annotation {ann.get('id')}"
        image = images.get(ann.get("image_id"))
        if image is None:
            problems.append(f"{where} refers to image {ann.get('image_id')}, which is not in the file")
            continue
        if ann.get("category_id") not in known:
            problems.append(f"{where} has category_id {ann.get('category_id')}, not in the spec")
        x, y, w, h = ann["bbox"]
        if x < 0 or y < 0 or w < 1 or h < 1 or x + w > image["width"] + 1e-6 or y + h > image["height"] + 1e-6:
            problems.append(f"{where}: bbox {ann['bbox']} is not inside {image['width']}x{image['height']} with w, h >= 1")
        seg = ann.get("segmentation")
        if not isinstance(seg, dict) or list(seg.get("size", [])) != [image["height"], image["width"]]:
            problems.append(f"{where}: RLE size {seg.get('size') if isinstance(seg, dict) else seg} != image (h, w) "
                            f"[{image['height']}, {image['width']}]")
        elif not isinstance(seg.get("counts"), str):
            problems.append(f"{where}: RLE counts must be a compressed str")
        else:
            try:
                if int(np.asarray(mask_utils.area({"size": seg["size"], "counts": seg["counts"].encode()}))) < 1:
                    problems.append(f"{where}: RLE decodes to an empty mask (corrupt counts, or an object trainers drop)")
            except Exception as exc:  # noqa: BLE001 - a corrupt RLE is a finding, not a crash
                problems.append(f"{where}: RLE does not decode ({exc})")
        if ann.get("iscrowd") != 0:
            problems.append(f"{where}: iscrowd is {ann.get('iscrowd')!r}; trainers ignore crowd objects, it must be 0")
    if dataset_dir is not None:
        missing = [im["file_name"] for im in data["images"] if not (Path(dataset_dir) / im["file_name"]).is_file()]
        if missing:
            problems.append(f"{path}: {len(missing)} images missing from the dataset, e.g. {missing[0]}")
    if problems:
        return problems
    try:
        coco = _quiet(lambda: COCO(str(path)))
        if data["annotations"]:
            results = [{k: a[k] for k in ("image_id", "category_id", "segmentation", "score")}
                       for a in data["annotations"]]
            _quiet(lambda: coco.loadRes(results))
    except Exception as exc:  # noqa: BLE001 - what pycocotools says is the finding
        problems.append(f"{path}: pycocotools rejects it ({type(exc).__name__}: {exc})")
    return problems


def _quiet(fn):
    """pycocotools prints progress lines on stdout; keep them out of the CLI's and the run's output."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn()

