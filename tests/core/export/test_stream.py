"""Streamed COCO writing and merging give the bytes of the in-memory build_coco / merge_coco, and the
streamed check of the merged file finds what merging can break."""

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from benchmarks.coco_reference import merge_coco
from samantics_dagster.core.dataset.atomic import write_json_atomic
from samantics_dagster.core.dataset.frame import CocoFrame
from samantics_dagster.core.dataset.spec import load_spec
from samantics_dagster.core.export.coco import build_coco
from samantics_dagster.core.export.stream import merge_coco_files, write_coco_frames
from samantics_dagster.core.export.stream_check import scan_merged_coco
from samantics_dagster.demo.spec import DEMO_SPEC


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "coco-spec.json"
    path.write_text(json.dumps(DEMO_SPEC))
    return load_spec(path)


def _instance(rng, category_id, w, h):
    mask = np.zeros((h, w), dtype=np.uint8)
    x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
    x1, y1 = x0 + int(rng.integers(2, w - x0)), y0 + int(rng.integers(2, h - y0))
    mask[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"category_id": category_id, "bbox_xyxy": [x0 + 0.25, y0, x1 - 0.5, y1 + 0.125],
            "score": float(rng.random()), "rle": {"size": [h, w], "counts": rle["counts"].decode()},
            "area": float(mask.sum())}


def _frames(seed, n, category, start=0):
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(start, start + n):
        w, h = int(rng.integers(32, 80)), int(rng.integers(24, 60))
        insts = [_instance(rng, int(rng.choice([1, 3, 8])), w, h) for _ in range(int(rng.integers(0, 4)))]
        frames.append(CocoFrame(dhash=f"{k * 7919:016x}", width=w, height=h, instances=insts,
                                source_path=f"yt/{category}/vidé{k % 3}_{k}.jpg", video_id=f"v{k % 3}" if k % 4 else None,
                                category=category, extra={"note": "ü"} if k % 5 == 0 else {}))
    return frames


def test_per_category_stream_is_byte_identical_to_build_coco(tmp_path, spec):
    frames = _frames(0, 40, "cars")
    write_json_atomic(build_coco(spec, frames), tmp_path / "old.json")
    assert write_coco_frames(tmp_path / "new.json", spec, list(reversed(frames))) == (
        40, sum(len(f.instances) for f in frames))
    assert (tmp_path / "new.json").read_bytes() == (tmp_path / "old.json").read_bytes()
    write_json_atomic(build_coco(spec, []), tmp_path / "empty-old.json")
    write_coco_frames(tmp_path / "empty-new.json", spec, [])
    assert (tmp_path / "empty-new.json").read_bytes() == (tmp_path / "empty-old.json").read_bytes()


def test_merge_stream_is_byte_identical_to_merge_coco(tmp_path, spec):
    # three categories with interleaved ids, one image (and its annotations) shared by two files, one empty file
    parts = [_frames(1, 30, "cars"), _frames(2, 25, "dogs", start=30), _frames(3, 1, "dogs", start=5), []]
    paths = []
    for i, frames in enumerate(parts):
        paths.append(tmp_path / f"part{i}.json")
        write_coco_frames(paths[-1], spec, frames)
    dicts = [json.loads(p.read_text()) for p in paths]
    dicts[2]["images"][0]["category"] = "cars"  # the shared frame as the first file has it
    paths[2].write_text(json.dumps(dicts[2], separators=(",", ":")))
    write_json_atomic(merge_coco(dicts, spec), tmp_path / "old.json")
    result = merge_coco_files(paths, spec, tmp_path / "new.json")
    assert (tmp_path / "new.json").read_bytes() == (tmp_path / "old.json").read_bytes()
    merged = json.loads((tmp_path / "old.json").read_text())
    assert (result.images, result.annotations) == (len(merged["images"]), len(merged["annotations"]))
    assert result.shared_images == 1 and [p.images for p in result.parts] == [30, 25, 1, 0]
    scan = scan_merged_coco(tmp_path / "new.json", spec, (result.images, result.annotations))
    assert scan.problems == [] and scan.video_ids == {"v0", "v1", "v2"}


def test_merge_refuses_one_image_id_with_two_files_and_keeps_the_old_output(tmp_path, spec):
    one = build_coco(spec, _frames(4, 2, "cars"))
    other = json.loads(json.dumps(one))
    other["images"][0]["file_name"] = "images/ffffffffffffffff.jpg"
    (tmp_path / "a.json").write_text(json.dumps(one))
    (tmp_path / "b.json").write_text(json.dumps(other))
    (tmp_path / "out.json").write_text("previous")
    with pytest.raises(ValueError, match="both"):
        merge_coco_files([tmp_path / "a.json", tmp_path / "b.json"], spec, tmp_path / "out.json")
    assert (tmp_path / "out.json").read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == [
        "a.json", "b.json", "coco-spec.json", "out.json"]


