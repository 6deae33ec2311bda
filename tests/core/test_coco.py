"""COCO build/merge/validate: what a trainer reads, checked through pycocotools itself."""

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from benchmarks.coco_reference import merge_coco
from samantics_dagster.core.dataset.atomic import write_json_atomic
from samantics_dagster.core.dataset.frame import CocoFrame
from samantics_dagster.core.dataset.spec import load_spec
from samantics_dagster.core.export import coco as coco_mod
from samantics_dagster.core.export.coco import annotation_id, build_coco, image_id, validate_coco
from samantics_dagster.demo.spec import DEMO_SPEC


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "coco-spec.json"
    path.write_text(json.dumps(DEMO_SPEC))
    return load_spec(path)


def _instance(category_id, box, w, h, score=0.9):
    mask = np.zeros((h, w), dtype=np.uint8)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    mask[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"category_id": category_id, "bbox_xyxy": list(box), "score": score,
            "rle": {"size": [h, w], "counts": rle["counts"].decode()}, "area": float(mask.sum())}


def _frames(dataset, n=6, w=64, h=48):
    frames = []
    for k in range(n):
        dhash = f"{k:016x}"
        (dataset / "images").mkdir(parents=True, exist_ok=True)
        (dataset / "images" / f"{dhash}.jpg").write_bytes(b"\xff\xd8stub")
        insts = [_instance(3, (2 + k, 3, 30 + k, 40), w, h), _instance(8, (40, 10, 63.9, 47.5), w, h, 0.6)]
        frames.append(CocoFrame(dhash=dhash, width=w, height=h, instances=insts, source_path=f"yt/cars/v{k % 2}_{k}.jpg",
                                video_id=f"v{k % 2}", category="cars"))
    return frames


def _quiet(fn):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def test_built_file_loads_in_pycocotools_and_scores_perfectly_against_itself(tmp_path, spec):
    data = build_coco(spec, _frames(tmp_path))
    path = tmp_path / "train.json"
    write_json_atomic(data, path)
    assert validate_coco(path, tmp_path, spec) == []
    gt = _quiet(lambda: COCO(str(path)))
    dt = _quiet(lambda: gt.loadRes([{k: a[k] for k in ("image_id", "category_id", "segmentation", "score")}
                                    for a in data["annotations"]]))
    ev = COCOeval(gt, dt, "segm")
    _quiet(lambda: (ev.evaluate(), ev.accumulate(), ev.summarize()))
    assert ev.stats[0] == pytest.approx(1.0)  # iscrowd 0 and matching masks: every object counts
    ann = data["annotations"][0]
    assert ann["iscrowd"] == 0 and isinstance(ann["segmentation"]["counts"], str)
    assert ann["area"] == mask_utils.area({"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()})
    cats = {c["id"]: c for c in data["categories"]}
    assert sorted(cats) == [1, 2, 3, 5, 8, 12] and cats[1]["keypoints"] and cats[1]["skeleton"]
    assert data["info"] == DEMO_SPEC["info"] and data["licenses"] == DEMO_SPEC["licenses"]
    image = data["images"][0]
    assert image["file_name"].startswith("images/") and {"video_id", "source_path", "width", "height"} <= set(image)


def test_boxes_are_xywh_and_clipped_to_the_image(tmp_path, spec):
    data = build_coco(spec, _frames(tmp_path, n=1))
    boxes = sorted(a["bbox"] for a in data["annotations"])
    assert boxes[0] == [2.0, 3.0, 28.0, 37.0]
    x, y, w, h = boxes[1]
    assert x + w <= 64 and y + h <= 48


def test_ids_are_stable_across_runs_and_order_and_shared_with_the_merge(tmp_path, spec):
    frames = _frames(tmp_path)
    a = build_coco(spec, frames)
    b = build_coco(spec, list(reversed(frames)))
    assert a == b
    assert {im["id"] for im in a["images"]} == {image_id(f.dhash) for f in frames}
    assert all(0 < im["id"] < 2 ** 53 for im in a["images"])
    train, val = build_coco(spec, frames[:4]), build_coco(spec, frames[4:])
    merged = merge_coco([train, val], spec)
    assert {im["id"] for im in merged["images"]} == {im["id"] for im in a["images"]}
    assert len({x["id"] for x in merged["annotations"]}) == len(merged["annotations"]) == 12
    assert annotation_id(frames[0].dhash, 0) in {x["id"] for x in merged["annotations"]}


def test_colliding_ids_probe_to_the_next_free_one():
    taken: set[int] = set()
    ids = coco_mod._unique([("b", 7), ("a", 7), ("c", 8)], taken)
    assert ids == {"a": 7, "b": 8, "c": 9} and taken == {7, 8, 9}


def test_merge_refuses_one_id_for_two_images(tmp_path, spec):
    one = build_coco(spec, _frames(tmp_path, n=1))
    other = json.loads(json.dumps(one))
    other["images"][0]["file_name"] = "images/ffffffffffffffff.jpg"
    with pytest.raises(ValueError, match="both"):
        merge_coco([one, other], spec)


@pytest.mark.parametrize("tamper, expected", [
    (lambda d: d["annotations"][0].update(bbox=[60, 0, 10, 10]), "bbox"),
    (lambda d: d["annotations"][0]["segmentation"].update(size=[10, 10]), "RLE size"),
    (lambda d: d["annotations"][0].update(category_id=4), "category_id 4"),
    (lambda d: d["annotations"][0].update(iscrowd=1), "iscrowd"),
    (lambda d: d["annotations"][1].update(id=d["annotations"][0]["id"]), "duplicate annotation ids"),
    (lambda d: d["images"][0].update(file_name="images/0000000000000bad.jpg"), "missing from the dataset"),
    (lambda d: d["annotations"][0].update(image_id=12345), "not in the file"),
    (lambda d: d["annotations"][0]["segmentation"].update(counts="!!!"), "RLE"),
])
def test_validation_names_each_problem(tmp_path, spec, tamper, expected):
    data = build_coco(spec, _frames(tmp_path, n=2))
    tamper(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    problems = validate_coco(path, tmp_path, spec)
    assert problems and any(expected in p for p in problems), problems


def test_validation_reports_unreadable_json(tmp_path, spec):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [')
    assert "cannot read as JSON" in validate_coco(path, None, spec)[0]
