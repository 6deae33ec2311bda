"""``labels.jsonl`` records (the seed's format) for the tools that read them: stats, split, to-coco.

A record is one image: ``image`` (path relative to the dataset), ``boxes`` (XYXY pixels),
``category_ids``, ``scores``, ``masks`` (COCO RLE, ``counts`` str), optional ``areas``, ``width``,
``height``, ``dhash``, ``source_path``, ``video_id``. Older files lack the optional keys; they are derived
(size from the masks, area from the RLE, video from the frame name ``{video_id}_{timestamp_ms}.jpg``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

import pandas as pd

from samantics_dagster.core.dataset.frame import CocoFrame
from samantics_dagster.core.dataset.spec import Spec
from samantics_dagster.core.export.coco import build_coco
from samantics_dagster.core.workdir.naming import parse_frame_name


class RecordError(ValueError):
    """A labels.jsonl problem; the message names the file and line and says what to do."""


def read_jsonl(path: Path) -> list[dict]:
    if not Path(path).is_file():
        raise RecordError(f"{path}: no such file; pass the labels.jsonl the pipeline (or the old label script) wrote")
    records = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise RecordError(f"{path}:{n}: not JSON ({exc.args[0]}); fix or delete that line") from None
            if not isinstance(rec, dict) or "image" not in rec:
                raise RecordError(f"{path}:{n}: a record must be an object with an `image` key")
            records.append(rec)
    return records


def instances(rec: Mapping) -> list[dict]:
    """The record's detections as instance dicts (``category_id``, ``bbox_xyxy``, ``score``, ``rle``, ``area``)."""
    from samantics_dagster.core.label.masks import rle_area

    boxes, ids = rec.get("boxes") or [], rec.get("category_ids") or []
    scores = rec.get("scores") or [1.0] * len(ids)
    masks = rec.get("masks") or []
    if not (len(boxes) == len(ids) == len(scores)) or (masks and len(masks) != len(ids)):
        raise RecordError(f"record {rec.get('image')!r}: boxes, category_ids, scores and masks differ in length")
    areas = rec.get("areas") or (rle_area(masks) if masks else [0.0] * len(ids))
    return [{"category_id": int(c), "bbox_xyxy": [float(v) for v in b], "score": float(s),
             "rle": m, "area": float(a)} for c, b, s, m, a in zip(ids, boxes, scores, masks or [None] * len(ids), areas)]


def size(rec: Mapping, image_root: Path | None = None) -> tuple[int, int]:
    """(width, height): the record's own, else the first mask's, else the image file's header."""
    if rec.get("width") and rec.get("height"):
        return int(rec["width"]), int(rec["height"])
    if rec.get("masks"):
        h, w = rec["masks"][0]["size"]
        return int(w), int(h)
    if image_root is not None:
        from PIL import Image, UnidentifiedImageError

        path = Path(image_root) / str(rec["image"])
        try:
            with Image.open(path) as im:
                return im.size
        except (OSError, UnidentifiedImageError) as exc:
            raise RecordError(f"record {rec['image']!r} has no width/height or mask, and {path} can't be read "
                              f"({exc}); run from the dataset folder or add width and height") from None
    raise RecordError(f"record {rec.get('image')!r}: no width/height and no mask to take them from")


def video(rec: Mapping) -> str | None:
    """The record's video: its ``video_id``, else parsed from the source frame's name."""
    if rec.get("video_id"):
        return str(rec["video_id"])
    name = PurePosixPath(str(rec.get("source_path") or rec.get("image") or "")).name
    return parse_frame_name(name).video_id


def key(rec: Mapping) -> str:
    return str(rec.get("dhash") or rec["image"])


def is_person_only(category_ids: Iterable[int], spec: Spec | None) -> bool:
    ids = set(category_ids)
    if not ids or spec is None:
        return False
    people = {c.id for c in spec.categories if c.supercategory == "person"}
    return ids <= people


def keep(rec: Mapping, spec: Spec | None, keep_empty: bool, keep_only_person: bool) -> bool:
    """The old stats.py's defaults: empty frames and person-only frames don't count unless asked."""
    ids = rec.get("category_ids") or []
    if not ids:
        return keep_empty
    return keep_only_person or not is_person_only(ids, spec)


def stats(splits: Mapping[str, Sequence[dict]], spec: Spec | None, *, keep_empty: bool = False,
          keep_only_person: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per split: images, instances, videos; per class and split: instances, images)."""
    names = {c.id: c.name for c in spec.categories} if spec else {}
    summary: list[dict] = []
    per_class: Counter[tuple[str, int]] = Counter()
    images_with: Counter[tuple[str, int]] = Counter()
    for split, records in splits.items():
        kept = [r for r in records if keep(r, spec, keep_empty, keep_only_person)]
        n_inst = 0
        for r in kept:
            ids = [int(c) for c in r.get("category_ids") or []]
            n_inst += len(ids)
            per_class.update((split, c) for c in ids)
            images_with.update((split, c) for c in set(ids))
        summary.append({"split": split, "images": len(kept), "skipped": len(records) - len(kept),
                        "instances": n_inst, "videos": len({video(r) for r in kept} - {None})})
    classes = pd.DataFrame([{"split": s, "category_id": c, "category": names.get(c, str(c)), "instances": n,
                             "images": images_with[(s, c)]} for (s, c), n in sorted(per_class.items())],
                           columns=["split", "category_id", "category", "instances", "images"])
    return pd.DataFrame(summary, columns=["split", "images", "skipped", "instances", "videos"]), classes


def to_coco(records: Sequence[dict], spec: Spec, image_root: Path | None = None) -> dict:
    """The old to_coco.py: one COCO file from labels.jsonl records, file names as the records give them
    (relative to ``image_root``, where the sizes of empty records are read from)."""
    frames = []
    for rec in records:
        if rec.get("category_ids") and not rec.get("masks"):
            raise RecordError(f"record {rec.get('image')!r} has detections but no `masks`; COCO needs a mask per instance")
        w, h = size(rec, image_root)
        frames.append(CocoFrame(dhash=key(rec), width=w, height=h, instances=instances(rec),
                                source_path=rec.get("source_path"), video_id=video(rec), path=str(rec["image"])))
    known = {c.id for c in spec.categories}
    unknown = sorted({int(i["category_id"]) for f in frames for i in f.instances} - known)
    if unknown:
        raise RecordError(f"category ids {unknown} are not in the spec {spec.path}; pass the coco-spec.json the labels were made with")
    return build_coco(spec, frames)
