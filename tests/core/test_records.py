"""labels.jsonl records: reading with clear errors, stats as the old stats.py counted, to-coco."""

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from samantics_dagster.core.dataset.atomic import write_json_atomic
from samantics_dagster.core.dataset.spec import load_spec
from samantics_dagster.core.export.coco import validate_coco
from samantics_dagster.core.tools import records
from samantics_dagster.demo.spec import DEMO_SPEC


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "coco-spec.json"
    path.write_text(json.dumps(DEMO_SPEC))
    return load_spec(path)


def _rle(h=40, w=50, box=(5, 5, 30, 25)):
    m = np.zeros((h, w), np.uint8)
    m[box[1]:box[3], box[0]:box[2]] = 1
    r = mask_utils.encode(np.asfortranarray(m))
    return {"size": [h, w], "counts": r["counts"].decode()}


def rec(name, ids, **extra):
    return {"image": f"images/{name}.jpg", "boxes": [[5, 5, 30, 25]] * len(ids), "category_ids": ids,
            "scores": [0.9] * len(ids), "masks": [_rle()] * len(ids), **extra}


def test_read_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text(json.dumps(rec("a", [3])) + "\n\n{oops\n")
    with pytest.raises(records.RecordError, match=r"labels.jsonl:3: not JSON"):
        records.read_jsonl(path)
    with pytest.raises(records.RecordError, match="no such file"):
        records.read_jsonl(tmp_path / "nope.jsonl")


def test_old_records_get_size_area_and_video_from_what_they_have():
    r = rec("x", [3], source_path="youtube/cars/abc-1_1500.jpg")
    assert records.size(r) == (50, 40)
    assert records.video(r) == "abc-1"
    assert records.instances(r)[0]["area"] == 25 * 20
    assert records.video({"image": "images/0123456789abcdef.jpg"}) is None


def test_stats_skip_empty_and_person_only_unless_asked(spec):
    recs = [rec("a", [3, 1]), rec("b", [1]), rec("c", []), rec("d", [8, 8], video_id="v9")]
    summary, classes = records.stats({"all": recs}, spec)
    assert summary.iloc[0][["images", "skipped", "instances"]].tolist() == [2, 2, 4]
    by_class = dict(zip(classes.category, classes.instances))
    assert by_class == {"person": 1, "car": 1, "cat": 2}
    summary, _ = records.stats({"all": recs}, spec, keep_empty=True, keep_only_person=True)
    assert summary.iloc[0]["images"] == 4


def test_to_coco_writes_a_file_pycocotools_loads(tmp_path, spec):
    recs = [rec("a", [3, 1]), rec("b", []), rec("c", [12], width=50, height=40)]
    with pytest.raises(records.RecordError, match="images/b.jpg"):
        records.to_coco(recs, spec, tmp_path)  # an empty record's size comes from its image file
    (tmp_path / "images").mkdir()
    from PIL import Image

    Image.new("RGB", (50, 40)).save(tmp_path / "images" / "b.jpg")
    coco = records.to_coco(recs, spec, tmp_path)
    out = tmp_path / "out.json"
    write_json_atomic(coco, out)
    assert validate_coco(out, None, spec) == []
    assert [im["file_name"] for im in coco["images"]].count("images/b.jpg") == 1
    assert len(coco["annotations"]) == 3


def test_to_coco_refuses_ids_outside_the_spec(spec):
    with pytest.raises(records.RecordError, match=r"\[77\]"):
        records.to_coco([rec("a", [77])], spec)
