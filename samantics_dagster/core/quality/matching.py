"""SAM3's candidates against a person's reviewed instances of one frame: which candidate found which object.

The evaluation is COCO's, per class: a class's candidates in descending score each take the unmatched
reviewed instance of that class with the highest mask IoU, if it is at least ``iou_min``; the rest are
false positives. Matching in score order makes the result at any threshold the matching of the candidates
above it, so one matching gives the whole PR curve (``core.quality.curves``).

What the labeller would show at a threshold is :func:`core.label.candidates.select`; two of its steps are
taken into account here, exactly where they can be:
- NMS *within* a class: a duplicate suppressed by a higher-scoring instance of its own class is suppressed
  at every threshold (the higher one passes whenever it does), so it is dropped here once;
- the relation rules: a candidate of a rule's subject class inside a container that passes today's
  selection counts as the derived class (a reviewed ``passenger`` is found by a ``person`` candidate).
NMS *across* classes depends on the other classes' thresholds and is left out: the curve is per class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from samantics_dagster.core.label.candidates import Selection, select
from samantics_dagster.core.label.masks import Instance, cross_prompt_nms, mask_iou_matrix

IOU_MIN = 0.5


@dataclass(frozen=True)
class Scored:
    """One candidate after matching: its class, score, whether it found a reviewed object, and the IoU."""

    category_id: int
    score: float
    matched: bool
    iou: float


@dataclass(frozen=True)
class FrameMatch:
    """A reviewed frame: its candidates scored, and how many reviewed instances each class has."""

    dhash: str
    audit: bool
    candidates: tuple[Scored, ...]
    reviewed: dict[int, int]  # category id -> reviewed instances


def evaluation_candidates(candidates: Sequence[Instance], selection: Selection) -> list[Instance]:
    """Candidates as the labeller would name them: within-class NMS, relation rules against passing containers."""
    out: list[Instance] = []
    for cid in sorted({i.category_id for i in candidates}):
        out += cross_prompt_nms([i for i in candidates if i.category_id == cid], selection.nms_iou)
    rules = [r for r in selection.relation_rules if {r.subject, r.container, r.becomes} <= selection.name_to_id.keys()]
    if not rules:
        return out
    passing = select(candidates, replace(selection, relation_rules=()))
    names = selection.name_to_id
    relabelled = []
    for inst in out:
        for rule in rules:
            if inst.category_id == names[rule.subject] and any(
                    c.category_id == names[rule.container] and c is not inst and rule.matches(inst, c) for c in passing):
                inst = replace(inst, category_id=names[rule.becomes])
                break
        relabelled.append(inst)
    return relabelled


def match_frame(candidates: Sequence[Instance], reviewed: Sequence[dict], iou_min: float = IOU_MIN) -> list[Scored]:
    """COCO-style greedy matching per class, candidates in descending score (ties keep their order)."""
    out: list[Scored] = []
    for cid in sorted({i.category_id for i in candidates}):
        mine = sorted((i for i in candidates if i.category_id == cid), key=lambda i: -i.score)
        truth = [r for r in reviewed if int(r["category_id"]) == cid]
        iou = mask_iou_matrix([i.rle for i in mine], [t["rle"] for t in truth])
        taken = np.zeros(len(truth), bool)
        for k, inst in enumerate(mine):
            free = [t for t in range(len(truth)) if not taken[t] and iou[k, t] >= iou_min]
            if free:
                best = max(free, key=lambda t: iou[k, t])  # the first of equal IoUs
                taken[best] = True
                out.append(Scored(cid, inst.score, True, float(iou[k, best])))
            else:
                out.append(Scored(cid, inst.score, False, 0.0))
    return out


def frame_match(dhash: str, audit: bool, candidates: Sequence[dict], reviewed: Sequence[dict],
                selection: Selection, iou_min: float = IOU_MIN) -> FrameMatch:
    """One reviewed frame from its ``sam3_labels`` candidates and its reviewed instances (JSON records)."""
    cands = evaluation_candidates([Instance.from_record(r) for r in candidates], selection)
    counts: dict[int, int] = {}
    for r in reviewed:
        counts[int(r["category_id"])] = counts.get(int(r["category_id"]), 0) + 1
    return FrameMatch(dhash, audit, tuple(match_frame(cands, reviewed, iou_min)), counts)
