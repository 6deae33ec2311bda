"""The review loop's pure logic: triage signals, polygon conversion both ways, agreement matching."""

import json

import numpy as np
import pandas as pd
import pytest
from pycocotools import mask as mask_utils

from samantics_dagster.core.label.masks import json_rle, mask_iou_matrix
from samantics_dagster.core.review.agreement import (
    ADDED,
    CLASS_CHANGED,
    DELETED,
    MATCHED,
    agreement_table,
    match_instances,
    per_class_summary,
)
from samantics_dagster.core.review.convert import from_regions, labeling_config, to_regions
from samantics_dagster.core.review.triage import RelationPair, TriageSettings, audit_draw, triage_frames

H, W = 60, 80
NAMES = {1: "person", 2: "passenger", 3: "car", 8: "cat"}
IDS = {v: k for k, v in NAMES.items()}


def inst(cid, score, x0, y0, x1, y1, hole=None, second=None):
    m = np.zeros((H, W), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    if hole:
        m[hole[1]:hole[3], hole[0]:hole[2]] = 0
    if second:
        m[second[1]:second[3], second[0]:second[2]] = 1
    rle = json_rle(mask_utils.encode(np.asfortranarray(m)))
    return {"category_id": cid, "bbox_xyxy": [x0, y0, x1, y1], "score": score, "rle": rle, "area": float(m.sum())}


def labels_frame(frames):
    return pd.DataFrame([{"dhash": d, "rel_path": f"s/c/{d}_1.jpg", "status": "done", "instances": json.dumps(i),
                          "labeler": "sam3:x", "width": W, "height": H, "n_instances": len(i)} for d, i in frames.items()])


def test_triage_finds_each_signal_and_ranks_by_them():
    car = inst(3, 0.95, 10, 10, 50, 40)
    frames = {
        "a" * 16: [inst(3, 0.9, 0, 0, 20, 20)],  # confident, common: nothing to look at
        "b" * 16: [inst(3, 0.55, 0, 0, 20, 20)],  # borderline
        "c" * 16: [car, inst(1, 0.9, 12, 12, 48, 38)],  # overlap person/car, and containment ~1: not near 0.4/0.6
        "d" * 16: [car, inst(2, 0.9, 0, 15, 20, 35)],  # passenger half inside the car: containment 0.5, near both
        "e" * 16: [inst(8, 0.9, 0, 0, 10, 10)],  # the only cat: rare
    }
    frames.update({f"{i:016x}": [inst(3, 0.9, 0, 0, 20, 20), inst(1, 0.9, 60, 40, 79, 59)] for i in range(4)})
    rel = RelationPair(frozenset({1, 2}), 3)
    out = {t.dhash: t for t in triage_frames(labels_frame(frames), TriageSettings(relations=(rel,), audit_share=0.0,
                                                                                rare_max_instances=1))}
    assert "a" * 16 not in out
    assert out["b" * 16].reasons == {"borderline": 1}
    assert out["c" * 16].reasons == {"overlap": 1}
    assert out["d" * 16].reasons["relation"] == 1 and "rare" in out["d" * 16].reasons  # one passenger
    assert out["e" * 16].reasons == {"rare": 1}
    ranked = triage_frames(labels_frame(frames), TriageSettings(relations=(rel,), audit_share=0.0, rare_max_instances=1))
    assert ranked[0].dhash == "d" * 16  # relation (2) + rare (0.5) outweighs one overlap or borderline score


def test_audit_share_is_seeded_stable_and_about_the_share():
    hashes = [f"{i:016x}" for i in range(2000)]
    frames = {h: [] for h in hashes}
    chosen = {t.dhash for t in triage_frames(labels_frame(frames), TriageSettings(audit_share=0.1, seed=3))}
    assert 150 < len(chosen) < 250
    # adding frames never changes the draw of the others
    more = {**frames, **{f"f{i:015x}": [] for i in range(500)}}
    again = {t.dhash for t in triage_frames(labels_frame(more), TriageSettings(audit_share=0.1, seed=3))}
    assert chosen == {h for h in again if h in frames}
    assert audit_draw(3, hashes[0]) != audit_draw(4, hashes[0])


def test_regions_round_trip_untouched_exact_and_multipart_as_one_instance():
    two_parts = inst(3, 0.8, 5, 5, 20, 20, second=(40, 30, 60, 50))
    person = inst(1, 0.7, 30, 5, 45, 25)
    regions = to_regions([two_parts, person], W, H, NAMES)
    assert [r["id"] for r in regions] == ["s0p0", "s0p1", "s1p0"]
    assert all(0 <= v <= 100 for r in regions for p in r["value"]["points"] for v in p)
    assert regions[0]["score"] == 0.8 and regions[2]["value"]["polygonlabels"] == ["person"]
    back = from_regions(regions, [two_parts, person], W, H, IDS)
    assert back == [two_parts, person]  # untouched: SAM3's exact masks and scores
    # an edited region (moved 2 px right) comes back rasterised from the polygon, scored 1.0
    moved = json.loads(json.dumps(regions))
    for r in moved[2:]:
        r["value"]["points"] = [[x + 2 / W * 100, y] for x, y in r["value"]["points"]]
    edited = from_regions(moved, [two_parts, person], W, H, IDS)
    assert edited[0] == two_parts and edited[1]["score"] == 1.0
    assert edited[1]["bbox_xyxy"][0] == pytest.approx(32, abs=1.01)
    assert 0.7 < mask_iou_matrix([person["rle"]], [edited[1]["rle"]])[0, 0] < 1.0
    with pytest.raises(ValueError, match="not a category of coco-spec.json"):
        from_regions([{**regions[0], "value": {**regions[0]["value"], "polygonlabels": ["dog"]}}], [two_parts], W, H, IDS)
    assert '<Label value="passenger"/>' in labeling_config(list(NAMES.values()))


def test_agreement_matches_by_iou_and_names_every_outcome():
    sam = [inst(3, 0.9, 0, 0, 20, 20), inst(1, 0.6, 30, 0, 50, 20), inst(8, 0.55, 60, 40, 79, 59)]
    human = [inst(3, 1.0, 1, 0, 21, 20), inst(2, 1.0, 30, 0, 50, 20), inst(3, 1.0, 0, 40, 20, 59)]
    recs = match_instances(sam, human)
    by = {(r["sam_index"], r["human_index"]): r for r in recs}
    assert by[(0, 0)]["outcome"] == MATCHED and 0.85 < by[(0, 0)]["iou"] < 1
    assert by[(1, 1)]["outcome"] == CLASS_CHANGED and by[(1, 1)]["iou"] == 1.0
    assert by[(2, None)]["outcome"] == DELETED and by[(None, 2)]["outcome"] == ADDED
    table = agreement_table([{"dhash": "x", "task_id": 1, **r} for r in recs])
    summary = per_class_summary(table, NAMES)
    assert summary["car"] == {"sam": 1, "human": 2, "kept": 1, "class_changed": 0, "deleted": 0, "added": 1,
                              "precision": 1.0, "recall": 0.5, "mean_iou": by[(0, 0)]["iou"]}
    assert summary["person"]["class_changed"] == 1 and summary["cat"]["deleted"] == 1
    assert summary["passenger"]["precision"] is None
