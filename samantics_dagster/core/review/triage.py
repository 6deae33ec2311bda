"""Which labelled frames are worth a person's look, and how urgently.

SAM3's data engine sends only the hard cases to people; here "hard" is read off what the ``sam3_labels``
rows record, since nothing else about the model's doubt survives the run:

- ``borderline``: an instance whose score lies in a band just above its class threshold (a small threshold
  change would flip it);
- ``overlap``: two kept instances of different classes whose masks still overlap (cross-prompt NMS let both
  through: one of the two class names is probably wrong);
- ``relation``: a subject/container pair (the passenger rule's person in a car) whose mask containment lies
  within a margin of the rule's thresholds (the derived class hangs on a few pixels);
- ``rare``: an instance of a class with few instances in the category (the least evidence, the most value).

Plus a seeded random ``audit`` share of all done frames, so that agreement is also measured on frames chosen
without bias (frames picked for doubt overstate SAM3's errors). The audit draw hashes (seed, dhash): a frame's
draw never changes when frames are added, so re-running triage never swaps the audited set.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from samantics_dagster.core.dataset.schema import LabelStatus
from samantics_dagster.core.label.masks import containment, mask_iou_matrix

WEIGHTS = {"borderline": 1.0, "overlap": 1.0, "relation": 2.0, "rare": 0.5, "audit": 0.0}


@dataclass(frozen=True)
class RelationPair:
    """The classes of a relation rule as triage sees them (by id): ``subjects`` include the derived class."""

    subjects: frozenset[int]
    container: int
    thresholds: tuple[float, ...] = (0.4, 0.6)  # RelationRule.loose_containment, min_containment


@dataclass(frozen=True)
class TriageSettings:
    score_thresh: float = 0.5
    category_thresh: Mapping[int, float] = field(default_factory=dict)  # category id -> threshold
    band: float = 0.1  # scores in [threshold, threshold + band) are borderline
    overlap_iou: float = 0.3  # kept instances of different classes overlapping above this
    relation_margin: float = 0.1
    relations: tuple[RelationPair, ...] = ()
    rare_max_instances: int = 3  # a class with at most this many instances in the category is rare
    audit_share: float = 0.05
    seed: int = 0


@dataclass(frozen=True)
class Triage:
    dhash: str
    priority: float
    reasons: dict[str, int]  # reason -> instances (or 1 for audit)

    @property
    def audit(self) -> bool:
        return "audit" in self.reasons


def audit_draw(seed: int, dhash: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, dhash)."""
    digest = hashlib.sha256(f"{seed}:{dhash}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def frame_reasons(instances: Sequence[dict], settings: TriageSettings, rare: set[int]) -> Counter:
    """The uncertainty signals of one frame's instances (records of the ``instances`` column)."""
    reasons: Counter = Counter()
    for inst in instances:
        cid, score = int(inst["category_id"]), float(inst["score"])
        thr = settings.category_thresh.get(cid, settings.score_thresh)
        if thr <= score < thr + settings.band:
            reasons["borderline"] += 1
        if cid in rare:
            reasons["rare"] += 1
    if len(instances) > 1:
        iou = mask_iou_matrix([i["rle"] for i in instances], [i["rle"] for i in instances])
        for a in range(len(instances)):
            for b in range(a + 1, len(instances)):
                if int(instances[a]["category_id"]) != int(instances[b]["category_id"]) and iou[a, b] > settings.overlap_iou:
                    reasons["overlap"] += 1
    for rel in settings.relations:
        for subject in (i for i in instances if int(i["category_id"]) in rel.subjects):
            for container in (i for i in instances if int(i["category_id"]) == rel.container):
                inside = containment(subject["rle"], container["rle"])
                if any(abs(inside - t) <= settings.relation_margin for t in rel.thresholds):
                    reasons["relation"] += 1
    return reasons


def rare_classes(labels: pd.DataFrame, max_instances: int) -> set[int]:
    """Classes with at most ``max_instances`` instances among the category's done rows."""
    counts: Counter = Counter()
    for raw in labels.loc[labels["status"] == LabelStatus.DONE, "instances"]:
        counts.update(int(i["category_id"]) for i in json.loads(raw))
    return {c for c, n in counts.items() if n <= max_instances}


def triage_frames(labels: pd.DataFrame, settings: TriageSettings) -> list[Triage]:
    """Every done frame that has a reason to be reviewed, highest priority first (ties by dhash).

    Priority is the weighted count of signals (``WEIGHTS``); an audit frame with no other signal gets a
    small positive priority so that it is still sent.
    """
    if not len(labels):
        return []
    rare = rare_classes(labels, settings.rare_max_instances)
    out = []
    for row in labels[labels["status"] == LabelStatus.DONE].to_dict("records"):
        reasons = frame_reasons(json.loads(row["instances"]), settings, rare)
        if audit_draw(settings.seed, row["dhash"]) < settings.audit_share:
            reasons["audit"] = 1
        if not reasons:
            continue
        priority = sum(WEIGHTS[r] * n for r, n in reasons.items()) or 0.01
        out.append(Triage(row["dhash"], round(priority, 3), dict(sorted(reasons.items()))))
    return sorted(out, key=lambda t: (-t.priority, t.dhash))
