"""Prompt trials ranked: per class, each phrasing's F1 at its best threshold against the reviewed labels.

The phrasings come from ``sam-queries.yaml`` (the class's query, the reference, and its ``alternatives``), their
candidates from the ``prompt_trials`` table (``core.label.trials``). Each phrasing is scored the way
``label_quality`` scores the class today (``core.quality.report``): its candidates take the place of the class's
own in the frame's ``sam3_labels`` candidates (the other classes' stay, so the relation rules see the same
containers), matched against the reviewed labels (``core.quality.matching``), and the PR curve over every
threshold gives the F1-best threshold with bootstrap intervals (``core.quality.curves``).

A class's phrasings are compared on the same frames (those every one of them was tried on) and, with one seed,
the same bootstrap resamples. They are ranked on the ``suggest_from`` frames (the audit frames by default):
triaged frames were chosen because today's query did badly on them, which would favour any other phrasing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence

import pandas as pd

from samantics_dagster.core.dataset.schema import Column, LabelStatus, ReviewStatus
from samantics_dagster.core.label.candidates import Selection
from samantics_dagster.core.label.trials import TrialPrompt
from samantics_dagster.core.quality.curves import class_curve, threshold_grid
from samantics_dagster.core.quality.matching import FrameMatch, frame_match
from samantics_dagster.core.quality.report import QualitySettings

RANKING_COLUMNS: tuple[Column, ...] = (
    Column("class", "string", "the class whose phrasings were tried"),
    Column("rank", "Int64", "1: the highest F1 at its best threshold among the class's phrasings (ties: today's query first)"),
    Column("prompt", "string", "the phrasing"),
    Column("current", "bool", "the class's query today: the reference"),
    Column("frames", "int64", "reviewed frames behind the figures (the same for every phrasing of the class)"),
    Column("reviewed", "int64", "reviewed instances of the class on those frames"),
    Column("candidates", "int64", "the phrasing's candidates of the class on those frames, at the floor"),
    Column("best_threshold", "Float64", "the threshold with the best F1 (the middle of a plateau)"),
    Column("f1", "Float64", "F1 at the best threshold"),
    Column("precision", "Float64", "precision at the best threshold"),
    Column("recall", "Float64", "recall at the best threshold"),
    Column("f1_interval", "string", "95% bootstrap interval of that F1 (frames resampled)"),
    Column("threshold_interval", "string", "95% bootstrap interval of the best threshold"),
)


def _done(table: pd.DataFrame | None) -> pd.DataFrame:
    if table is None or not len(table):
        return pd.DataFrame(columns=["dhash", "instances"])
    return table[table["status"] == LabelStatus.DONE]


def trial_matches(trials: Mapping[str, pd.DataFrame], labels: Mapping[str, pd.DataFrame],
                  reviewed: Mapping[str, pd.DataFrame], tasks: Mapping[str, pd.DataFrame],
                  prompts: Sequence[TrialPrompt], selection: Selection,
                  iou_min: float) -> dict[tuple[int, str], list[FrameMatch]]:
    """(class id, phrasing) -> its reviewed frames matched, over every category; per class only the frames
    every phrasing of the class has a done row on."""
    by_class: dict[int, list[TrialPrompt]] = defaultdict(list)
    for p in prompts:
        by_class[p.category_id].append(p)
    out: dict[tuple[int, str], list[FrameMatch]] = {(p.category_id, p.text): [] for p in prompts}
    for category, trial in sorted(trials.items()):
        review = reviewed.get(category)
        if review is None or not len(review):
            continue
        review = review[review["status"] == ReviewStatus.REVIEWED]
        truth = dict(zip(review["dhash"], review["instances"]))
        sam = _done(labels.get(category))
        others_of = dict(zip(sam["dhash"], sam["instances"]))
        task = tasks.get(category)
        audit = set(task.loc[task["audit"].astype(bool), "dhash"]) if task is not None and len(task) else set()
        done = _done(trial)
        found: dict[tuple[int, str], dict[str, str]] = defaultdict(dict)
        for dhash, cid, prompt, blob in zip(done["dhash"], done["category_id"], done["prompt"], done["instances"]):
            found[(int(cid), str(prompt))][dhash] = blob
        for cid, mine in by_class.items():
            common = set(truth)
            for p in mine:
                common &= found[(cid, p.text)].keys()
            for dhash in sorted(common):
                others = [r for r in json.loads(others_of.get(dhash, "[]")) if int(r["category_id"]) != cid]
                reviewed_instances = json.loads(truth[dhash])
                for p in mine:
                    candidates = others + json.loads(found[(cid, p.text)][dhash])
                    out[(cid, p.text)].append(frame_match(dhash, dhash in audit, candidates, reviewed_instances,
                                                          selection, iou_min))
    return out


def rank_prompts(trials: Mapping[str, pd.DataFrame], labels: Mapping[str, pd.DataFrame],
                 reviewed: Mapping[str, pd.DataFrame], tasks: Mapping[str, pd.DataFrame],
                 prompts: Sequence[TrialPrompt], selection: Selection, settings: QualitySettings) -> list[dict]:
    """One row per phrasing (``RANKING_COLUMNS``), each class's phrasings in rank order; a phrasing with no
    frames in the ``suggest_from`` group has no rank and no figures."""
    matches = trial_matches(trials, labels, reviewed, tasks, prompts, selection, settings.iou_min)
    rows_by_class: dict[int, list[dict]] = defaultdict(list)
    for p in prompts:
        frames = [f for f in matches[(p.category_id, p.text)]
                  if settings.suggest_from == "all" or f.audit == (settings.suggest_from == "audit")]
        row: dict = {"class": p.category_name, "rank": None, "prompt": p.text, "current": p.reference,
                     "frames": len(frames), "reviewed": 0, "candidates": 0, "best_threshold": None, "f1": None,
                     "precision": None, "recall": None, "f1_interval": None, "threshold_interval": None}
        if frames:
            grid = threshold_grid(settings.floor, [selection.threshold(p.category_id)])
            curve = class_curve(frames, p.category_id, grid, resamples=settings.resamples, seed=settings.seed)
            at = curve.at(curve.suggested)
            row.update(reviewed=curve.reviewed, candidates=curve.candidates, best_threshold=round(curve.suggested, 4),
                       f1=at["f1"], precision=at["precision"], recall=at["recall"],
                       f1_interval=curve.intervals["f1"].as_list() if "f1" in curve.intervals else None,
                       threshold_interval=(curve.intervals["threshold"].as_list()
                                           if "threshold" in curve.intervals else None))
        rows_by_class[p.category_id].append(row)
    out: list[dict] = []
    for cid in sorted(rows_by_class):
        rows = rows_by_class[cid]
        scored = sorted((r for r in rows if r["f1"] is not None), key=lambda r: (-r["f1"], not r["current"], r["prompt"]))
        for rank, r in enumerate(scored, 1):
            r["rank"] = rank
        out += scored + [r for r in rows if r["f1"] is None]
    return out


def ranking_table(rows: Sequence[dict]) -> pd.DataFrame:
    """The ranking as a frame with ``RANKING_COLUMNS`` (intervals as ``[low, high]`` text)."""
    df = pd.DataFrame([{**r, "f1_interval": _interval(r.get("f1_interval")),
                        "threshold_interval": _interval(r.get("threshold_interval"))} for r in rows],
                      columns=[c.name for c in RANKING_COLUMNS])
    for c in RANKING_COLUMNS:
        df[c.name] = pd.array(list(df[c.name]), dtype=c.dtype)
    return df


def _interval(value: Sequence[float] | None) -> str | None:
    return None if value is None else f"[{value[0]:.2f}, {value[1]:.2f}]"
