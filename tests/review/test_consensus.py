"""Agreement between people, kappa and consensus against small cases computed by hand (10×10 frames)."""

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from samantics_dagster.core.label.masks import coco_rle, json_rle
from samantics_dagster.core.review.consensus import (
    Annotation,
    class_summary,
    consensus,
    frame_rows,
    majority,
    pair_score,
    person_summary,
    presence_kappa,
    reliability,
    rerequest,
    task_agreement,
)

CAR, PERSON, CAT = 3, 1, 8


def box(cid, r0, c0, r1, c1, score=1.0):
    """Rows r0..r1-1, columns c0..c1-1."""
    m = np.zeros((10, 10), dtype=np.uint8)
    m[r0:r1, c0:c1] = 1
    rle = json_rle(mask_utils.encode(np.asfortranarray(m)))
    return {"category_id": cid, "bbox_xyxy": [c0, r0, c1, r1], "score": score, "rle": rle, "area": float(m.sum())}


def pixels(inst):
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(mask_utils.decode(coco_rle(inst["rle"]))))}


def test_pair_score_iou_of_same_label_pairs_and_zero_for_mismatch_and_unpaired():
    a = [box(CAR, 0, 0, 4, 4), box(PERSON, 6, 6, 9, 9)]
    b = [box(CAR, 0, 0, 4, 5), box(CAT, 6, 6, 9, 9), box(CAR, 0, 7, 2, 10)]
    s = pair_score(a, b)
    # car/car IoU 16/20 = 0.8; person/cat same pixels but labels differ: 0; b's second car unpaired: 0
    assert s.agreement == pytest.approx(0.8 / 3)
    assert s.per_class() == pytest.approx({PERSON: 0.0, CAR: 0.8 / 2, CAT: 0.0})
    assert pair_score([], []).agreement == 1.0 and pair_score(a[:1], []).agreement == 0.0
    assert pair_score(a, a).agreement == 1.0


def test_task_agreement_is_the_mean_over_pairs_of_people():
    x = Annotation("x", 1, [box(CAR, 0, 0, 4, 4)])
    y = Annotation("y", 2, [box(CAR, 0, 0, 4, 5)])  # x~y 0.8
    z = Annotation("z", 3, [])  # z~x 0, z~y 0
    overall, per_class = task_agreement([x, y, z])
    assert overall == pytest.approx(0.8 / 3) and per_class == pytest.approx({CAR: 0.8 / 3})
    assert task_agreement([x]) == (None, {})


def test_presence_kappa_by_hand():
    # car in frames 1,2 by p and in frame 1 by q: po = 3/4, pe = .5*.25 + .5*.75 = .5, kappa = .5
    def ann(who, k, classes):
        return Annotation(who, k, [box(c, 0, 0, 2, 2) for c in classes])
    frames = [[ann("p", 1, [CAR]), ann("q", 2, [CAR])], [ann("p", 3, [CAR, PERSON]), ann("q", 4, [PERSON])],
              [ann("p", 5, [PERSON]), ann("q", 6, [PERSON])], [ann("p", 7, []), ann("q", 8, [])]]
    kappa = presence_kappa(frames, [CAR, PERSON, CAT])
    assert kappa[CAR] == {"kappa": 0.5, "pairs": 1, "frames": 4}
    assert kappa[PERSON]["kappa"] == 1.0  # same presence in all four frames, varying
    assert kappa[CAT]["kappa"] is None  # nobody ever drew a cat: undefined


def test_majority_keeps_pixels_most_people_drew_and_groups_most_people_saw():
    a = Annotation("a", 1, [box(CAR, 0, 0, 4, 4), box(PERSON, 6, 0, 9, 3), box(CAT, 7, 7, 9, 9)])
    b = Annotation("b", 2, [box(CAR, 0, 1, 4, 5), box(PERSON, 6, 0, 9, 3)])
    c = Annotation("c", 3, [box(PERSON, 1, 0, 5, 4)])  # the same object, called a person
    out = majority([a, b, c])
    by = {i["category_id"]: i for i in out}
    assert sorted(by) == [PERSON, CAR]  # the cat only one person drew is dropped
    # car: A r0-3 c0-3, B r0-3 c1-4, C r1-4 c0-3; pixels in two of three: r0-3 c1-3 plus r1-3 c0 = 15
    assert by[CAR]["area"] == 15 and by[CAR]["score"] == 1.0
    assert pixels(by[CAR]) == {(r, c) for r in range(4) for c in range(1, 4)} | {(r, 0) for r in range(1, 4)}
    # the person two of three drew identically is their instance, untouched
    assert by[PERSON] == a.instances[1]


