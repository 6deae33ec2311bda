import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samantics_dagster.core.label.masks import (
    Instance,
    RelationRule,
    apply_relation_rules,
    box_inside_fraction,
    build_instances,
    cap_detections,
    containment,
    cross_prompt_nms,
    decode_rle,
    encode_masks,
    mask_iou_matrix,
    rle_area,
)
from samantics_dagster.demo.testing import bbox_xywh

H, W = 60, 80


def rect(y0: int, y1: int, x0: int, x1: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def inst(mask: np.ndarray, category_id: int, score: float, box=None) -> Instance:
    """An instance whose box is the mask's tight box unless given."""
    if box is None:
        ys, xs = np.nonzero(mask)
        box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else (0, 0, 0, 0)
    return build_instances([mask], [box], [score], [category_id])[0]


def random_masks(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((n, H, W)) < 0.3


# --- RLE -----------------------------------------------------------------------------------------


def test_rle_round_trip_is_json_safe():
    masks = random_masks(3)
    masks[1] = rect(5, 20, 7, 50)
    rles = encode_masks(masks)
    assert len(rles) == 3
    for m, r in zip(masks, rles):
        assert isinstance(r["counts"], str)
        assert r["size"] == [H, W]
        assert json.loads(json.dumps(r)) == r
        back = decode_rle(r)
        assert back.dtype == bool and back.shape == (H, W)
        assert np.array_equal(back, m)
        # pycocotools itself reads what we stored (through a JSON trip)
        assert np.array_equal(mask_utils.decode(json.loads(json.dumps(r))).astype(bool), m)


def test_batched_encode_equals_per_mask_encode():
    masks = random_masks(5, seed=1)
    batched = encode_masks(masks)
    single = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in masks]
    assert [r["counts"] for r in batched] == [s["counts"].decode("ascii") for s in single]
    assert encode_masks(list(masks)) == batched  # a list encodes like an array


def test_every_memory_layout_encodes_like_pycocotools_per_mask():
    # row-major bool (the CPU path), column-major bool (from CUDA), uint8 0/255, a list; across a chunk boundary
    masks = random_masks(37, seed=4)
    want = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode("ascii") for m in masks]
    column_major = np.ascontiguousarray(masks.transpose(0, 2, 1)).transpose(0, 2, 1)
    assert not column_major.flags.c_contiguous and np.moveaxis(column_major, 0, -1).flags.f_contiguous
    for layout in (masks, column_major, masks.astype(np.uint8) * 255, list(masks), [m.astype(np.uint8) for m in masks]):
        assert [r["counts"] for r in encode_masks(layout)] == want


def test_encode_non_square_orientation():
    # a C-ordered, non-square mask must not come back transposed
    m = rect(0, 3, 0, 70)
    (r,) = encode_masks([m])
    assert r["size"] == [H, W]
    assert np.array_equal(decode_rle(r), m)


def test_encode_rejects_bad_input_and_handles_empty():
    assert encode_masks([]) == []
    assert encode_masks(np.zeros((0, H, W), bool)) == []
    with pytest.raises(ValueError):
        encode_masks(rect(0, 1, 0, 1))  # a bare H×W mask
    with pytest.raises(ValueError):
        encode_masks([rect(0, 1, 0, 1), np.zeros((5, 5), bool)])


def test_area_equals_mask_sum():
    masks = random_masks(4, seed=2)
    masks[3] = False
    assert rle_area(encode_masks(masks)) == [float(m.sum()) for m in masks]
    assert rle_area([]) == []
    (i,) = build_instances([masks[0]], [(0, 0, W, H)], [0.9], [1])
    assert i.area == float(masks[0].sum())  # from the mask, not the box (W*H)


def test_iou_matrix_matches_numpy():
    a, b = random_masks(3, seed=3), random_masks(4, seed=4)
    b[0] = a[1]
    b[3] = False
    got = mask_iou_matrix(encode_masks(a), encode_masks(b))
    want = np.zeros((3, 4))
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            union = (x | y).sum()
            want[i, j] = (x & y).sum() / union if union else 0.0
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert got[1, 0] == pytest.approx(1.0)
    assert mask_iou_matrix([], encode_masks(b)).shape == (0, 4)
    assert mask_iou_matrix(encode_masks(a), []).shape == (3, 0)


def test_containment():
    outer = rect(0, 40, 0, 40)
    full, half, out, empty, o = encode_masks(
        [rect(5, 15, 5, 15), rect(30, 50, 5, 15), rect(45, 55, 50, 60), np.zeros((H, W), bool), outer]
    )
    assert containment(full, o) == 1.0
    assert containment(half, o) == pytest.approx(0.5)
    assert containment(out, o) == 0.0
    assert containment(empty, o) == 0.0
    assert containment(o, full) == pytest.approx(100 / 1600)  # not symmetric


