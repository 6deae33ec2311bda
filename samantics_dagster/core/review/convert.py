"""SAM3 instances <-> Label Studio polygon regions.

Polygons rather than brush RLE: a person edits a polygon by dragging its points (and a whole region by
dragging it), while a brush mask has to be repainted; Label Studio's brush RLE is also its own bit-packed
RGBA format, not COCO's. A mask with several parts (an occluded car) becomes several regions sharing the
id prefix ``s{k}p``, so that they come back as one instance. A region a person left as it was comes back
as SAM3's exact RLE: polygon rasterisation would otherwise count as a (false) edit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from xml.sax.saxutils import quoteattr

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from samantics_dagster.core.label.masks import coco_rle, json_rle

FROM_NAME, TO_NAME = "label", "image"
SMART_POINT, SMART_BOX = "smart_point", "smart_box"  # the click-to-mask tools
_SAM_ID = re.compile(r"^s(\d+)p(\d+)$")
HUMAN_SCORE = 1.0
# the near misses' part of the labeling interface (why it is built so: core.review.near_miss)
NEAR_MISS_NAME = "near_miss"  # the PolygonLabels control of the near-miss regions
ACCEPT_NAME = "near_miss_accept"  # the task-level Choices: one box per near miss
CHOICES_KEY = "near_miss_choices"  # task data: the boxes (value shown, alias stored)
SLOTS = 10  # near-miss labels in the labeling config: the most a task can carry
COLOURS = ("#ff00ff", "#00e5ff", "#ffea00", "#ff6d00", "#76ff03", "#d500f9", "#00b0ff", "#ff1744", "#1de9b6", "#c6ff00")


def slot_label(slot: int) -> str:
    """The label of the ``slot``-th near miss of a task (0-based)."""
    return f"near miss {slot + 1}"


def near_miss_controls(to_name: str) -> str:
    """The labeling config's near-miss part: the boxes to tick, then their regions' labels (the legend; a thick
    outline in the label's colour and a faint fill, so the object under a near miss stays visible)."""
    labels = "\n".join(f'    <Label value="{slot_label(s)}" background="{COLOURS[s]}"/>' for s in range(SLOTS))
    return (f'  <Header value="Near misses: SAM3 scored them just below the class threshold. Tick one to keep it; '
            f'leave it to reject it."/>\n'
            f'  <Choices name="{ACCEPT_NAME}" toName="{to_name}" choice="multiple" showInline="true" '
            f'value="${CHOICES_KEY}"/>\n'
            f'  <PolygonLabels name="{NEAR_MISS_NAME}" toName="{to_name}" strokeWidth="4" opacity="0.15">\n'
            f"{labels}\n  </PolygonLabels>\n")


def labeling_config(names: Sequence[str]) -> str:
    """The project's labeling interface: the image and one polygon label per COCO category name, plus the
    smart keypoint and box tools of the click-to-mask backend (``samantics ml-backend``): with it connected
    a click or a box comes back as a polygon of the same label; without it they draw nothing the review
    reads (only ``polygonlabels`` regions of ``label`` are pulled back). Last, the near misses: their own
    regions and a box per near miss to accept it (``core.review.near_miss``)."""
    labels = "\n".join(f"    <Label value={quoteattr(n)}/>" for n in names)
    return (f'<View>\n  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
            f'  <PolygonLabels name="{FROM_NAME}" toName="{TO_NAME}" strokeWidth="2" pointSize="small">\n'
            f"{labels}\n  </PolygonLabels>\n"
            f'  <KeyPointLabels name="{SMART_POINT}" toName="{TO_NAME}" smart="true" smartOnly="true" strokeWidth="3">\n'
            f"{labels}\n  </KeyPointLabels>\n"
            f'  <RectangleLabels name="{SMART_BOX}" toName="{TO_NAME}" smart="true" smartOnly="true">\n'
            f"{labels}\n  </RectangleLabels>\n{near_miss_controls(TO_NAME)}</View>")


def mask_polygons(rle: dict, min_points: int = 3) -> list[list[tuple[float, float]]]:
    """Outer contours of the mask in pixels (holes are dropped: Label Studio polygons have none)."""
    mask = mask_utils.decode(coco_rle(rle)).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [[(float(x), float(y)) for x, y in c.reshape(-1, 2)] for c in contours if len(c) >= min_points]


def _percent(points: Sequence[tuple[float, float]], width: int, height: int) -> list[list[float]]:
    return [[round(x / width * 100.0, 4), round(y / height * 100.0, 4)] for x, y in points]


def to_regions(instances: Sequence[dict], width: int, height: int, names: Mapping[int, str]) -> list[dict]:
    """Label Studio results (pre-annotation regions) for one frame's SAM3 instances, with their scores."""
    out = []
    for k, inst in enumerate(instances):
        for j, poly in enumerate(mask_polygons(inst["rle"])):
            out.append({
                "id": f"s{k}p{j}", "from_name": FROM_NAME, "to_name": TO_NAME, "type": "polygonlabels",
                "original_width": width, "original_height": height, "image_rotation": 0,
                "score": round(float(inst["score"]), 4),
                "value": {"points": _percent(poly, width, height), "closed": True,
                          "polygonlabels": [names[int(inst["category_id"])]]},
            })
    return out


def polygon_rle(polygons: Sequence[Sequence[Sequence[float]]], width: int, height: int) -> dict:
    """One COCO RLE from polygons given in Label Studio percent coordinates."""
    flat = [[v for x, y in poly for v in (x / 100.0 * width, y / 100.0 * height)] for poly in polygons]
    flat = [f for f in flat if len(f) >= 6]
    if not flat:
        return json_rle(mask_utils.encode(np.zeros((height, width), dtype=np.uint8, order="F")))
    return json_rle(mask_utils.merge(mask_utils.frPyObjects(flat, height, width)))


def rle_instance(rle: dict, category_id: int, score: float) -> dict:
    """An instance in the ``sam3_labels`` schema from a mask (its area and box read off the RLE)."""
    area = float(mask_utils.area(coco_rle(rle)))
    x, y, w, h = (float(v) for v in mask_utils.toBbox(coco_rle(rle)))
    return {"category_id": int(category_id), "bbox_xyxy": [x, y, x + w, y + h], "score": float(score),
            "rle": json_rle(rle), "area": area}


def from_regions(results: Sequence[dict], sam_instances: Sequence[dict], width: int, height: int,
                 ids: Mapping[str, int]) -> list[dict]:
    """A person's annotation (Label Studio results) as instances in the ``sam3_labels`` schema.

    Regions ``s{k}p{j}`` are grouped back into SAM3's instance k; if every part is as sent and the class is
    unchanged, the instance is SAM3's own (exact mask, SAM3's score). Anything a person drew or edited
    scores 1.0. Unknown label names raise: the project's labels must match coco-spec.json. Only regions of
    the ``label`` control are read: the near misses' regions count only when ticked (``core.review.near_miss``).
    """
    placeholder = {int(i["category_id"]): "" for i in sam_instances}
    sent = {r["id"]: r for r in to_regions(sam_instances, width, height, placeholder)}
    groups: dict[str, list[dict]] = {}
    for r in results:
        if r.get("type") != "polygonlabels" or r.get("from_name", FROM_NAME) != FROM_NAME or not r.get("value", {}).get("points"):
            continue
        m = _SAM_ID.match(str(r.get("id", "")))
        groups.setdefault(f"s{m.group(1)}" if m else f"h:{r.get('id')}:{len(groups)}", []).append(r)
    out = []
    for key, regions in groups.items():
        label = (regions[0]["value"].get("polygonlabels") or [None])[0]
        if label not in ids:
            raise ValueError(f"Label Studio label {label!r} is not a category of coco-spec.json ({sorted(ids)}): "
                             "the project's labeling config must list only the spec's names")
        cid = ids[label]
        if key.startswith("s"):
            k = int(key[1:])
            parts = {r["id"] for r in regions}
            expected = {rid for rid in sent if rid.startswith(f"s{k}p")}
            untouched = parts == expected and all(
                np.allclose(r["value"]["points"], sent[r["id"]]["value"]["points"], atol=1e-3) for r in regions)
            if untouched and k < len(sam_instances) and int(sam_instances[k]["category_id"]) == cid:
                out.append(dict(sam_instances[k]))
                continue
        rle = polygon_rle([r["value"]["points"] for r in regions], width, height)
        out.append(rle_instance(rle, cid, HUMAN_SCORE))
    return out