def test_consensus_single_best_of_two_and_majority():
    x = Annotation("x", 5, [box(CAR, 0, 0, 4, 4, score=0.7)])
    y = Annotation("y", 4, [box(CAR, 0, 0, 4, 5)])
    assert consensus([x], {}).method == "single" and consensus([x], {}).instances == x.instances
    # two people: the more reliable one's annotation, whole; a tie goes to the earlier annotation (y, id 4)
    assert consensus([x, y], {"x": 0.9, "y": 0.6}).source is x
    assert consensus([x, y], {}).source is y
    z = Annotation("z", 6, [box(CAR, 0, 0, 4, 4, score=0.7)])
    three = consensus([x, y, z], {})
    assert three.method == "majority" and three.instances == x.instances  # x and z drew the same car
    trust = reliability([[x, y], [x, y, z]])
    assert trust["z"] == pytest.approx((1.0 + 0.8) / 2) and trust["x"] == pytest.approx((0.8 + 0.8 + 1.0) / 3)
    rows = {r["annotator"]: r for r in frame_rows([x, y, z], three)}
    assert rows["x"]["agreement_consensus"] == 1.0 and rows["y"]["agreement_consensus"] == 0.8
    assert rows["y"]["agreement_people"] == 0.8 and rows["x"]["agreement_people"] == pytest.approx(0.9)
    with pytest.raises(ValueError):
        consensus([], {})


def test_rerequest_asks_for_one_more_person_once_and_up_to_the_cap():
    assert rerequest(0.3, people=2, overlap=2, bound=0.5, max_people=3) == 3
    assert rerequest(0.3, people=2, overlap=3, bound=0.5, max_people=3) is None  # already waiting for one
    assert rerequest(0.6, people=2, overlap=2, bound=0.5, max_people=3) is None
    assert rerequest(0.3, people=3, overlap=3, bound=0.5, max_people=3) is None
    assert rerequest(None, people=1, overlap=1, bound=0.5, max_people=3) is None


def test_class_and_person_summaries_put_sam3_beside_the_people():
    x = Annotation("x", 1, [box(CAR, 0, 0, 4, 4)])
    y = Annotation("y", 2, [box(CAR, 0, 0, 4, 5)])
    z = Annotation("z", 3, [box(PERSON, 5, 5, 9, 9)])
    people = {10: [x, y], 11: [z]}
    agreed = {10: consensus([x, y], {}), 11: consensus([z], {})}
    assert agreed[10].source is x  # a tie in reliability: the earlier annotation
    sam = {10: [box(CAR, 0, 0, 4, 4, score=0.9)], 11: []}  # SAM3 found the car exactly, missed the person
    rows = {r["class"]: r for r in class_summary(people, {t: c.instances for t, c in agreed.items()}, sam,
                                                  {CAR: "car", PERSON: "person"})}
    assert rows["car"] == {"class": "car", "frames_several_people": 1, "people_agreement": 0.8, "presence_kappa": None,
                           "people_vs_consensus": 0.9, "sam3_vs_consensus_same_frames": 1.0,
                           "sam3_vs_consensus_all": 1.0, "frames_all": 1}
    assert rows["person"]["people_agreement"] is None and rows["person"]["sam3_vs_consensus_all"] == 0.0
    persons = {r["annotator"]: r for r in person_summary(people, agreed)}
    assert persons["x"] == {"annotator": "x", "frames": 1, "frames_with_others": 1, "agreement_with_others": 0.8,
                            "agreement_with_consensus": 1.0, "taken_whole": 1}
    assert persons["z"]["frames_with_others"] == 0 and persons["z"]["agreement_with_consensus"] is None
