"""Several people on one frame: how far they agree, and the one version curation uses.

Label Studio's community edition stores every person's annotation of a task but scores none of them (its
agreement statistics are Enterprise-only), so they are computed here the way Label Studio Enterprise
documents its "IoU for polygons" metric:

- two annotations are compared region by region: regions are paired one-to-one by mask IoU (Hungarian on
  IoU, any overlap counts), a pair with the same label scores its IoU, a pair whose labels differ scores 0,
  and a region of either side left unpaired scores 0; the pair's agreement is the mean of those scores
  (two empty annotations agree fully);
- a task's agreement is the mean over every pair of its annotators.

Per class, a pair's score counts the paired regions of that class and the unpaired ones (a label mismatch
counts against both classes). Beside it, Cohen's kappa on per-frame class presence (does the frame contain
the class, by each person) says whether people agree on *what* is there, corrected for chance.

The consensus is what curation uses. One annotation: itself. Two: a pixel majority of two is undefined
(their intersection or their union), so the whole annotation of the person who agrees best with the others
over the category is taken (their reliability; ties go to the earlier annotation). Three or more: regions are
grouped across people (the best IoU pairs first, at least ``match_iou``, one region per person per group), a
group backed by a majority of the people is kept with its majority label and the pixels a majority of the
people drew. A task whose agreement stays under a bound goes back for one more person (see ``rerequest``).
"""

from __future__ import annotations

import itertools
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import cohen_kappa_score

from samantics_dagster.core.label.masks import coco_rle, json_rle, mask_iou_matrix
from samantics_dagster.core.review.convert import HUMAN_SCORE, rle_instance


@dataclass(frozen=True)
class Annotation:
    """One person's completed annotation of a task, as instances in the ``sam3_labels`` schema."""

    annotator: str
    annotation_id: int
    instances: list[dict]
    updated_at: str = ""


@dataclass
class PairScore:
    """Sums behind one comparison: per class, the scores of its units and how many units."""

    score: dict[int, float]
    units: dict[int, int]
    total_score: float
    total_units: int

    @property
    def agreement(self) -> float:
        return self.total_score / self.total_units if self.total_units else 1.0

    def per_class(self) -> dict[int, float]:
        return {c: self.score.get(c, 0.0) / n for c, n in sorted(self.units.items()) if n}


def pair_regions(a: Sequence[dict], b: Sequence[dict], min_iou: float = 0.0) -> list[tuple[int, int, float]]:
    """One-to-one pairs (index in a, index in b, IoU) maximising the summed IoU, label-blind; a pair needs an
    IoU above 0 and at least ``min_iou``."""
    if not len(a) or not len(b):
        return []
    iou = mask_iou_matrix([i["rle"] for i in a], [i["rle"] for i in b])
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols) if iou[r, c] > 0 and iou[r, c] >= min_iou]


def pair_score(a: Sequence[dict], b: Sequence[dict]) -> PairScore:
    """Label Studio Enterprise's polygon IoU agreement of two annotations (see the module docstring)."""
    score: dict[int, float] = {}
    units: Counter = Counter()
    total, n = 0.0, 0
    pairs = pair_regions(a, b)
    for i, j, iou in pairs:
        ca, cb = int(a[i]["category_id"]), int(b[j]["category_id"])
        n += 1
        if ca == cb:
            score[ca] = score.get(ca, 0.0) + iou
            units[ca] += 1
            total += iou
        else:
            units[ca] += 1
            units[cb] += 1
    for side, taken in ((a, {i for i, _, _ in pairs}), (b, {j for _, j, _ in pairs})):
        for k, inst in enumerate(side):
            if k not in taken:
                units[int(inst["category_id"])] += 1
                n += 1
    return PairScore(score, dict(units), total, n)


def task_agreement(annotations: Sequence[Annotation]) -> tuple[float | None, dict[int, float]]:
    """The mean over pairs of people of their agreement, overall and per class (a class is averaged over the
    pairs where either person drew it); None with fewer than two people."""
    if len(annotations) < 2:
        return None, {}
    overall: list[float] = []
    per_class: dict[int, list[float]] = {}
    for x, y in itertools.combinations(annotations, 2):
        s = pair_score(x.instances, y.instances)
        overall.append(s.agreement)
        for c, v in s.per_class().items():
            per_class.setdefault(c, []).append(v)
    return float(np.mean(overall)), {c: float(np.mean(v)) for c, v in sorted(per_class.items())}


def presence(instances: Iterable[dict]) -> set[int]:
    return {int(i["category_id"]) for i in instances}


