"""Near misses: the candidates SAM3 scored just below their class threshold, shown to a reviewer to accept.

A review task shows what passes today's thresholds (``core.label.candidates.select``). Beside those, it
carries up to ``max_per_frame`` *near misses*: candidates scored within ``band`` below their class threshold,
that the selection would have kept at a threshold that much lower (no duplicate of a kept mask, no
duplicate of each other: the same mask NMS as :func:`~samantics_dagster.core.label.candidates.select`; the
relation rules name them as they would name a kept one). The closest to their threshold come first.

How Label Studio shows them, and why this way (read from Label Studio 1.23's editor, ``libs/editor``):

- Every region of a task's prediction is copied into the person's annotation when they open the task, and a
  region's ``hidden``/``locked`` state is editor-only (not saved), so "hide until accepted" cannot be said
  in the result JSON. What the annotation holds is what the person submits.
- Accepting by relabelling a near-miss region (a label "car (near miss)" changed to "car") takes two clicks
  (select the region, then the label); so does a ``perRegion`` ``Choices`` (it shows only for the selected
  region: ``PerRegionMixin.perRegionVisible``; only ``TextArea`` has a per-region view in the region list).
- The editor's own accept/reject buttons (``SuggestionControls``) exist only for suggestions an ML backend
  returns after a smart-tool click (``setSuggestions``), not for what a task carries.
- A task-level ``Choices`` with ``choice="multiple"`` is one click per box, and its options can come from the
  task (``value="$near_miss_choices"``, ``DynamicChildrenMixin``), with an ``alias`` that is what the result
  stores (``SelectedModelMixin.selectedValues``).

So near misses are regions of their own control (``PolygonLabels name="near_miss"``, labels "near miss 1"
... "near miss N", each its own colour, drawn as a thick outline with a faint fill), distinct from the kept
predictions (labelled by class under ``label``), named in the editor's region list by that label, and one
task-level box per near miss under the image ("near miss 1: car 0.43 (threshold 0.5)", alias ``n0``). Ticking a box accepts that near miss: one click. Doing nothing rejects it: a region of
the ``near_miss`` control is never read as the person's instance unless its box is ticked. An accepted near
miss the person left as sent comes back as SAM3's exact candidate (mask and score); one they edited comes
back as their polygon (score 1.0, as everything a person draws); one whose region they deleted is not kept.

The task records which candidate each near miss is (``data.near_misses``: index into the frame's
``sam3_labels`` candidates, class, score), so reading the review needs no threshold: it holds when the
thresholds changed since the task was sent.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from samantics_dagster.core.label.candidates import Selection, passes, select
from samantics_dagster.core.label.masks import Instance, apply_relation_rules, mask_iou_matrix
from samantics_dagster.core.review.convert import (
    ACCEPT_NAME,
    CHOICES_KEY,
    HUMAN_SCORE,
    NEAR_MISS_NAME,
    SLOTS,
    TO_NAME,
    mask_polygons,
    polygon_rle,
    rle_instance,
    slot_label,
    to_regions,
)

RECORDS_KEY = "near_misses"  # task data: which candidate each near miss is

_REGION = re.compile(r"^n(\d+)p(\d+)$")


@dataclass(frozen=True)
class NearMissSettings:
    band: float = 0.15  # scores in [threshold - band, threshold] are near misses
    max_per_frame: int = 5  # the closest to their threshold first

    def __post_init__(self) -> None:
        if not 0 <= self.max_per_frame <= SLOTS:
            raise ValueError(f"max_per_frame is {self.max_per_frame}; the labeling config has {SLOTS} near-miss labels")


@dataclass(frozen=True)
class NearMiss:
    """One near miss of a frame: its index in the frame's candidates, its class (after the relation rules),
    its score and the threshold it missed."""

    candidate: int
    category_id: int
    score: float
    threshold: float
    record: dict  # the candidate's record, category_id as named here


def near_misses(candidates: Sequence[dict], selection: Selection, settings: NearMissSettings) -> list[NearMiss]:
    """The frame's near misses (candidate records as ``sam3_labels`` holds them), closest to passing first."""
    if settings.max_per_frame == 0 or settings.band <= 0 or not candidates:
        return []
    insts = [Instance.from_record(r) for r in candidates]
    shown = select(insts, selection)
    sizes = Counter(tuple(i.rle["size"]) for i in insts)
    main = sizes.most_common(1)[0][0]
    pool = []
    for k, inst in enumerate(insts):
        t = selection.threshold(inst.category_id)
        if tuple(inst.rle["size"]) == main and not passes(inst.score, t) and np.float32(inst.score) >= np.float32(t - settings.band):
            pool.append(k)
    if not pool:
        return []
    pool.sort(key=lambda k: (-insts[k].score, k))  # NMS keeps the higher score, as select does
    base = [i for i in shown if tuple(i.rle["size"]) == main]
    rles = [i.rle for i in base] + [insts[k].rle for k in pool]
    iou = mask_iou_matrix(rles, rles)
    limit = selection.nms_iou if selection.nms_iou is not None and selection.nms_iou < 1 else None
    kept: list[int] = []  # positions in rles
    for p in range(len(base), len(rles)):
        if limit is None or all(iou[p, q] <= limit for q in list(range(len(base))) + kept):
            kept.append(p)
    chosen = [pool[p - len(base)] for p in kept]
    named = apply_relation_rules(base + [insts[k] for k in chosen], list(selection.relation_rules),
                                 dict(selection.name_to_id))[len(base):]
    out = [NearMiss(k, int(n.category_id), float(insts[k].score), selection.threshold(insts[k].category_id),
                    {**candidates[k], "category_id": int(n.category_id)}) for k, n in zip(chosen, named)]
    out.sort(key=lambda m: (m.threshold - m.score, m.candidate))
    return out[:settings.max_per_frame]


