"""Label quality per class from review: what the ``label_quality`` asset computes and ``samantics thresholds`` reads.

Each reviewed frame's candidates (``sam3_labels``) are matched against the person's instances
(``reviewed_labels``; ``core.quality.matching``), and per class the PR curve over every threshold, the mean
mask IoU of matched instances and the suggested threshold are computed with bootstrap intervals
(``core.quality.curves``), three times: on the audit frames (drawn at random by ``review_tasks``: an unbiased
sample), on the triaged frames (chosen for doubt: their error rates overstate SAM3's), and on both. The
suggestion comes from the audit frames unless ``suggest_from`` says otherwise, because a threshold tuned on
the hardest frames would be too strict for the rest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from samantics_dagster.core.dataset.atomic import write_text_atomic
from samantics_dagster.core.dataset.schema import LabelStatus, ReviewStatus
from samantics_dagster.core.label.candidates import Selection
from samantics_dagster.core.quality.curves import ClassCurve, class_curve, threshold_grid
from samantics_dagster.core.quality.matching import IOU_MIN, FrameMatch, frame_match

GROUPS = ("audit", "triaged", "all")


@dataclass(frozen=True)
class QualitySettings:
    floor: float = 0.1  # the candidate floor the labels were made with: the curve starts there
    iou_min: float = IOU_MIN
    precision_target: float | None = None  # suggest the lowest threshold meeting it instead of the best F1
    suggest_from: str = "audit"  # audit | triaged | all
    min_reviewed: int = 10  # fewer reviewed instances of a class in that group: no suggestion
    resamples: int = 400
    seed: int = 0

    def __post_init__(self) -> None:
        if self.suggest_from not in GROUPS:
            raise ValueError(f"suggest_from is {self.suggest_from!r}; use one of {GROUPS}")


def reviewed_frames(labels: Mapping[str, pd.DataFrame], reviewed: Mapping[str, pd.DataFrame],
                    tasks: Mapping[str, pd.DataFrame], selection: Selection, iou_min: float = IOU_MIN) -> list[FrameMatch]:
    """Every reviewed frame of every category, matched. ``audit`` is the task's flag (a frame whose task row
    is gone counts as triaged: only a recorded random draw makes a frame an audit frame)."""
    out = []
    for category, table in sorted(reviewed.items()):
        sam = labels.get(category)
        if sam is None or table is None or not len(table):
            continue
        done = sam[sam["status"] == LabelStatus.DONE]
        candidates = dict(zip(done["dhash"], done["instances"]))
        task = tasks.get(category)
        audit = set(task.loc[task["audit"].astype(bool), "dhash"]) if task is not None and len(task) else set()
        rows = table[table["status"] == ReviewStatus.REVIEWED]
        for dhash, instances in zip(rows["dhash"], rows["instances"]):
            if dhash not in candidates:
                continue
            out.append(frame_match(dhash, dhash in audit, json.loads(candidates[dhash]), json.loads(instances),
                                   selection, iou_min))
    return out


@dataclass
class ClassQuality:
    category_id: int
    name: str
    current: float
    curves: dict[str, ClassCurve]  # by group, only groups with frames
    suggested: float | None  # from the suggest_from group, if it had enough reviewed instances
    why_none: str | None = None

    def row(self, group: str) -> dict:
        c = self.curves.get(group)
        if c is None:
            return {"class": self.name, "group": group, "frames": 0, "reviewed": 0}
        return {"class": self.name, "group": group, "frames": c.frames, "reviewed": c.reviewed,
                "candidates": c.candidates, "current": self.current,
                **{f"{k}_at_current": v for k, v in c.at(self.current).items()},
                "best": c.suggested, **{f"{k}_at_best": v for k, v in c.at(c.suggested).items()},
                **{f"{k}_interval": v.as_list() for k, v in c.intervals.items()}}


@dataclass
class QualityReport:
    settings: QualitySettings
    classes: list[ClassQuality]
    frames: dict[str, int] = field(default_factory=dict)  # by group
    prompts: list[dict] = field(default_factory=list)  # the prompt trials ranked (``core.quality.prompts``)

    def table(self) -> pd.DataFrame:
        """One row per class and group: the figures behind each suggestion."""
        return pd.DataFrame([c.row(g) for c in self.classes for g in GROUPS])

    def suggestions(self) -> dict[str, dict]:
        """Class name -> current and suggested threshold with the evidence (what ``samantics thresholds`` prints)."""
        out = {}
        for c in self.classes:
            curve = c.curves.get(self.settings.suggest_from)
            out[c.name] = {"category_id": c.category_id, "current": c.current, "suggested": c.suggested,
                           "why_none": c.why_none, "from": self.settings.suggest_from,
                           "reviewed": curve.reviewed if curve else 0, "frames": curve.frames if curve else 0,
                           "at_current": curve.at(c.current) if curve else None,
                           "at_suggested": curve.at(c.suggested) if curve and c.suggested is not None else None,
                           "intervals": {k: v.as_list() for k, v in curve.intervals.items()} if curve else {}}
        return out

    def to_json(self) -> dict:
        return {"settings": self.settings.__dict__, "frames": self.frames, "classes": self.suggestions(),
                "table": json.loads(self.table().to_json(orient="records")), "prompts": self.prompts}


def quality_report(frames: list[FrameMatch], selection: Selection, names: Mapping[int, str],
                   settings: QualitySettings) -> QualityReport:
    """Curves per class and group; a class appears if it has reviewed instances or candidates on reviewed frames."""
    groups = {"audit": [f for f in frames if f.audit], "triaged": [f for f in frames if not f.audit], "all": frames}
    classes = sorted({c.category_id for f in frames for c in f.candidates} | {k for f in frames for k in f.reviewed})
    grid = threshold_grid(settings.floor, [selection.threshold(c) for c in classes])
    out = []
    for cid in classes:
        curves = {g: class_curve(fs, cid, grid, precision_target=settings.precision_target,
                                 resamples=settings.resamples, seed=settings.seed)
                  for g, fs in groups.items() if fs}
        source = curves.get(settings.suggest_from)
        suggested, why = None, None
        if source is None:
            why = f"no {settings.suggest_from} frames reviewed"
        elif source.reviewed < settings.min_reviewed:
            why = f"{source.reviewed} reviewed instances on {settings.suggest_from} frames (< {settings.min_reviewed})"
        else:
            suggested = source.suggested
        out.append(ClassQuality(cid, names.get(cid, str(cid)), selection.threshold(cid), curves, suggested, why))
    return QualityReport(settings, out, {g: len(fs) for g, fs in groups.items()})


def write_report(report: QualityReport, path: Path) -> None:
    write_text_atomic(path, json.dumps(report.to_json(), indent=1, default=_plain))


def read_suggestions(path: Path) -> dict:
    """The last report's JSON (``samantics thresholds``); a clear error when the asset never ran."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist: materialise the label_quality asset first (it needs "
                                "reviewed frames: review_tasks, then reviewed_labels)") from None


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")