def test_bbox_xywh_and_box_inside_fraction():
    assert bbox_xywh((10, 20, 30, 60)) == [10.0, 20.0, 20.0, 40.0]
    assert box_inside_fraction((0, 0, 10, 10), (0, 0, 20, 20)) == 1.0
    assert box_inside_fraction((0, 0, 10, 10), (5, 0, 20, 20)) == pytest.approx(0.5)
    assert box_inside_fraction((0, 0, 10, 10), (30, 30, 40, 40)) == 0.0
    assert box_inside_fraction((5, 5, 5, 9), (0, 0, 20, 20)) == 0.0


def test_record_is_json_safe_and_round_trips():
    # numpy inputs, as the model hands them over, must still give plain Python values
    boxes, scores = np.array([[2.0, 1.0, 9.0, 4.0]], np.float32), np.array([0.75], np.float32)
    (i,) = build_instances(np.array([rect(1, 4, 2, 9)]), boxes, scores, np.array([7]))
    rec = i.to_record()
    assert set(rec) == {"category_id", "bbox_xyxy", "score", "rle", "area"}
    assert type(rec["category_id"]) is int and type(rec["score"]) is float and type(rec["area"]) is float
    assert rec["bbox_xyxy"] == [2.0, 1.0, 9.0, 4.0]
    assert rec["area"] == 21.0
    assert Instance.from_record(json.loads(json.dumps(rec))) == i


def test_build_instances_length_mismatch():
    with pytest.raises(ValueError):
        build_instances([rect(0, 2, 0, 2)], [(0, 0, 2, 2)], [0.5, 0.6], [1])


# --- cap and NMS ---------------------------------------------------------------------------------


def test_cap_keeps_highest_scores():
    items = [inst(rect(0, 5, i * 5, i * 5 + 5), 1, s) for i, s in enumerate([0.3, 0.9, 0.1, 0.6])]
    assert [i.score for i in cap_detections(items, 2)] == [0.9, 0.6]
    assert [i.score for i in cap_detections(items, None)] == [0.9, 0.6, 0.3, 0.1]
    assert cap_detections(items, 0) == []
    assert len(cap_detections(items, 10)) == 4
    with pytest.raises(ValueError):
        cap_detections(items, -1)


def test_nms_keeps_higher_score_across_categories():
    car = inst(rect(10, 40, 10, 60), category_id=3, score=0.7)
    truck = inst(rect(11, 40, 10, 60), category_id=8, score=0.9)  # same vehicle, other prompt
    person = inst(rect(45, 58, 0, 8), category_id=1, score=0.4)  # elsewhere
    kept = cross_prompt_nms([car, person, truck], 0.5)
    assert kept == [truck, person]


def test_nms_keeps_non_overlapping_and_orders_by_score():
    a = inst(rect(0, 10, 0, 10), 1, 0.2)
    b = inst(rect(20, 30, 20, 30), 1, 0.8)
    c = inst(rect(0, 10, 40, 50), 2, 0.5)
    assert cross_prompt_nms([a, b, c]) == [b, c, a]
    assert cross_prompt_nms([]) == []


def test_nms_threshold_boundary():
    big = inst(rect(0, 10, 0, 10), 1, 0.9)
    half = inst(rect(0, 10, 0, 5), 2, 0.8)  # IoU exactly 0.5 with big
    assert mask_iou_matrix([big.rle], [half.rle])[0, 0] == 0.5
    assert cross_prompt_nms([big, half], 0.5) == [big, half]  # rule is "> threshold"
    assert cross_prompt_nms([big, half], 0.49) == [big]


def test_nms_disabled():
    a = inst(rect(0, 10, 0, 10), 1, 0.5)
    b = inst(rect(0, 10, 0, 10), 2, 0.9)
    assert cross_prompt_nms([a, b], 0.5) == [b]
    assert cross_prompt_nms([a, b], None) == [b, a]
    assert cross_prompt_nms([a, b], 1.0) == [b, a]


def test_nms_is_greedy_not_transitive():
    # b overlaps both a and c; once b is dropped by a, c survives although it overlaps b
    a = inst(rect(0, 10, 0, 10), 1, 0.9)
    b = inst(rect(0, 10, 3, 13), 1, 0.8)
    c = inst(rect(0, 10, 6, 16), 1, 0.7)
    assert cross_prompt_nms([c, b, a], 0.5) == [a, c]


# --- relation rules ------------------------------------------------------------------------------

NAMES = {"person": 1, "car": 3, "passenger": 91}
PASSENGER = RelationRule(subject="person", container="car", becomes="passenger")
CAR_BOX = (10, 10, 70, 50)


def car_with_window() -> Instance:
    """A car whose mask leaves the window (rows 15-25, cols 30-40) unsegmented, box covering it all."""
    m = rect(10, 50, 10, 70)
    m[15:25, 30:40] = False
    return inst(m, NAMES["car"], 0.9, box=CAR_BOX)


def relabel(*persons: Instance, names=NAMES, rules=(PASSENGER,)) -> list[int]:
    out = apply_relation_rules([car_with_window(), *persons], list(rules), names)
    return [i.category_id for i in out[1:]]


