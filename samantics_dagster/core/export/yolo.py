"""RLE masks -> Ultralytics YOLO-seg polygons, and how faithful they are.

Ultralytics reads one polygon per instance (a ``.txt`` line ``class x1 y1 x2 y2 ...``, normalised) and
rasterises it with ``cv2.fillPoly`` after truncating the pixel coordinates to int
(``ultralytics/data/utils.py: polygon2mask``). ``fillPoly`` fills by the even-odd rule and fills the boundary
pixels too, so one ring can carry a whole instance:

* **parts**: a mask in several pieces becomes one ring, each piece joined to the ring at their closest
  points by a zero-width bridge (there and back), as Ultralytics' own converter does for multi-part COCO
  polygons (``converter.merge_multi_segment``). The bridge's pixels are filled, so a piece is kept only when
  it has more pixels than its bridge costs (otherwise it lowers the IoU); dropped pieces are counted.
* **holes**: kept, bridged into their piece's ring the same way; even-odd leaves them empty, and the bridge
  runs over the piece's own pixels, so a hole costs no fidelity. Holes under ``min_hole_area`` pixels are
  filled (counted): they vanish at Ultralytics' 4x mask downsampling anyway.
* **vertices** are traced pixel centres (OpenCV contours, no approximation), written as ``(i + 0.5) / W``:
  Ultralytics' ``int()`` of ``x * W`` gives back ``i``, and collinear runs are dropped losslessly. A polygon
  that would still have more than ``MAX_VERTICES`` is simplified contour by contour (Douglas-Peucker, the
  smallest tolerance that fits), because Ultralytics' loader decimates longer ones blindly.

Fidelity is the IoU between the RLE and the written polygon rasterised exactly as Ultralytics does it, at
the image's resolution. No Dagster here: the asset and the CLI both call :func:`trace_instance`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

MIN_PART_AREA = 4
"""Pixels a piece needs to be kept: single pixels and specks of 2-3 carry no shape a trainer can learn."""
MIN_HOLE_AREA = 4
"""Holes smaller than this are filled rather than traced."""
MAX_VERTICES = 998
"""Ultralytics resamples every polygon to 1000 points when it loads a dataset (``resample_segments``): below
that it only inserts points, above it decimates by vertex index, which cuts across bridges and holes (on
the demo's noisy masks: median IoU 0.999 -> 0.965, worst 0.43). So a polygon stays under it, simplified."""
SIMPLIFY_STEPS = (0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0)
"""Douglas-Peucker tolerances (pixels) tried in turn until the polygon fits in MAX_VERTICES."""
DECIMALS = 6
"""Written precision: 6 decimals keep x * W within 0.005 px of the vertex at 8K, so int() is exact."""


@dataclass
class Traced:
    """One instance's polygon (pixel-centre coordinates, (N, 2) int) or why there is none, and what was dropped."""

    ring: np.ndarray | None
    reason: str | None = None  # why the instance has no polygon: "empty_mask", "too_small"
    parts: int = 0
    holes: int = 0
    dropped_parts: dict[str, int] = field(default_factory=dict)  # reason -> count: "tiny", "line", "far"
    filled_holes: int = 0
    epsilon: float = 0.0  # the Douglas-Peucker tolerance it took to fit MAX_VERTICES (0: exact)


def _pixels(contour: np.ndarray) -> tuple[float, float]:
    """(polygon area, boundary lattice points) of a contour through pixel centres. By Pick's theorem a piece
    covers area + B/2 + 1 pixels and a hole area - B/2 + 1: no per-piece rasterisation needed."""
    pts = contour.reshape(-1, 2).astype(np.int64)
    area = abs(float(cv2.contourArea(pts.astype(np.int32))))
    steps = np.abs(np.diff(np.vstack([pts, pts[:1]]), axis=0)).max(axis=1)
    return area, float(steps.sum())


def _nearest(tree: object, points: np.ndarray) -> tuple[float, int, int]:
    """(Chebyshev distance, index in the tree's ring, index in ``points``) of the closest pair."""
    dist, idx = tree.query(points, k=1, p=np.inf)  # type: ignore[attr-defined]
    j = int(np.argmin(dist))
    return float(dist[j]), int(idx[j]), j


def _merge(root: np.ndarray, others: Sequence[np.ndarray],
           admit: Callable[[int, float], bool] | None = None) -> tuple[np.ndarray, int]:
    """One ring from ``root`` and ``others`` joined by zero-width bridges (out, once round, back the same way),
    so fillPoly's even-odd rule sees each as its own region: a piece filled, a hole left empty.

    Nearest first (Prim's order): each step joins the ring that is closest to what is joined so far, at their
    closest vertices. A bridge therefore never crosses a ring not yet joined (that one would be closer), so
    it does not fill another hole's pixels. ``admit(k, distance)`` may refuse ``others[k]`` (counted).
    """
    from scipy.spatial import cKDTree

    members = [root]
    attach: list[dict[int, list[tuple[int, int]]]] = [{}]  # member -> its vertex -> [(member, its vertex)]
    tree = cKDTree(root)
    best = {k: (*_nearest(tree, o), 0) for k, o in enumerate(others)}  # k -> (dist, vertex of member, j, member)
    refused = 0
    while best:
        k = min(best, key=lambda c: best[c][0])
        dist, i, j, m = best.pop(k)
        if admit is not None and not admit(k, dist):
            refused += 1
            continue
        members.append(others[k])
        attach.append({})
        attach[m].setdefault(i, []).append((len(members) - 1, j))
        tree = cKDTree(others[k])
        for c in best:
            d, ii, jj = _nearest(tree, others[c])
            if d < best[c][0]:
                best[c] = (d, ii, jj, len(members) - 1)
    return _assemble(members, attach), refused


def _assemble(members: Sequence[np.ndarray], attach: Sequence[Mapping[int, Sequence[tuple[int, int]]]]) -> np.ndarray:
    """Walk the bridge tree into one vertex sequence (iteratively: chains of joined rings can be long)."""
    out: list[np.ndarray] = []
    # stack items: [member, start vertex, steps taken, steps in total] or a vertex to re-emit (the way back)
    stack: list = [[0, 0, 0, len(members[0])]]
    while stack:
        top = stack[-1]
        if isinstance(top, np.ndarray):
            out.append(top)
            stack.pop()
            continue
        k, start, step, total = top
        if step == total:
            stack.pop()
            continue
        v = (start + step) % len(members[k])
        top[2] += 1
        out.append(members[k][v])
        if step < len(members[k]):  # a joined ring's closing vertex repeats its first: attach once
            for child, j in reversed(attach[k].get(v, ())):
                stack.append(members[k][v])
                stack.append([child, j, 0, len(members[child]) + 1])
    return np.asarray(out).reshape(-1, 2)


def _compress(ring: np.ndarray) -> np.ndarray:
    """Drop vertices in the middle of a straight run (same direction in and out): lossless, keeps bridges."""
    if len(ring) < 3:
        return ring
    keep = np.ones(len(ring), dtype=bool)
    d_in = ring - np.roll(ring, 1, axis=0)
    d_out = np.roll(ring, -1, axis=0) - ring
    cross = d_in[:, 0] * d_out[:, 1] - d_in[:, 1] * d_out[:, 0]
    dot = (d_in * d_out).sum(axis=1)
    keep &= ~((cross == 0) & (dot > 0))
    keep &= (d_in != 0).any(axis=1)  # repeated points
    return ring[keep] if keep.sum() >= 3 else ring


def _simplify(ring: np.ndarray, epsilon: float) -> np.ndarray:
    """Douglas-Peucker on one closed contour (before bridging, so bridges are never cut), kept >= 3 vertices."""
    if epsilon <= 0:
        return ring
    out = cv2.approxPolyDP(ring.reshape(-1, 1, 2).astype(np.int32), epsilon, True).reshape(-1, 2)
    return out if len(out) >= 3 else ring


def _join(pieces: Sequence[tuple[float, np.ndarray, list[np.ndarray]]], epsilon: float) -> tuple[np.ndarray, int]:
    """Holes into their piece, then pieces into one ring (largest first); (ring, pieces refused as too far)."""
    rings = []
    for pixels, outer, holes in pieces:
        ring = _simplify(outer, epsilon)
        if holes:
            ring, _ = _merge(ring, [_simplify(h, epsilon) for h in holes])
        rings.append((pixels, ring))
    # a piece is worth its bridge only if it adds more pixels than the bridge fills with background
    ring, far = _merge(rings[0][1], [r for _, r in rings[1:]],
                       admit=lambda k, dist: rings[k + 1][0] > max(dist - 1, 0))
    return _compress(ring), far


def _within_budget(pieces: list, max_vertices: int, out: Traced) -> list[tuple[float, np.ndarray, list[np.ndarray]]]:
    """Largest pieces and holes first, as many as a polygon of ``max_vertices`` can carry (each costs at least
    five: three vertices and a bridge there and back); the rest dropped ("budget") or filled, and counted.
    This also bounds the nearest-first join, which is quadratic in the number of rings."""
    pieces = sorted(pieces, key=lambda p: -p[0])
    keep = max(1, max_vertices // 20)
    if len(pieces) > keep:
        out.dropped_parts["budget"] = len(pieces) - keep
        pieces = pieces[:keep]
    holes = sorted(((h[0], k, n) for k, p in enumerate(pieces) for n, h in enumerate(p[2])), reverse=True)
    kept = {(k, n) for _, k, n in holes[:max_vertices // 10]}
    out.filled_holes += len(holes) - len(kept)
    return [(pixels, outer, [h for n, (_, h) in enumerate(hs) if (k, n) in kept])
            for k, (pixels, outer, hs) in enumerate(pieces)]


def trace_mask(mask: np.ndarray, min_part_area: int = MIN_PART_AREA, min_hole_area: int = MIN_HOLE_AREA,
               max_vertices: int = MAX_VERTICES) -> Traced:
    """One ring for a binary (H, W) mask: pieces largest first, holes bridged into their piece, pieces that
    are tiny, straight lines, or farther away than they are large dropped and counted. Exact (every contour
    pixel a vertex, collinear runs dropped) unless that gives more than ``max_vertices``; then each contour
    is simplified, with the smallest Douglas-Peucker tolerance that fits."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    if not m.any():
        return Traced(None, reason="empty_mask")
    contours, hierarchy = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    hier = hierarchy[0]
    pieces: list[tuple[float, np.ndarray, list[tuple[float, np.ndarray]]]] = []
    out = Traced(None)
    for k, contour in enumerate(contours):
        if hier[k][3] != -1:
            continue  # a hole: handled with its piece
        out.parts += 1
        area, boundary = _pixels(contour)
        pixels = area + boundary / 2 + 1
        ring = contour.reshape(-1, 2)
        if pixels < min_part_area:
            out.dropped_parts["tiny"] = out.dropped_parts.get("tiny", 0) + 1
            continue
        if len(ring) < 3 or area == 0:
            out.dropped_parts["line"] = out.dropped_parts.get("line", 0) + 1
            continue
        holes: list[tuple[float, np.ndarray]] = []
        child = hier[k][2]
        while child != -1:
            out.holes += 1
            h_area, h_boundary = _pixels(contours[child])
            hole = contours[child].reshape(-1, 2)
            h_pixels = h_area - h_boundary / 2 + 1
            if h_pixels < min_hole_area or len(hole) < 3:
                out.filled_holes += 1
            else:
                holes.append((h_pixels, hole))
            child = hier[child][0]
        pieces.append((pixels, ring, holes))
    if not pieces:
        return Traced(None, reason="too_small", parts=out.parts, holes=out.holes,
                      dropped_parts=out.dropped_parts, filled_holes=out.filled_holes)
    budgeted = _within_budget(pieces, max_vertices, out)
    for epsilon in SIMPLIFY_STEPS:
        ring, far = _join(budgeted, epsilon)
        if len(ring) <= max_vertices:
            break
    if far:
        out.dropped_parts["far"] = far
    out.ring, out.epsilon = ring, epsilon
    return out


def normalise(ring: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel-centre vertices as Ultralytics' normalised coordinates, (i + 0.5) / size, inside [0, 1]."""
    xy = (ring.astype(np.float64) + 0.5) / np.array([width, height], dtype=np.float64)
    return np.clip(np.round(xy, DECIMALS), 0.0, 1.0)


def rasterise(polygon: np.ndarray, width: int, height: int) -> np.ndarray:
    """A normalised polygon back to a (H, W) mask the way Ultralytics' polygon2mask does (int truncation,
    fillPoly), at the image's resolution."""
    mask = np.zeros((height, width), dtype=np.uint8)
    pts = (np.asarray(polygon, dtype=np.float64) * np.array([width, height])).astype(np.int32)
    cv2.fillPoly(mask, [pts.reshape(-1, 1, 2)], 1)
    return mask


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.logical_and(a, b).sum()
    union = np.logical_or(a, b).sum()
    return float(inter / union) if union else 1.0


def decode_rle(rle: Mapping) -> np.ndarray:
    """A COCO RLE (compressed str/bytes counts, or uncompressed list counts) as an (H, W) uint8 mask."""
    from pycocotools import mask as mask_utils

    size = [int(v) for v in rle["size"]]
    counts = rle["counts"]
    if isinstance(counts, list):
        encoded = mask_utils.frPyObjects({"size": size, "counts": counts}, *size)
    else:
        encoded = {"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return np.asarray(mask_utils.decode(encoded), dtype=np.uint8)


@dataclass
class Instance:
    """One annotation as written (``polygon`` normalised) or dropped (``reason``), with its fidelity."""

    traced: Traced
    polygon: np.ndarray | None
    iou: float | None

    @property
    def reason(self) -> str | None:
        return self.traced.reason


def trace_instance(rle: Mapping, width: int, height: int, min_part_area: int = MIN_PART_AREA,
                   min_hole_area: int = MIN_HOLE_AREA, max_vertices: int = MAX_VERTICES) -> Instance:
    """RLE -> normalised polygon and its IoU against the RLE. An RLE whose size is not the image's is a
    reason ("size_mismatch"), not a crash: the COCO checks should have stopped it, but one bad row must not
    stop the export."""
    if [int(v) for v in rle["size"]] != [int(height), int(width)]:
        return Instance(Traced(None, reason="size_mismatch"), None, None)
    mask = decode_rle(rle)
    traced = trace_mask(mask, min_part_area, min_hole_area, max_vertices)
    if traced.ring is None:
        return Instance(traced, None, None)
    polygon = normalise(traced.ring, width, height)
    return Instance(traced, polygon, mask_iou(rasterise(polygon, width, height), mask))


def label_line(class_index: int, polygon: np.ndarray) -> str:
    """``class x1 y1 x2 y2 ...``: a YOLO-seg row (at least 3 vertices, so never read as a box row)."""
    coords = " ".join(f"{v:.{DECIMALS}f}".rstrip("0").rstrip(".") if v else "0" for v in polygon.reshape(-1))
    return f"{int(class_index)} {coords}"


def class_indices(categories: Sequence[Mapping]) -> list[dict]:
    """COCO categories (ids with gaps) -> contiguous YOLO indices in id order: [{index, id, name, supercategory}]."""
    ordered = sorted(categories, key=lambda c: int(c["id"]))
    return [{"index": k, "id": int(c["id"]), "name": str(c["name"]), "supercategory": c.get("supercategory")}
            for k, c in enumerate(ordered)]


def data_yaml(splits: Mapping[str, str], names: Sequence[str]) -> str:
    """Ultralytics' dataset YAML. No ``path`` key: Ultralytics then resolves the split folders against the
    YAML's own folder (a relative ``path`` would be taken relative to its global DATASETS_DIR instead)."""
    import yaml

    doc = {**dict(splits), "nc": len(names), "names": {k: n for k, n in enumerate(names)}}
    header = "# Written by samantics (yolo_dataset). Class ids: classes.json beside this file.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def summarise(ious: Sequence[float]) -> dict[str, float | int]:
    """The fidelity distribution for metadata: count, mean, min and percentiles, share at IoU >= 0.95."""
    if not len(ious):
        return {"count": 0}
    a = np.asarray(ious, dtype=np.float64)
    q = np.percentile(a, [1, 5, 25, 50, 75])
    return {"count": int(a.size), "mean": round(float(a.mean()), 4), "min": round(float(a.min()), 4),
            "p01": round(float(q[0]), 4), "p05": round(float(q[1]), 4), "p25": round(float(q[2]), 4),
            "median": round(float(q[3]), 4), "p75": round(float(q[4]), 4),
            "share_ge_0.95": round(float((a >= 0.95).mean()), 4)}