def presence_kappa(tasks: Sequence[Sequence[Annotation]], classes: Iterable[int]) -> dict[int, dict]:
    """Per class, Cohen's kappa of "the frame contains this class" between two people over the frames both
    annotated, averaged over the pairs of people (Light's kappa), with the frames behind it. A pair that agrees
    on a class's presence in every shared frame and always says the same thing has no chance correction to
    make: its kappa is undefined and left out (None when no pair has one)."""
    votes: dict[tuple[str, str], list[tuple[set[int], set[int]]]] = {}
    for anns in tasks:
        by = {a.annotator: presence(a.instances) for a in anns}
        for p, q in itertools.combinations(sorted(by), 2):
            votes.setdefault((p, q), []).append((by[p], by[q]))
    out = {}
    for c in sorted(set(classes)):
        kappas, frames = [], 0
        for shared in votes.values():
            x = [c in s for s, _ in shared]
            y = [c in t for _, t in shared]
            frames += len(shared)
            if len(set(x) | set(y)) < 2:
                continue  # neither person ever varied: chance explains everything, kappa undefined
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                k = cohen_kappa_score(x, y, labels=[False, True])
            if np.isfinite(k):
                kappas.append(float(k))
        out[c] = {"kappa": round(float(np.mean(kappas)), 4) if kappas else None, "pairs": len(kappas), "frames": frames}
    return out


def reliability(tasks: Sequence[Sequence[Annotation]]) -> dict[str, float]:
    """Each person's mean agreement with the other people over every frame they shared."""
    got: dict[str, list[float]] = {}
    for anns in tasks:
        for x, y in itertools.combinations(anns, 2):
            v = pair_score(x.instances, y.instances).agreement
            got.setdefault(x.annotator, []).append(v)
            got.setdefault(y.annotator, []).append(v)
    return {p: float(np.mean(v)) for p, v in got.items()}


def _groups(annotations: Sequence[Annotation], match_iou: float) -> list[list[tuple[int, int]]]:
    """Regions grouped across people: (person index, region index) members, best IoU pairs merged first, a
    group never holding two regions of one person."""
    edges = []
    for (p, x), (q, y) in itertools.combinations(enumerate(annotations), 2):
        for i, j, iou in pair_regions(x.instances, y.instances, match_iou):
            edges.append((-iou, p, i, q, j))
    group = {(p, i): k for k, (p, i) in enumerate(
        (p, i) for p, a in enumerate(annotations) for i in range(len(a.instances)))}
    members = {k: {m} for m, k in group.items()}
    for _, p, i, q, j in sorted(edges):
        g, h = group[(p, i)], group[(q, j)]
        if g == h or {m[0] for m in members[g]} & {m[0] for m in members[h]}:
            continue
        for m in members.pop(h):
            group[m] = g
            members[g].add(m)
    return [sorted(m) for _, m in sorted(members.items())]


def majority(annotations: Sequence[Annotation], match_iou: float = 0.5) -> list[dict]:
    """The pixel-majority consensus of three or more people (see the module docstring). A kept region whose
    mask and label equal a member's is that member's instance (an untouched SAM3 region keeps its score)."""
    n = len(annotations)
    out = []
    for members in _groups(annotations, match_iou):
        if 2 * len(members) <= n:
            continue
        insts = [annotations[p].instances[i] for p, i in members]
        labels = Counter(int(i["category_id"]) for i in insts)
        top = max(labels.values())
        # a tie between labels goes to the label of the region that overlaps the others most
        tied = {c for c, v in labels.items() if v == top}
        iou = mask_iou_matrix([i["rle"] for i in insts], [i["rle"] for i in insts])
        label = max((k for k in range(len(insts)) if int(insts[k]["category_id"]) in tied),
                    key=lambda k: (float(iou[k].sum()), -k))
        cid = int(insts[label]["category_id"])
        votes = sum(mask_utils.decode(coco_rle(i["rle"])).astype(np.uint16) for i in insts)
        mask = np.asfortranarray((2 * votes > n).astype(np.uint8))
        if not mask.any():
            continue
        rle = json_rle(mask_utils.encode(mask))
        same = [i for i in insts if int(i["category_id"]) == cid and i["rle"]["counts"] == rle["counts"]]
        out.append(dict(same[0]) if same else rle_instance(rle, cid, HUMAN_SCORE))
    return out


@dataclass(frozen=True)
class Consensus:
    instances: list[dict]
    method: str  # single | best | majority
    source: Annotation | None  # the annotation taken whole (single, best)


def consensus(annotations: Sequence[Annotation], trust: Mapping[str, float], match_iou: float = 0.5) -> Consensus:
    """The version of the frame curation uses (see the module docstring); ``trust`` is :func:`reliability`."""
    if not annotations:
        raise ValueError("consensus of no annotation")
    if len(annotations) == 1:
        return Consensus(list(annotations[0].instances), "single", annotations[0])
    if len(annotations) == 2:
        best = max(annotations, key=lambda a: (trust.get(a.annotator, 0.0), -a.annotation_id))
        return Consensus(list(best.instances), "best", best)
    return Consensus(majority(annotations, match_iou), "majority", None)