def task_data(near: Sequence[NearMiss], names: Mapping[int, str]) -> dict:
    """What a task's data carries for its near misses: the boxes to tick and which candidate each is."""
    return {
        CHOICES_KEY: [{"value": f"{slot_label(s)}: {names[m.category_id]} {m.score:.2f} (threshold {m.threshold:g})",
                       "alias": f"n{s}"} for s, m in enumerate(near)],
        RECORDS_KEY: [{"alias": f"n{s}", "candidate": m.candidate, "category_id": m.category_id,
                       "score": round(m.score, 6)} for s, m in enumerate(near)],
    }


def regions(near: Sequence[NearMiss], width: int, height: int) -> list[dict]:
    """The near misses as prediction regions of the ``near_miss`` control, ids ``n{slot}p{part}``."""
    out = []
    for s, m in enumerate(near):
        for r in to_regions([m.record], width, height, {m.category_id: slot_label(s)}):
            out.append({**r, "id": f"n{s}{r['id'][2:]}", "from_name": NEAR_MISS_NAME, "to_name": TO_NAME})
    return out


def accepted(results: Sequence[dict], records: Sequence[dict], candidates: Sequence[dict] | None,
             width: int, height: int) -> list[dict]:
    """The near misses a person accepted (their box ticked), as instances in the ``sam3_labels`` schema.

    ``records`` is the task's ``data.near_misses``; ``candidates`` the frame's ``sam3_labels`` candidates
    (None: not at hand, every accepted near miss is read from its polygon). A near miss left as sent is the
    candidate itself; an edited one is the person's polygon (score 1.0); one whose regions are gone is not kept.
    """
    ticked = {str(v) for r in results if r.get("from_name") == ACCEPT_NAME and r.get("type") == "choices"
              for v in (r.get("value", {}).get("choices") or [])}
    parts: dict[int, list[dict]] = {}
    for r in results:
        m = _REGION.match(str(r.get("id", "")))
        if m and r.get("from_name") == NEAR_MISS_NAME and r.get("value", {}).get("points"):
            parts.setdefault(int(m.group(1)), []).append(r)
    out = []
    for rec in records:
        alias = str(rec["alias"])
        slot = int(alias[1:])
        if alias not in ticked or slot not in parts:
            continue
        got = sorted(parts[slot], key=lambda r: int(_REGION.match(str(r["id"])).group(2)))  # type: ignore[union-attr]
        cid = int(rec["category_id"])
        k = int(rec["candidate"])
        cand = candidates[k] if candidates is not None and 0 <= k < len(candidates) else None
        if cand is not None and abs(float(cand["score"]) - float(rec["score"])) < 1e-5:
            sent = [[[round(x / width * 100.0, 4), round(y / height * 100.0, 4)] for x, y in poly]
                    for poly in mask_polygons(cand["rle"])]
            if len(sent) == len(got) and all(
                    len(s) == len(g["value"]["points"]) and np.allclose(g["value"]["points"], s, atol=1e-3)
                    for s, g in zip(sent, got)):
                out.append({**cand, "category_id": cid})
                continue
        rle = polygon_rle([r["value"]["points"] for r in got], width, height)
        out.append(rle_instance(rle, cid, HUMAN_SCORE))
    return out
