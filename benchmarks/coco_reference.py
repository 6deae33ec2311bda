"""The in-memory COCO merge the streamed one replaced (``core.export.stream.merge_coco_files``), kept outside the
package: the reference its tests compare bytes against, and the baseline of ``bench_scale.py``."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from samantics_dagster.core.dataset.spec import Spec
from samantics_dagster.core.export.coco import categories_json


def merge_coco(parts: Sequence[dict], spec: Spec) -> dict:
    """One COCO dict from several (e.g. every category's train.json). Ids are already global (from the
    dhash), so merging keeps them; an image present twice must be the same image."""
    images: dict[int, dict] = {}
    annotations: dict[int, dict] = {}
    for part in parts:
        for image in part["images"]:
            seen = images.setdefault(image["id"], image)
            if seen["file_name"] != image["file_name"]:
                raise ValueError(f"image id {image['id']} is both {seen['file_name']} and {image['file_name']}")
        for ann in part["annotations"]:
            seen = annotations.setdefault(ann["id"], ann)
            if seen is not ann and seen["image_id"] != ann["image_id"]:
                raise ValueError(f"annotation id {ann['id']} belongs to images {seen['image_id']} and {ann['image_id']}")
    return {
        "info": copy.deepcopy(spec.info), "licenses": copy.deepcopy(spec.licenses),
        "images": [images[k] for k in sorted(images)],
        "annotations": sorted(annotations.values(), key=lambda a: (a["image_id"], a["id"])),
        "categories": categories_json(spec),
    }
