"""How far SAM3's instances were from the person's: per instance, and per class.

Instances are matched one-to-one by mask IoU (the Hungarian assignment on IoU, keeping pairs at or above
``min_iou``): a greedy match can pair a box with its neighbour's mask when two objects touch. A matched
pair carries its IoU and whether the class changed; a SAM3 instance left unmatched was deleted by the
person, a person's instance left unmatched was added. Per class these give SAM3's precision (kept / its
instances) and recall (kept / the person's), the evidence for tuning the per-class thresholds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from samantics_dagster.core.dataset.schema import REVIEW_AGREEMENT, AgreementOutcome
from samantics_dagster.core.label.masks import mask_iou_matrix

MATCHED, CLASS_CHANGED, DELETED, ADDED = (AgreementOutcome.MATCHED, AgreementOutcome.CLASS_CHANGED,
                                         AgreementOutcome.DELETED, AgreementOutcome.ADDED)
AGREEMENT_COLUMNS = REVIEW_AGREEMENT.names


def match_instances(sam: Sequence[dict], human: Sequence[dict], min_iou: float = 0.5) -> list[dict]:
    """One record per SAM3 instance and per unmatched human instance (``AGREEMENT_COLUMNS`` less the keys)."""
    iou = mask_iou_matrix([i["rle"] for i in sam], [i["rle"] for i in human])
    pairs: dict[int, int] = {}
    if iou.size:
        rows, cols = linear_sum_assignment(-iou)
        pairs = {int(r): int(c) for r, c in zip(rows, cols) if iou[r, c] >= min_iou}
    out = []
    for s, inst in enumerate(sam):
        h = pairs.get(s)
        if h is None:
            out.append({"sam_index": s, "human_index": None, "sam_class": int(inst["category_id"]),
                        "human_class": None, "iou": 0.0, "sam_score": float(inst["score"]), "outcome": DELETED})
            continue
        changed = int(inst["category_id"]) != int(human[h]["category_id"])
        out.append({"sam_index": s, "human_index": h, "sam_class": int(inst["category_id"]),
                    "human_class": int(human[h]["category_id"]), "iou": round(float(iou[s, h]), 4),
                    "sam_score": float(inst["score"]), "outcome": CLASS_CHANGED if changed else MATCHED})
    for h in sorted(set(range(len(human))) - set(pairs.values())):
        out.append({"sam_index": None, "human_index": h, "sam_class": None,
                    "human_class": int(human[h]["category_id"]), "iou": 0.0, "sam_score": None, "outcome": ADDED})
    return out


def agreement_table(records: Iterable[dict]) -> pd.DataFrame:
    return REVIEW_AGREEMENT.frame(records)


def per_class_summary(table: pd.DataFrame, names: Mapping[int, str]) -> dict[str, dict]:
    """Per class name: SAM3's instances, the person's, kept (matched, same class), class changed, deleted,
    added, precision, recall and the mean IoU of kept instances."""
    out: dict[str, dict] = {}
    classes = set(table["sam_class"].dropna().astype(int)) | set(table["human_class"].dropna().astype(int))
    for cid in sorted(classes):
        sam = table[table["sam_class"] == cid]
        human = table[table["human_class"] == cid]
        kept = sam[sam["outcome"] == MATCHED]
        n_sam, n_human = len(sam), len(human)
        out[names.get(cid, str(cid))] = {
            "sam": n_sam, "human": n_human, "kept": len(kept),
            "class_changed": int((sam["outcome"] == CLASS_CHANGED).sum()),
            "deleted": int((sam["outcome"] == DELETED).sum()),
            "added": int((human["outcome"] == ADDED).sum()),
            "precision": round(len(kept) / n_sam, 4) if n_sam else None,
            "recall": round(len(kept) / n_human, 4) if n_human else None,
            "mean_iou": round(float(np.mean(kept["iou"])), 4) if len(kept) else None,
        }
    return out