def test_merge_refuses_one_annotation_id_on_two_images(tmp_path, spec):
    a, b = build_coco(spec, _frames(5, 3, "cars")), build_coco(spec, _frames(6, 3, "dogs", start=10))
    a["annotations"] = [x for x in a["annotations"] if x["image_id"] == a["images"][0]["id"]][:1]
    b["annotations"] = [x for x in b["annotations"] if x["image_id"] == b["images"][0]["id"]][:1]
    assert a["annotations"] and b["annotations"]
    b["annotations"][0]["id"] = a["annotations"][0]["id"]
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    with pytest.raises(ValueError, match="belongs to images"):
        merge_coco([a, b], spec)
    with pytest.raises(ValueError, match="belongs to images"):
        merge_coco_files([tmp_path / "a.json", tmp_path / "b.json"], spec, tmp_path / "out.json")


@pytest.mark.parametrize("tamper, expected", [
    (lambda d: d["annotations"][0].update(bbox=[70, 0, 90, 10]), "bbox"),
    (lambda d: d["annotations"][0]["segmentation"].update(size=[10, 10]), "RLE"),
    (lambda d: d["annotations"][0].update(category_id=4), "category_id 4"),
    (lambda d: d["annotations"][0].update(iscrowd=1), "iscrowd"),
    (lambda d: d["annotations"][1].update(id=d["annotations"][0]["id"]), "duplicate annotation ids"),
    (lambda d: d["images"][1].update(id=d["images"][0]["id"]), "appears twice"),
    (lambda d: d["annotations"][0].update(image_id=12345), "not in the file"),
    (lambda d: d["annotations"].pop(), "per-category files hold"),
])
def test_streamed_check_names_each_problem(tmp_path, spec, tamper, expected):
    frames = [f for f in _frames(7, 12, "cars") if f.instances]
    data = build_coco(spec, frames)
    counts = (len(data["images"]), len(data["annotations"]))
    tamper(data)
    (tmp_path / "train.json").write_text(json.dumps(data))
    problems = scan_merged_coco(tmp_path / "train.json", spec, counts).problems
    assert any(expected in p for p in problems), problems


def test_streamed_check_reports_a_truncated_file(tmp_path, spec):
    write_coco_frames(tmp_path / "train.json", spec, _frames(8, 5, "cars"))
    data = (tmp_path / "train.json").read_bytes()
    (tmp_path / "train.json").write_bytes(data[: len(data) // 2])
    assert any("cannot be read" in p for p in scan_merged_coco(tmp_path / "train.json", spec).problems)


def test_merge_by_byte_index_copies_the_bytes_merge_coco_writes(tmp_path, spec):
    from samantics_dagster.core.export.byte_index import index_path, load_index

    parts = [_frames(11, 40, "cars"), _frames(12, 35, "dogs", start=40), _frames(13, 3, "dogs", start=10), []]
    paths = []
    for i, frames in enumerate(parts):
        paths.append(tmp_path / f"part{i}.json")
        write_coco_frames(paths[-1], spec, frames)
    assert all(load_index(p) is not None for p in paths)  # every part indexed: the copying path runs
    write_json_atomic(merge_coco([json.loads(p.read_text()) for p in paths], spec), tmp_path / "old.json")
    result = merge_coco_files(paths, spec, tmp_path / "new.json")
    assert (tmp_path / "new.json").read_bytes() == (tmp_path / "old.json").read_bytes()
    assert result.shared_images == 3 and [p.images for p in result.parts] == [40, 35, 3, 0]

    # a part rewritten behind the index (another tool, an old writer) is parsed instead, same bytes
    data = json.loads(paths[1].read_text())
    paths[1].write_text(json.dumps(data, separators=(",", ":")) + " ")
    assert load_index(paths[1]) is None and index_path(paths[1]).exists()
    merge_coco_files(paths, spec, tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == (tmp_path / "old.json").read_bytes()


def test_merge_by_byte_index_refuses_one_image_id_with_two_files(tmp_path, spec):
    frames = _frames(14, 2, "cars")
    write_coco_frames(tmp_path / "a.json", spec, frames)
    other = [CocoFrame(**{**vars(f), "path": "elsewhere/x.jpg"}) if i == 0 else f for i, f in enumerate(frames)]
    write_coco_frames(tmp_path / "b.json", spec, other)
    with pytest.raises(ValueError, match="both"):
        merge_coco_files([tmp_path / "a.json", tmp_path / "b.json"], spec, tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()