def rerequest(agreement: float | None, people: int, overlap: int, bound: float, max_people: int) -> int | None:
    """The overlap to ask Label Studio for, or None: a task whose people agree under ``bound`` gets one more
    person, up to ``max_people``, unless it is already waiting for one (its overlap above the people so far)."""
    if agreement is None or agreement >= bound or people >= max_people or overlap > people:
        return None
    return people + 1


def frame_rows(annotations: Sequence[Annotation], agreed: Consensus) -> list[dict]:
    """Per person: their agreement with the others on this frame and with the consensus, overall and per class."""
    rows = []
    for a in annotations:
        others = [pair_score(a.instances, b.instances).agreement for b in annotations if b is not a]
        with_consensus = pair_score(a.instances, agreed.instances)
        rows.append({"annotator": a.annotator, "annotation_id": a.annotation_id, "updated_at": a.updated_at,
                     "n_instances": len(a.instances),
                     "agreement_people": round(float(np.mean(others)), 4) if others else None,
                     "agreement_consensus": round(with_consensus.agreement, 4),
                     "per_class": {str(c): round(v, 4) for c, v in with_consensus.per_class().items()},
                     "chosen": agreed.source is a})
    return rows


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 4) if len(values) else None


def class_summary(people: Mapping[int, Sequence[Annotation]], agreed: Mapping[int, Sequence[dict]],
                  sam: Mapping[int, Sequence[dict]], names: Mapping[int, str]) -> list[dict]:
    """Per class, over the frames several people annotated: the people's agreement with each other (mean per
    frame of the pairwise agreement), Cohen's kappa on presence, each person's agreement with the consensus, and
    SAM3's agreement with the consensus on those frames (the ceiling comparison: SAM3 can't be judged closer to
    the truth than people are to each other); and SAM3's against the consensus over every reviewed frame.
    A class counts in a frame where anyone (or SAM3, for its columns) drew it."""
    multi = [t for t, anns in people.items() if len(anns) > 1]
    classes = sorted({int(i["category_id"]) for t in people for a in people[t] for i in a.instances}
                     | {int(i["category_id"]) for t in people for i in sam.get(t, [])})
    kappa = presence_kappa([people[t] for t in multi], classes)
    between: dict[int, list[float]] = {}
    to_consensus: dict[int, list[float]] = {}
    sam_multi: dict[int, list[float]] = {}
    sam_all: dict[int, list[float]] = {}
    for t, anns in people.items():
        sam_class = pair_score(sam.get(t, []), agreed[t]).per_class()
        for c, v in sam_class.items():
            sam_all.setdefault(c, []).append(v)
        if len(anns) < 2:
            continue
        for c, v in task_agreement(anns)[1].items():
            between.setdefault(c, []).append(v)
        for a in anns:
            for c, v in pair_score(a.instances, agreed[t]).per_class().items():
                to_consensus.setdefault(c, []).append(v)
        for c, v in sam_class.items():
            sam_multi.setdefault(c, []).append(v)
    return [{"class": names.get(c, str(c)), "frames_several_people": len(between.get(c, [])),
             "people_agreement": _mean(between.get(c, [])), "presence_kappa": kappa[c]["kappa"],
             "people_vs_consensus": _mean(to_consensus.get(c, [])),
             "sam3_vs_consensus_same_frames": _mean(sam_multi.get(c, [])),
             "sam3_vs_consensus_all": _mean(sam_all.get(c, [])), "frames_all": len(sam_all.get(c, []))}
            for c in classes]


def person_summary(people: Mapping[int, Sequence[Annotation]], agreed: Mapping[int, Consensus]) -> list[dict]:
    """Per person: frames annotated, mean agreement with the others where they were not alone, with the
    consensus where they were not alone (alone, they are the consensus), and how often theirs was taken whole."""
    out: dict[str, dict] = {}
    for t, anns in people.items():
        for a in anns:
            row = out.setdefault(a.annotator, {"frames": 0, "with_others": [], "with_consensus": [], "taken_whole": 0})
            row["frames"] += 1
            row["taken_whole"] += int(agreed[t].source is a and len(anns) > 1)
            if len(anns) > 1:
                row["with_others"].append(np.mean([pair_score(a.instances, b.instances).agreement
                                                   for b in anns if b is not a]))
                row["with_consensus"].append(pair_score(a.instances, agreed[t].instances).agreement)
    return [{"annotator": p, "frames": r["frames"], "frames_with_others": len(r["with_others"]),
             "agreement_with_others": _mean(r["with_others"]), "agreement_with_consensus": _mean(r["with_consensus"]),
             "taken_whole": r["taken_whole"]} for p, r in sorted(out.items())]
