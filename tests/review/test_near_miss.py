"""Near misses: which candidates a task carries beside what passes, and what a person's tick makes of them."""

import pytest

from samantics_dagster.core.label.candidates import PASSENGER, Selection
from samantics_dagster.core.quality.matching import frame_match
from samantics_dagster.core.review.convert import (
    ACCEPT_NAME,
    CHOICES_KEY,
    NEAR_MISS_NAME,
    SLOTS,
    from_regions,
    labeling_config,
    to_regions,
)
from samantics_dagster.core.review.near_miss import (
    RECORDS_KEY,
    NearMissSettings,
    accepted,
    near_misses,
    regions,
    task_data,
)
from tests.review.test_review_core import NAMES, H, W, inst

SEL = Selection(default=0.5, thresholds={3: 0.6}, name_to_id={"person": 1, "passenger": 2, "car": 3})


def band(candidates, b=0.15, cap=5, selection=SEL):
    return near_misses(candidates, selection, NearMissSettings(band=b, max_per_frame=cap))


def test_the_band_below_each_class_threshold_closest_first_and_capped():
    cands = [
        inst(3, 0.70, 0, 0, 10, 10),  # passes car's 0.6
        inst(3, 0.55, 20, 0, 30, 10),  # 0.05 below car's 0.6: a near miss
        inst(3, 0.44, 40, 0, 50, 10),  # 0.16 below: outside the band
        inst(1, 0.40, 60, 0, 70, 10),  # 0.10 below person's 0.5 (the default): a near miss
        inst(1, 0.35, 0, 30, 10, 40),  # exactly 0.15 below: in the band (its lower edge is kept)
        inst(1, 0.50, 20, 30, 30, 40),  # at the threshold: fails the strict >, a near miss (gap 0)
    ]
    got = band(cands)
    assert [m.candidate for m in got] == [5, 1, 3, 4]  # gaps 0, 0.05, 0.10, 0.15
    assert [m.threshold for m in got] == [0.5, 0.6, 0.5, 0.5] and got[1].record == cands[1]
    assert [m.candidate for m in band(cands, cap=2)] == [5, 1]
    assert [m.candidate for m in band(cands, b=0.12)] == [5, 1, 3]
    assert band(cands, b=0.0) == [] and band(cands, cap=0) == [] and band([]) == []
    # a threshold raised past a kept instance makes it a near miss; lowered, a near miss passes
    assert 0 in [m.candidate for m in band(cands, selection=SEL.with_threshold(3, 0.75))]
    assert 1 not in [m.candidate for m in band(cands, selection=SEL.with_threshold(3, 0.5))]
    with pytest.raises(ValueError, match="near-miss labels"):
        NearMissSettings(max_per_frame=SLOTS + 1)


def test_duplicates_of_kept_masks_and_of_each_other_are_left_out_and_relations_name_them():
    car = inst(3, 0.9, 10, 10, 50, 40)
    cands = [
        car,
        inst(1, 0.45, 11, 10, 50, 40),  # the kept car's mask again, answered by "person": NMS drops it
        inst(3, 0.50, 60, 40, 79, 59),  # a car nobody kept
        inst(3, 0.49, 61, 40, 79, 59),  # the same car, lower: a duplicate of the near miss above
        inst(1, 0.45, 20, 15, 30, 30),  # a person inside the kept car: the passenger rule names it
    ]
    got = band(cands, selection=Selection(default=0.5, thresholds={3: 0.55}, name_to_id=SEL.name_to_id,
                                          relation_rules=(PASSENGER,)))
    assert sorted(m.candidate for m in got) == [2, 4]
    assert {m.candidate: m.category_id for m in got} == {2: 3, 4: 2}
    assert {m.candidate: m.record["category_id"] for m in got} == {2: 3, 4: 2}


def _sent(cands, kept):
    """A task as send_frames builds it: the kept regions, the near-miss regions, the data."""
    near = band(cands)
    data = task_data(near, NAMES)
    result = to_regions(kept, W, H, NAMES) + regions(near, W, H)
    return near, data, result


