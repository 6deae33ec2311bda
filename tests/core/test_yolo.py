"""RLE -> YOLO-seg polygon round trips: the written row, read back the way Ultralytics reads and rasterises it.

The reader below follows ``ultralytics/data/utils.py`` (``verify_image_label``: split the row, a segment row
has more than 6 values, coordinates within [0, 1]; ``polygon2mask``: x * W, int truncation, fillPoly).
"""

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from samantics_dagster.core.export.yolo import (
    MAX_VERTICES,
    class_indices,
    data_yaml,
    label_line,
    mask_iou,
    rasterise,
    summarise,
    trace_instance,
    trace_mask,
)


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()}


def _read_back(line: str, width: int, height: int) -> tuple[int, np.ndarray, np.ndarray]:
    """(class, polygon, mask) as Ultralytics gets them from one label row."""
    values = line.split()
    assert len(values) > 6, "a row of 6 values or fewer is read as a box, not a segment"
    polygon = np.array(values[1:], dtype=np.float32).reshape(-1, 2)
    assert polygon.min() >= 0 and polygon.max() <= 1
    return int(values[0]), polygon, rasterise(polygon, width, height)


def _round_trip(mask: np.ndarray, class_index: int = 3, **kw) -> tuple[np.ndarray, object]:
    h, w = mask.shape
    inst = trace_instance(_rle(mask), w, h, **kw)
    assert inst.polygon is not None, inst.reason
    cls, _, back = _read_back(label_line(class_index, inst.polygon), w, h)
    assert cls == class_index
    assert inst.iou == pytest.approx(mask_iou(back, mask))  # the reported fidelity is the read-back's
    return back, inst


def test_a_hole_stays_empty():
    mask = np.zeros((40, 50), np.uint8)
    mask[5:35, 5:45] = 1
    mask[12:25, 15:30] = 0
    back, inst = _round_trip(mask)
    assert np.array_equal(back, mask)
    assert inst.traced.holes == 1 and inst.traced.filled_holes == 0


def test_two_parts_become_one_row_joined_by_a_bridge():
    mask = np.zeros((40, 60), np.uint8)
    mask[5:20, 5:20] = 1
    mask[22:35, 30:50] = 1  # 10 px to the right, 2 px below the first part's corner
    back, inst = _round_trip(mask)
    assert inst.traced.parts == 2 and not inst.traced.dropped_parts
    assert not (mask.astype(bool) & ~back.astype(bool)).any()  # both parts fully there
    extra = int((back.astype(bool) & ~mask.astype(bool)).sum())
    assert 0 < extra <= 12  # only the bridge's pixels: its Chebyshev length is 10
    assert inst.iou == pytest.approx(mask.sum() / (mask.sum() + extra))


def test_a_speck_far_from_the_object_is_dropped_and_counted():
    mask = np.zeros((60, 100), np.uint8)
    mask[10:30, 10:30] = 1
    mask[50:52, 90:92] = 1  # 4 pixels, 60 px away: its bridge would add more background than it adds mask
    back, inst = _round_trip(mask)
    assert inst.traced.dropped_parts == {"far": 1}
    assert np.array_equal(back, np.pad(np.ones((20, 20), np.uint8), ((10, 30), (10, 70))))


def test_a_one_pixel_mask_is_dropped_with_its_reason():
    mask = np.zeros((20, 20), np.uint8)
    mask[7, 9] = 1
    inst = trace_instance(_rle(mask), 20, 20)
    assert inst.polygon is None and inst.reason == "too_small" and inst.traced.dropped_parts == {"tiny": 1}
    one = trace_instance(_rle(mask), 20, 20, min_part_area=1)  # even when allowed: one point is no polygon
    assert one.polygon is None and one.traced.dropped_parts == {"line": 1}
    assert trace_instance(_rle(np.zeros((20, 20), np.uint8)), 20, 20).reason == "empty_mask"


def test_a_mask_touching_every_border():
    mask = np.zeros((30, 40), np.uint8)
    mask[:, 15:25] = 1  # a cross: touches top, bottom, left and right
    mask[10:20, :] = 1
    back, inst = _round_trip(mask)
    assert np.array_equal(back, mask)
    xs, ys = inst.polygon[:, 0], inst.polygon[:, 1]
    assert xs.min() == pytest.approx(0.5 / 40, abs=1e-6) and xs.max() == pytest.approx(39.5 / 40, abs=1e-6)  # centres
    assert ys.min() == pytest.approx(0.5 / 30, abs=1e-6) and ys.max() == pytest.approx(29.5 / 30, abs=1e-6)
    full = np.ones((30, 40), np.uint8)
    assert np.array_equal(_round_trip(full)[0], full)


