"""Thresholds in sam-queries.yaml and what passes from the candidates (``core.label.candidates``)."""

from __future__ import annotations

import numpy as np
import pytest

from samantics_dagster.core.dataset.spec import SpecError, load_spec
from samantics_dagster.core.label.candidates import Selection, passes, select
from samantics_dagster.core.label.masks import Instance, encode_masks
from samantics_dagster.core.label.queries import load_alternatives, load_queries, load_selection, set_thresholds
from samantics_dagster.demo.spec import DEMO_QUERIES, write_demo_spec


@pytest.fixture
def spec(tmp_path):
    write_demo_spec(tmp_path)
    return load_spec(tmp_path / "coco-spec.json")


def _write(tmp_path, text: str):
    path = tmp_path / "sam-queries.yaml"
    path.write_text(text)
    return path


def test_thresholds_and_alternatives_are_read_beside_the_queries(tmp_path, spec):
    path = _write(tmp_path, "_threshold: 0.4\n_nms_iou: 1\nvehicle:\n"
                            "  car: {query: automobile, threshold: 0.45, alternatives: [car, 'passenger car']}\n"
                            "  bicycle: {threshold: 0.3}\nkitchen:\n  _all: coffee cup\n  cup: {threshold: 0.6}\n")
    selection = load_selection(spec, path, derived=["passenger"])
    assert selection.default == 0.4 and selection.nms_iou is None
    assert selection.thresholds == {3: 0.45, 5: 0.3, 12: 0.6}
    texts = {q.category_name: q.text for q in load_queries(spec, path, derived=["passenger"]).queries}
    assert texts["car"] == "automobile" and texts["bicycle"] == "bicycle" and texts["cup"] == "coffee cup"
    assert load_alternatives(spec, path, derived=["passenger"]) == {"car": ["car", "passenger car"]}


@pytest.mark.parametrize(("text", "where"), [
    ("vehicle:\n  car: {threshold: 1.5}\n", "vehicle.car.threshold"),
    ("vehicle:\n  car: {treshold: 0.5}\n", "vehicle.car"),
    ("_threshold: high\n", "_threshold"),
    ("vehicle:\n  car: {alternatives: automobile}\n", "vehicle.car.alternatives"),
])
def test_a_bad_threshold_entry_names_the_file_and_the_entry(tmp_path, spec, text, where):
    path = _write(tmp_path, text)
    with pytest.raises(SpecError, match=rf"sam-queries.yaml.*{where}"):
        load_selection(spec, path, derived=["passenger"])


def test_set_thresholds_keeps_queries_and_changes_only_what_is_asked(tmp_path, spec):
    text = set_thresholds(DEMO_QUERIES, spec, {"car": 0.42, "cup": 0.3, "person": 0.61})
    path = _write(tmp_path, text)
    (tmp_path / "orig").mkdir()
    before = {q.category_name: q.text for q in load_queries(spec, _write(tmp_path / "orig", DEMO_QUERIES)).queries}
    assert {q.category_name: q.text for q in load_queries(spec, path).queries} == before
    assert load_selection(spec, path).thresholds == {3: 0.42, 12: 0.3, 1: 0.61}


def _inst(cid: int, score: float, box: tuple[int, int, int, int]) -> Instance:
    mask = np.zeros((40, 40), bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return Instance(cid, score, (x0, y0, x1, y1), encode_masks([mask])[0], float(mask.sum()))


def test_select_is_threshold_then_nms_then_cap_then_relations():
    names = {"person": 1, "passenger": 2, "car": 3, "truck": 4}
    car, truck = _inst(3, 0.9, (0, 0, 30, 30)), _inst(4, 0.8, (0, 0, 30, 31))  # one vehicle, two prompts
    person, weak = _inst(1, 0.6, (5, 5, 15, 15)), _inst(1, 0.35, (32, 32, 38, 38))
    base = Selection(name_to_id=names)
    assert select([car, truck, person, weak], base) == [car, Instance(2, 0.6, person.bbox_xyxy, person.rle, person.area)]
    lower = base.with_threshold(1, 0.3)
    assert [i.category_id for i in select([car, truck, person, weak], lower)] == [3, 2, 1]
    assert [i.score for i in select([car, truck, person, weak], Selection(nms_iou=None, relation_rules=()))] == [0.9, 0.8, 0.6]
    assert len(select([car, truck, person, weak], Selection(max_detections=1))) == 1


def test_passes_compares_in_float32_as_the_device_did():
    score = float(np.float32(0.3))  # 0.30000001192...: above 0.3 in float64, equal to it in float32
    assert score > 0.3 and not passes(score, 0.3)
    assert passes(float(np.nextafter(np.float32(0.3), np.float32(1))), 0.3)


def test_a_mask_of_the_wrong_size_passes_by_score_instead_of_aborting_pycocotools():
    car, person = _inst(3, 0.9, (0, 0, 30, 30)), _inst(1, 0.6, (5, 5, 15, 15))
    broken = Instance(3, 0.7, (0, 0, 5, 5), {"size": [7, 7], "counts": car.rle["counts"]}, 9.0)
    names = {"person": 1, "passenger": 2, "car": 3}
    out = select([car, broken, person], Selection(name_to_id=names))
    assert [(i.category_id, i.score) for i in out] == [(3, 0.9), (3, 0.7), (2, 0.6)]
