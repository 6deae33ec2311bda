"""The prompt trials' ranking against hand-computed figures: rectangles in separate cells, so every match is exact."""

from __future__ import annotations

import json

import numpy as np

from samantics_dagster.core.dataset.schema import PROMPT_TRIALS, REVIEW_TASKS, REVIEWED_LABELS
from samantics_dagster.core.label.candidates import Selection
from samantics_dagster.core.label.masks import encode_masks
from samantics_dagster.core.label.queries import Query, QuerySet
from samantics_dagster.core.label.trials import trial_prompts
from samantics_dagster.core.quality.prompts import rank_prompts, ranking_table
from samantics_dagster.core.quality.report import QualitySettings

CAR = 3
QUERIES = QuerySet((Query(1, "person", "person"), Query(CAR, "car", "car")))


def _inst(cell: int, score: float) -> dict:
    mask = np.zeros((32, 128), bool)
    mask[4:28, cell * 32 + 4:cell * 32 + 28] = True
    x0 = cell * 32 + 4
    return {"category_id": CAR, "bbox_xyxy": [x0, 4, x0 + 24, 28], "score": score, "rle": encode_masks([mask])[0],
            "area": float(mask.sum())}


TRUTH = {"f1": [0, 1], "f2": [2]}  # frame -> cells holding a car
FOUND = {  # phrasing -> frame -> (cell, score); cell 3 of f1 holds no car
    "car": {"f1": [(0, 0.9), (1, 0.4), (3, 0.6)], "f2": [(2, 0.8)]},
    "automobile": {"f1": [(0, 0.7), (1, 0.7), (3, 0.2)], "f2": [(2, 0.7)]},
}


def _tables(found: dict[str, dict[str, list]], audit: frozenset[str]):
    trials = PROMPT_TRIALS.frame([
        {"dhash": f, "rel_path": f"s/c/{f}_0.jpg", "category_id": CAR, "prompt": p, "status": "done",
         "n_instances": len(c), "instances": json.dumps([_inst(*x) for x in c]), "labeler": f"sam3:{p}"}
        for p, frames in found.items() for f, c in frames.items()])
    reviewed = REVIEWED_LABELS.frame([
        {"dhash": f, "rel_path": f"s/c/{f}_0.jpg", "status": "reviewed", "task_id": k + 1,
         "instances": json.dumps([_inst(cell, 1.0) for cell in cells]), "n_instances": len(cells)}
        for k, (f, cells) in enumerate(TRUTH.items())])
    tasks = REVIEW_TASKS.frame([{"dhash": f, "task_id": k + 1, "audit": f in audit, "priority": 0.0}
                                for k, f in enumerate(TRUTH)])
    return {"c": trials}, {"c": reviewed}, {"c": tasks}


def _rank(found: dict, suggest_from: str = "all", audit: frozenset[str] = frozenset({"f1", "f2"})) -> list[dict]:
    trials, reviewed, tasks = _tables(found, audit)
    prompts, _ = trial_prompts(QUERIES, {"car": [p for p in found if p != "car"]})
    return rank_prompts(trials, {}, reviewed, tasks, prompts, Selection(name_to_id={}),
                        QualitySettings(suggest_from=suggest_from, resamples=50))


def test_the_phrasing_that_finds_every_car_first_with_hand_computed_figures():
    rows = _rank(FOUND)
    assert [(r["rank"], r["prompt"], r["current"]) for r in rows] == [(1, "automobile", False), (2, "car", True)]
    auto, car = rows
    # automobile: its three cars at 0.7, the empty cell at 0.2: F1 1 for thresholds 0.20-0.69, the middle 0.44
    assert (auto["f1"], auto["precision"], auto["recall"], auto["best_threshold"]) == (1.0, 1.0, 1.0, 0.44)
    # car: cars at 0.9, 0.4, 0.8 and the empty cell at 0.6: best below 0.4 (P 3/4, R 1: F1 6/7), middle of 0.10-0.39
    assert (car["f1"], car["precision"], car["recall"], car["best_threshold"]) == (0.8571, 0.75, 1.0, 0.24)
    assert auto["frames"] == car["frames"] == 2 and auto["reviewed"] == car["reviewed"] == 3
    assert car["candidates"] == auto["candidates"] == 4
    low, high = car["f1_interval"]
    assert low <= 0.8571 <= high
    table = ranking_table(rows)
    assert list(table["prompt"]) == ["automobile", "car"] and table["f1_interval"][1].startswith("[")


def test_phrasings_compare_on_the_frames_all_were_tried_on_and_on_the_audit_frames():
    partial = {**FOUND, "sedan": {"f1": [(0, 0.5)]}}  # tried on f1 only: every phrasing is scored on f1
    rows = {r["prompt"]: r for r in _rank(partial)}
    assert {r["frames"] for r in rows.values()} == {1}
    # car on f1: cars 0.9, 0.4, empty 0.6: best below 0.4, P 2/3 R 1 (F1 0.8); sedan one car of two: F1 2/3
    assert (rows["automobile"]["f1"], rows["car"]["f1"], rows["sedan"]["f1"]) == (1.0, 0.8, 0.6667)
    assert [rows[p]["rank"] for p in ("automobile", "car", "sedan")] == [1, 2, 3]

    audit_only = {r["prompt"]: r for r in _rank(FOUND, "audit", audit=frozenset({"f2"}))}
    assert audit_only["car"]["frames"] == 1 and audit_only["car"]["f1"] == 1.0  # f2: one car at 0.8, nothing else
    assert audit_only["car"]["rank"] == 1, "a tie keeps today's query first"
    none = _rank(FOUND, "audit", audit=frozenset())
    assert all(r["rank"] is None and r["f1"] is None and r["frames"] == 0 for r in none)


def test_trial_prompts_put_the_query_first_and_drop_repeats():
    prompts, warnings = trial_prompts(QUERIES, {"car": ["car", "auto", "auto", "x" * 40]}, count_tokens=len)
    assert [(p.text, p.reference) for p in prompts] == [("car", True), ("auto", False), ("x" * 40, False)]
    assert prompts[-1].sent == "x" * 30 and len(warnings) == 1 and "shortened" in warnings[0]
    assert all(p.category_id == CAR for p in prompts)