def test_small_holes_are_filled_and_counted():
    mask = np.ones((20, 20), np.uint8)
    mask[5, 5] = 0
    mask[10:14, 10:14] = 0
    back, inst = _round_trip(mask)
    assert inst.traced.holes == 2 and inst.traced.filled_holes == 1
    assert back[5, 5] == 1 and not back[10:14, 10:14].any()


def test_an_rle_of_another_size_is_a_reason_not_a_crash():
    inst = trace_instance(_rle(np.ones((10, 10), np.uint8)), 12, 10)
    assert inst.polygon is None and inst.reason == "size_mismatch"


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(6, 40), st.integers(6, 40), st.floats(0.3, 0.9))
def test_one_piece_with_any_holes_round_trips_exactly(seed, h, w, density):
    """Nearest-first bridging never runs a bridge across another hole, so any single 8-connected piece comes
    back pixel for pixel, however many holes it has (given the vertices: no simplification here)."""
    import cv2

    rng = np.random.default_rng(seed)
    noisy = (rng.random((h, w)) < density).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(noisy, connectivity=8)
    if n < 2:
        return
    piece = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    exact = {"min_part_area": 1, "min_hole_area": 1, "max_vertices": 10**9}
    traced = trace_mask(piece, **exact)
    if traced.ring is None:  # a lone pixel or a line: no polygon, and said so
        assert traced.reason == "too_small"
        return
    back = _round_trip(piece, **exact)[0]
    assert np.array_equal(back, piece)


def test_class_indices_are_contiguous_in_id_order_and_data_yaml_reads_back():
    cats = [{"id": 12, "name": "cup", "supercategory": "kitchen"}, {"id": 1, "name": "person", "supercategory": "person"},
            {"id": 3, "name": "car", "supercategory": "vehicle"}]
    classes = class_indices(cats)
    assert [(c["index"], c["id"], c["name"]) for c in classes] == [(0, 1, "person"), (1, 3, "car"), (2, 12, "cup")]
    doc = yaml.safe_load(data_yaml({"train": "images/train", "val": "images/val"}, [c["name"] for c in classes]))
    assert doc == {"train": "images/train", "val": "images/val", "nc": 3, "names": {0: "person", 1: "car", 2: "cup"}}
    assert "path" not in doc  # Ultralytics would resolve a relative path against its DATASETS_DIR


def test_summary_of_the_fidelity_distribution():
    s = summarise([1.0, 0.9, 0.99, 0.97])
    assert s["count"] == 4 and s["min"] == 0.9 and s["median"] == pytest.approx(0.98) and s["share_ge_0.95"] == 0.75
    assert summarise([]) == {"count": 0}


def test_a_polygon_too_long_for_ultralytics_is_simplified_to_fit():
    """Ultralytics decimates polygons over 1000 points by index; ours stay under it, simplified per contour."""
    yy, xx = np.mgrid[:600, :800]
    angle, radius = np.arctan2(yy - 300, xx - 400), np.hypot(yy - 300, xx - 400)
    mask = (radius < 250 + 4 * np.sin(97 * angle) + 3 * np.sin(61 * angle)).astype(np.uint8)  # a wavy edge
    exact = trace_mask(mask, max_vertices=10**9)
    assert len(exact.ring) > MAX_VERTICES and exact.epsilon == 0
    back, inst = _round_trip(mask)
    assert len(inst.polygon) <= MAX_VERTICES and inst.traced.epsilon > 0
    assert inst.iou > 0.99


def test_too_many_holes_for_one_polygon_fills_the_smallest_and_counts_them():
    rng = np.random.default_rng(0)
    mask = (rng.random((200, 300)) < 0.97).astype(np.uint8)  # ~1800 one-pixel holes
    mask[::10, ::10] = 1
    mask[50:60, 50:60] = 0  # one large hole among them: kept
    back, inst = _round_trip(mask, min_part_area=1, min_hole_area=1)
    assert len(inst.polygon) <= MAX_VERTICES and inst.traced.filled_holes > 1000
    assert not back[50:60, 50:60].any()
    assert inst.iou == pytest.approx(mask.sum() / (mask.sum() + (back & ~mask.astype(bool)).sum()), abs=1e-9)
