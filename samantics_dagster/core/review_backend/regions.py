"""A click's mask as one Label Studio ``polygonlabels`` region, traced the way the YOLO export traces masks.

One region per mask, so a person accepts or deletes the object in one go: pieces of the mask (an occluded
car) and its holes (a window) are bridged into a single ring by ``core.export.yolo.trace_mask``, the same
tracer, with the same rules (specks dropped, tiny holes filled, at most ``MAX_VERTICES`` vertices), as the
YOLO-seg export, after the mask's stray fragments are dropped (:func:`keep_pieces`). Label Studio fills a polygon by the canvas rule and pulls it back through pycocotools'
polygon rasteriser (``core.review.convert.polygon_rle``); a hole's ring runs the other way round from its
piece's and the bridges have no width, so both leave the holes empty.

Vertices are pixel centres (``i + 0.5``) in percent of the image; ``polygon_iou`` is the mask's IoU with the
polygon as the review loop will rasterise it when the reviewer keeps it as it is.
"""

from __future__ import annotations

import uuid

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from samantics_dagster.core.export.yolo import mask_iou, trace_mask
from samantics_dagster.core.label.masks import coco_rle, encode_masks
from samantics_dagster.core.review.convert import polygon_rle

MAX_PIECES = 8
"""Pieces of a click's mask kept for the polygon, largest first: a person edits the polygon, and SAM's stray
fragments (its own predictor removes them as "sprinkles") are clutter to drag around and slow to bridge."""
MIN_PIECE_SHARE = 0.02
"""A piece smaller than this share of the mask's area is a fragment, not part of the object."""


def keep_pieces(mask: np.ndarray, max_pieces: int = MAX_PIECES, min_share: float = MIN_PIECE_SHARE) -> np.ndarray:
    """The mask without its fragments: at most ``max_pieces`` connected pieces (8-connected), each at least
    ``min_share`` of the mask's area, and its holes smaller than that share filled (SAM2's predictor does the
    same with its ``max_sprinkle_area`` and ``fill_hole_area``)."""
    m = mask.astype(np.uint8)
    total = float(m.sum())
    if total == 0:
        return mask.astype(bool)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if count > 2:
        areas = stats[1:, cv2.CC_STAT_AREA]
        order = np.argsort(-areas)[:max_pieces]
        m = np.isin(labels, [int(i) + 1 for i in order if areas[i] >= min_share * total]).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(1 - m, connectivity=4)
    h, w = m.shape
    x, y, bw, bh, area = (stats[:, k] for k in range(5))
    inner = (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h)  # background not touching the border: a hole
    small = np.flatnonzero(inner & (area < min_share * total))
    if len(small):
        m[np.isin(labels, small)] = 1
    return m.astype(bool)


def ring_percent(ring: np.ndarray, width: int, height: int) -> list[list[float]]:
    xy = (ring.astype(np.float64) + 0.5) / np.array([width, height], dtype=np.float64) * 100.0
    return np.round(np.clip(xy, 0.0, 100.0), 4).tolist()


def mask_region(mask: np.ndarray, label: str, from_name: str, to_name: str, score: float) -> tuple[dict | None, dict]:
    """``(region, info)``: the polygon region (None when the mask is empty or only specks) and what the
    tracing did (parts, holes, dropped pieces, the polygon's IoU with the mask, the mask's COCO RLE)."""
    height, width = mask.shape
    rle = encode_masks([mask])[0]
    kept = keep_pieces(mask)
    traced = trace_mask(kept)
    info: dict = {"area": int(mask.sum()), "rle": rle, "cleaned_px": int((mask != kept).sum()),
                  "parts": traced.parts, "holes": traced.holes,
                  "dropped_parts": dict(traced.dropped_parts), "filled_holes": traced.filled_holes}
    if traced.ring is None:
        info["reason"] = traced.reason
        return None, info
    points = ring_percent(traced.ring, width, height)
    back = mask_utils.decode(coco_rle(polygon_rle([points], width, height))).astype(bool)
    info["polygon_iou"] = round(mask_iou(back, mask), 4)
    region = {
        "id": uuid.uuid4().hex[:10], "from_name": from_name, "to_name": to_name, "type": "polygonlabels",
        "original_width": width, "original_height": height, "image_rotation": 0, "score": round(float(score), 4),
        "value": {"points": points, "closed": True, "polygonlabels": [label]},
    }
    return region, info
