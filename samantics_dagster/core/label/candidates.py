"""Candidates down to a floor score, and the view of them that passes today's thresholds.

``sam3_labels`` keeps every instance SAM3 scores above a low floor (``candidate_floor``), with its mask and
score, before any class threshold, cross-prompt NMS or relation rule. Those are a curate-time decision
(:class:`Selection`, read from ``sam-queries.yaml`` by ``core.label.queries.load_selection``): changing a
threshold re-curates a category in seconds with no model loaded, and the PR curve of a class below its
threshold can be measured against what people reviewed (``core.quality``).

Everything a person or a trainer sees (the COCO exports, labels.jsonl, the previews, the review tasks) is
:func:`select` of the candidates. It is the labeller's old post-processing in the old order: keep the
scores above the class threshold (strictly, compared in float32 as the device compared them), then
cross-prompt mask NMS, the per-image cap, the relation rules. Candidates are capped per (image, prompt)
to the top ``max_candidates`` by score, so filtering them by a threshold gives exactly the instances
that labelling at that threshold would have kept (the top k above a higher threshold are the top k above
the floor that clear it). Pure Python + numpy + pycocotools: no Dagster, no torch.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from samantics_dagster.core.dataset.schema import LabelStatus
from samantics_dagster.core.label.masks import (
    Instance,
    RelationRule,
    apply_relation_rules,
    cap_detections,
    cross_prompt_nms,
)

DEFAULT_FLOOR = 0.1
"""Default candidate floor: below every sensible class threshold (SAM3's are 0.3-0.7), above the long
tail of near-zero queries that would only cost storage."""
DEFAULT_THRESHOLD = 0.5
PASSENGER = RelationRule(subject="person", container="car", becomes="passenger")


def passes(score: float, threshold: float) -> bool:
    """``score > threshold`` in float32, as the device compares: the same instances as labelling at it."""
    return bool(np.float32(score) > np.float32(threshold))


@dataclass(frozen=True)
class Selection:
    """What passes from the candidates: class thresholds, cross-prompt NMS, the per-image cap, relations.

    ``thresholds`` maps category id to its threshold (others use ``default``). ``name_to_id`` is the
    spec's, for the relation rules (a rule is active only when the spec has its three names).
    """

    default: float = DEFAULT_THRESHOLD
    thresholds: Mapping[int, float] = field(default_factory=dict)
    nms_iou: float | None = 0.5
    max_detections: int | None = 100
    relation_rules: tuple[RelationRule, ...] = (PASSENGER,)
    name_to_id: Mapping[str, int] = field(default_factory=dict)

    def threshold(self, category_id: int) -> float:
        return float(self.thresholds.get(int(category_id), self.default))

    def with_threshold(self, category_id: int, value: float) -> Selection:
        return replace(self, thresholds={**self.thresholds, int(category_id): float(value)})

    def fingerprint(self) -> str:
        """Short hex id of everything that changes what passes (not the order the thresholds were given in)."""
        blob = json.dumps({"default": self.default, "thresholds": sorted((int(k), float(v)) for k, v in self.thresholds.items()),
                           "nms_iou": self.nms_iou, "max_detections": self.max_detections,
                           "rules": [repr(r) for r in self.relation_rules],
                           "names": sorted(self.name_to_id.items())}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def below_floor(self, floor: float) -> dict[int, float]:
        """Thresholds at or below the floor the candidates were kept at: candidates can't tell those apart."""
        out = {int(k): float(v) for k, v in self.thresholds.items() if v < floor}
        if self.default < floor:
            out[-1] = self.default
        return out


def select(instances: Sequence[Instance], selection: Selection) -> list[Instance]:
    """The instances that pass: thresholds, then NMS, the cap and the relation rules (the labeller's order).

    A mask whose RLE size differs from the frame's other masks (a corrupt row) passes by its score alone:
    pycocotools aborts the process when asked to compare masks of two sizes, and the export's validity
    check is where such a mask is reported, with its frame.
    """
    kept = [i for i in instances if passes(i.score, selection.threshold(i.category_id))]
    sizes = Counter(tuple(i.rle["size"]) for i in kept)
    main = sizes.most_common(1)[0][0] if sizes else None
    odd = {id(i) for i in kept if tuple(i.rle["size"]) != main}
    kept = cross_prompt_nms([i for i in kept if id(i) not in odd], selection.nms_iou) + [i for i in kept if id(i) in odd]
    kept = cap_detections(kept, selection.max_detections)
    ruled = iter(apply_relation_rules([i for i in kept if id(i) not in odd], list(selection.relation_rules),
                                      dict(selection.name_to_id)))
    return [i if id(i) in odd else next(ruled) for i in kept]


def select_records(records: Sequence[dict], selection: Selection) -> list[dict]:
    """:func:`select` on the ``instances`` column's JSON records; returns records."""
    return [i.to_record() for i in select([Instance.from_record(r) for r in records], selection)]


def select_text(text: str, selection: Selection) -> tuple[list[dict], bool]:
    """One row's ``instances`` text -> (records that pass, whether they are exactly the candidates).

    The flag lets a caller reuse the text instead of encoding it again when nothing was filtered out.
    """
    records = json.loads(text)
    shown = select_records(records, selection)
    return shown, shown == records


def shown_table(labels: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """A ``sam3_labels`` table whose ``instances`` and ``n_instances`` are what passes ``selection``.

    For code written against labels with thresholds already applied (triage, the review round trip): they
    read this view and stay unaware of candidates.
    """
    out = labels.copy()
    done = out["status"] == LabelStatus.DONE
    shown = [json.dumps(select_records(json.loads(t), selection)) for t in out.loc[done, "instances"]]
    out.loc[done, "instances"] = shown
    out.loc[done, "n_instances"] = [len(json.loads(s)) for s in shown]
    return out