def test_person_fully_inside_car_is_passenger():
    assert relabel(inst(rect(30, 45, 20, 28), 1, 0.8)) == [91]


def test_person_half_inside_with_box_well_inside_is_passenger():
    person = inst(rect(15, 35, 30, 40), 1, 0.8)  # top half is in the window hole
    car = car_with_window()
    assert containment(person.rle, car.rle) == pytest.approx(0.5)
    assert box_inside_fraction(person.bbox_xyxy, car.bbox_xyxy) == 1.0
    assert relabel(person) == [91]


def test_person_half_inside_with_box_sticking_out_stays_person():
    person = inst(rect(40, 60, 20, 28), 1, 0.8)  # lower half below the car
    assert containment(person.rle, car_with_window().rle) == pytest.approx(0.5)
    assert relabel(person) == [1]


def test_person_next_to_car_stays_person():
    assert relabel(inst(rect(10, 50, 72, 78), 1, 0.8)) == [1]


def test_rule_inactive_without_derived_category():
    inside = inst(rect(30, 45, 20, 28), 1, 0.8)
    assert relabel(inside, names={"person": 1, "car": 3}) == [1]


def test_empty_masks_are_never_contained():
    empty = inst(np.zeros((H, W), bool), 1, 0.8, box=(20, 20, 30, 30))
    assert empty.area == 0.0
    assert relabel(empty) == [1]
    assert apply_relation_rules([], [PASSENGER], NAMES) == []


def test_rules_leave_inputs_alone_and_keep_order():
    person = inst(rect(30, 45, 20, 28), 1, 0.8)
    bystander = inst(rect(10, 50, 72, 78), 1, 0.7)
    car = car_with_window()
    items = [person, car, bystander]
    out = apply_relation_rules(items, [PASSENGER], NAMES)
    assert [i.category_id for i in out] == [91, 3, 1]
    assert [i.category_id for i in items] == [1, 3, 1]
    assert out is not items and out[1] is car


def test_containment_exactly_at_min_is_not_enough():
    person = inst(rect(44, 54, 20, 28), 1, 0.8)  # 6 of 10 rows inside the car, box sticking out
    assert containment(person.rle, car_with_window().rle) == pytest.approx(0.6)
    assert relabel(person) == [1]  # rule is "> min_containment"


def test_only_container_category_counts():
    bus = inst(rect(10, 50, 10, 70), 6, 0.9)
    person = inst(rect(30, 45, 20, 28), 1, 0.8)
    big_person = inst(rect(0, 60, 0, 80), 1, 0.6)
    out = apply_relation_rules([bus, person, big_person], [PASSENGER], NAMES)
    assert [i.category_id for i in out] == [6, 1, 1]


def test_thresholds_are_configurable():
    person = inst(rect(40, 60, 20, 28), 1, 0.8)  # 0.5 contained, box out
    lenient = RelationRule("person", "car", "passenger", min_containment=0.45)
    assert relabel(person, rules=(lenient,)) == [91]


# --- COCO end check ------------------------------------------------------------------------------


def test_instances_load_as_coco_and_evaluate():
    car = car_with_window()
    passenger, bystander = apply_relation_rules(
        [inst(rect(30, 45, 20, 28), 1, 0.8), inst(rect(10, 50, 72, 78), 1, 0.7)] + [car], [PASSENGER], NAMES
    )[:2]
    per_image = {1: [car, passenger, bystander], 2: []}  # an image without annotations must load too
    records = {img: [json.loads(json.dumps(i.to_record())) for i in items] for img, items in per_image.items()}

    annotations = []
    for image_id, recs in records.items():
        for rec in recs:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": rec["category_id"],
                    "segmentation": rec["rle"],
                    "area": rec["area"],
                    "bbox": bbox_xywh(rec["bbox_xyxy"]),
                    "iscrowd": 0,
                }
            )
    dataset = {
        "images": [{"id": i, "width": W, "height": H, "file_name": f"{i}.jpg"} for i in records],
        "categories": [{"id": v, "name": k, "supercategory": "x"} for k, v in NAMES.items()],
        "annotations": annotations,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = json.loads(json.dumps(dataset))
        gt.createIndex()
        assert gt.getCatIds() == [1, 3, 91]
        assert len(gt.getAnnIds(imgIds=[1])) == 3 and gt.getAnnIds(imgIds=[2]) == []
        (passenger_ann,) = gt.loadAnns(gt.getAnnIds(catIds=[91]))
        assert np.array_equal(gt.annToMask(passenger_ann).astype(bool), decode_rle(passenger.rle))

        results = [
            {"image_id": img, "category_id": r["category_id"], "segmentation": r["rle"], "score": r["score"]}
            for img, recs in records.items()
            for r in recs
        ]
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert len(dt.getAnnIds()) == 3
    assert ev.stats[0] == pytest.approx(1.0)  # perfect detections score AP 1 (iscrowd 1 would give -1)