def test_a_tick_accepts_a_near_miss_exact_and_doing_nothing_rejects_it():
    kept = [inst(3, 0.9, 0, 0, 20, 20)]
    cands = kept + [inst(3, 0.55, 30, 0, 50, 20), inst(1, 0.42, 30, 30, 60, 55)]
    near, data, result = _sent(cands, kept)
    assert [m.candidate for m in near] == [1, 2]
    assert [c["alias"] for c in data[CHOICES_KEY]] == ["n0", "n1"] and data[CHOICES_KEY][0]["value"].startswith("near miss 1: car 0.55")
    assert {r["from_name"] for r in result} == {"label", NEAR_MISS_NAME}
    assert {r["value"]["polygonlabels"][0] for r in result if r["from_name"] == NEAR_MISS_NAME} == {"near miss 1", "near miss 2"}
    assert f'value="${CHOICES_KEY}"' in labeling_config(list(NAMES.values()))
    # the person's annotation holds every region of the prediction (the editor copies them all)
    untouched = [{k: r[k] for k in ("id", "from_name", "to_name", "type", "value")} for r in result]
    assert from_regions(untouched, kept, W, H, {v: k for k, v in NAMES.items()}) == kept  # near misses are not "label"
    assert accepted(untouched, data[RECORDS_KEY], cands, W, H) == []  # nothing ticked: both rejected
    tick = {"id": "Xy12ab", "type": "choices", "value": {"choices": ["n1"]}, "origin": "manual",
            "to_name": "image", "from_name": ACCEPT_NAME}  # what the editor saves for one click on box 2
    assert accepted(untouched + [tick], data[RECORDS_KEY], cands, W, H) == [cands[2]]
    # without the candidates at hand it is read from its polygon, with the person's score
    (poly,) = accepted(untouched + [tick], data[RECORDS_KEY], None, W, H)
    assert poly["category_id"] == 1 and poly["score"] == 1.0 and abs(poly["area"] - cands[2]["area"]) < 0.2 * cands[2]["area"]
    # edited, it is the person's polygon; deleted, it is not kept even if ticked
    moved = [{**r, "value": {**r["value"], "points": [[x + 5, y] for x, y in r["value"]["points"]]}}
             if r["id"].startswith("n1") else r for r in untouched]
    (edited,) = accepted(moved + [tick], data[RECORDS_KEY], cands, W, H)
    assert edited["score"] == 1.0 and edited["category_id"] == 1 and edited["bbox_xyxy"][0] > cands[2]["bbox_xyxy"][0]
    gone = [r for r in untouched if not r["id"].startswith("n1")]
    assert accepted(gone + [tick], data[RECORDS_KEY], cands, W, H) == []
    # a frame relabelled since (another candidate at that index): the polygon, not a wrong mask
    other = cands[:2] + [inst(1, 0.3, 0, 30, 10, 40)]
    assert accepted(untouched + [tick], data[RECORDS_KEY], other, W, H)[0]["score"] == 1.0


def test_an_accepted_near_miss_is_a_true_positive_below_the_threshold():
    """The recall evidence near misses exist for: label quality counts the candidate as found."""
    kept = [inst(3, 0.9, 0, 0, 20, 20)]
    cands = kept + [inst(3, 0.55, 30, 0, 50, 20), inst(1, 0.42, 30, 30, 60, 55)]
    near, data, result = _sent(cands, kept)
    tick = {"id": "a", "type": "choices", "value": {"choices": ["n0"]}, "from_name": ACCEPT_NAME, "to_name": "image"}
    reviewed = kept + accepted(result + [tick], data[RECORDS_KEY], cands, W, H)
    scored = {(s.category_id, round(s.score, 2)): s for s in frame_match("d", True, cands, reviewed, SEL).candidates}
    assert scored[(3, 0.55)].matched and scored[(3, 0.55)].iou == 1.0  # below car's 0.6, found
    assert not scored[(1, 0.42)].matched  # left alone: a false positive at its score
    assert scored[(3, 0.9)].matched
