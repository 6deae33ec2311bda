"""Label quality against hand-computed small cases: matching, the PR curve, the suggestion, the intervals."""

from __future__ import annotations

import numpy as np
import pytest

from samantics_dagster.core.label.candidates import Selection
from samantics_dagster.core.label.masks import Instance, encode_masks
from samantics_dagster.core.quality.curves import class_curve, threshold_grid
from samantics_dagster.core.quality.matching import FrameMatch, Scored, evaluation_candidates, frame_match, match_frame
from samantics_dagster.core.quality.report import QualitySettings, quality_report


def _mask(x0, y0, x1, y1, size=(40, 60)):
    m = np.zeros(size, bool)
    m[y0:y1, x0:x1] = True
    return m


def _rec(cid, score, box):
    rle = encode_masks([_mask(*box)])[0]
    return {"category_id": cid, "bbox_xyxy": [float(v) for v in box], "score": score, "rle": rle,
            "area": float(_mask(*box).sum())}


def _inst(cid, score, box):
    return Instance.from_record(_rec(cid, score, box))


def test_greedy_matching_in_score_order_gives_each_object_to_one_candidate():
    truth = [_rec(1, 1.0, (0, 0, 10, 10)), _rec(1, 1.0, (20, 0, 30, 10))]
    cands = [_inst(1, 0.5, (0, 0, 10, 10)), _inst(1, 0.9, (0, 0, 10, 9)),  # two on the first object
             _inst(1, 0.7, (20, 0, 30, 5)), _inst(2, 0.8, (20, 0, 30, 10))]  # IoU 0.5 exactly; another class
    got = match_frame(cands, truth)
    assert [(s.category_id, s.score, s.matched) for s in got] == [(1, 0.9, True), (1, 0.7, True), (1, 0.5, False),
                                                                   (2, 0.8, False)]
    assert got[0].iou == pytest.approx(0.9) and got[1].iou == pytest.approx(0.5)


def _frames() -> list[FrameMatch]:
    a = (Scored(1, 0.9, True, 1.0), Scored(1, 0.6, False, 0.0), Scored(1, 0.4, True, 1.0))
    b = (Scored(1, 0.7, True, 0.8), Scored(1, 0.3, False, 0.0))
    return [FrameMatch("a", True, a, {1: 2}), FrameMatch("b", True, b, {1: 1})]


def test_the_pr_curve_and_the_suggestion_match_the_hand_computed_figures():
    grid = threshold_grid(0.1, [0.5])
    curve = class_curve(_frames(), 1, grid, resamples=0)
    at = {t: curve.at(t) for t in (0.2, 0.35, 0.5, 0.65, 0.8)}
    assert at[0.2] == {"precision": 0.6, "recall": 1.0, "f1": 0.75, "mean_iou": pytest.approx(0.9333, abs=1e-4)}
    assert (at[0.35]["precision"], at[0.35]["recall"], at[0.35]["f1"]) == (0.75, 1.0, 0.8571)
    assert (at[0.5]["precision"], at[0.5]["recall"], at[0.5]["f1"]) == (0.6667, 0.6667, 0.6667)
    assert at[0.65] == {"precision": 1.0, "recall": 0.6667, "f1": 0.8, "mean_iou": 0.9}
    assert (at[0.8]["precision"], at[0.8]["recall"]) == (1.0, 0.3333)
    # the best F1 (0.857) holds for thresholds 0.30 (0.3 itself is not above 0.30) to 0.39: its middle
    assert curve.suggested == pytest.approx(0.34) and (curve.reviewed, curve.candidates, curve.frames) == (3, 5, 2)
    # a precision target: the lowest threshold with no false positive left is 0.60
    assert class_curve(_frames(), 1, grid, precision_target=0.9, resamples=0).suggested == pytest.approx(0.6)


def test_bootstrap_intervals_resample_frames_and_hold_the_estimate():
    frames = _frames() * 10
    curve = class_curve([FrameMatch(f"{k}", True, f.candidates, f.reviewed) for k, f in enumerate(frames)], 1,
                        threshold_grid(0.1), resamples=300, seed=1)
    for name, value in (("f1", curve.at(curve.suggested)["f1"]), ("threshold", curve.suggested)):
        assert curve.intervals[name].low <= value <= curve.intervals[name].high
    identical = [FrameMatch(f"{k}", True, _frames()[0].candidates, {1: 2}) for k in range(5)]
    flat = class_curve(identical, 1, threshold_grid(0.1), resamples=50)
    assert flat.intervals["f1"].low == flat.intervals["f1"].high  # every resample is the same frames


def test_a_person_candidate_inside_a_passing_car_is_scored_as_a_passenger():
    names = {"person": 1, "passenger": 2, "car": 3}
    selection = Selection(name_to_id=names)
    car, person = _rec(3, 0.9, (0, 0, 40, 30)), _rec(1, 0.4, (5, 5, 15, 20))  # person below its threshold
    reviewed = [_rec(3, 1.0, (0, 0, 40, 30)), _rec(2, 1.0, (5, 5, 15, 20))]
    frame = frame_match("f", False, [car, person], reviewed, selection)
    assert sorted((s.category_id, s.matched) for s in frame.candidates) == [(2, True), (3, True)]
    assert frame.reviewed == {3: 1, 2: 1}
    # within-class duplicates go once (the higher one passes whenever the lower does)
    dup = [Instance.from_record(_rec(3, 0.9, (0, 0, 40, 30))), Instance.from_record(_rec(3, 0.8, (0, 0, 40, 29)))]
    assert [i.score for i in evaluation_candidates(dup, selection)] == [0.9]


def test_the_report_splits_audit_from_triaged_and_suggests_from_audit_only():
    audit = _frames() * 5
    triaged = [FrameMatch(f"t{k}", False, (Scored(1, 0.95, True, 1.0), Scored(1, 0.8, False, 0.0)), {1: 1})
               for k in range(10)]
    frames = [FrameMatch(f"a{k}", f.audit, f.candidates, f.reviewed) for k, f in enumerate(audit)] + triaged
    report = quality_report(frames, Selection(), {1: "car"}, QualitySettings(resamples=0, min_reviewed=5))
    (car,) = report.classes
    assert report.frames == {"audit": 10, "triaged": 10, "all": 20}
    assert car.suggested == pytest.approx(0.34) and car.curves["triaged"].suggested == pytest.approx(0.87)  # middle of 0.80..0.94
    none = quality_report(frames, Selection(), {1: "car"}, QualitySettings(resamples=0, min_reviewed=100))
    assert none.classes[0].suggested is None and "15 reviewed" in none.classes[0].why_none
