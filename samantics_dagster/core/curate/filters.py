"""Curation: which labelled frames go into the training set, and into which split.

SAM3's rows hold candidates (every instance above a floor score); what passes today's class thresholds, the
cross-prompt NMS and the relation rules (``selection``, from ``sam-queries.yaml``) is chosen here, first, so
a threshold change re-curates a category without the model. A person's reviewed row replaces SAM3's as it
is (people are not thresholded). Then the filters of the seed's ``curate.py``: frames with no detections go, frames with only people go
(most video frames show someone; they teach little) unless ``keep_only_person``, instances outside the
chosen categories or below a minimum score go. Splits are grouped by video through ``core.split`` and
sticky: a video that already has a split anywhere in the dataset keeps it, so a frame never moves from
val to train behind an evaluation's back and the merged export has no video in two splits.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from samantics_dagster.core.curate.split import DEFAULT_RATIOS, assign_splits
from samantics_dagster.core.dataset.frame import CocoFrame, JsonInstances, usable
from samantics_dagster.core.dataset.schema import CURATED_COCO, CurateReason, CurateStatus, DedupeStatus, LabelStatus
from samantics_dagster.core.dataset.spec import Spec, SpecError
from samantics_dagster.core.label.candidates import Selection, select_text

CURATE_COLUMNS = CURATED_COCO.names
INCLUDED, EXCLUDED = CurateStatus.INCLUDED, CurateStatus.EXCLUDED
PERSON_SUPERCATEGORY = "person"


@dataclass(frozen=True)
class CurateSettings:
    keep_only_person: bool = False
    categories: tuple[str, ...] = ()  # category or supercategory names; empty keeps every category
    min_score: float = 0.0
    ratios: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RATIOS))
    seed: int = 0

    def chosen_ids(self, spec: Spec) -> set[int] | None:
        """Category ids to keep (``None``: all). Unknown names are an error: a typo must not empty the dataset."""
        if not self.categories:
            return None
        supers = spec.supercategories()
        by_name = spec.by_name()
        ids: set[int] = set()
        for name in self.categories:
            if name in by_name:
                ids.add(by_name[name].id)
            elif name in supers:
                ids.update(by_name[n].id for n in supers[name])
            else:
                raise SpecError(f"curate config: `categories` names {name!r}, which is neither a category nor a "
                                f"supercategory in coco-spec.json; use one of {sorted(by_name)} or {sorted(supers)}")
        return ids


@dataclass
class Curated:
    table: pd.DataFrame  # CURATE_COLUMNS, one row per accepted frame
    frames: dict[str, list[CocoFrame]]  # split -> included frames with their kept instances
    dropped_instances: Counter  # reason -> instances removed from included frames
    resplit_videos: list[str] = field(default_factory=list)  # had a split the ratios no longer have
    annotations_per_class: Counter = field(default_factory=Counter)  # category id -> instances in the files


def filter_instances(instances: Sequence[dict], width: int, height: int, spec: Spec,
                     settings: CurateSettings, chosen: set[int] | None) -> tuple[list[dict], str | None, Counter]:
    """The instances a frame keeps and, if none or only people remain, why the frame goes."""
    dropped: Counter = Counter()
    if not instances:
        return [], CurateReason.NO_DETECTIONS, dropped
    kept = [i for i in instances if float(i["score"]) >= settings.min_score]
    dropped[CurateReason.BELOW_MIN_SCORE] += len(instances) - len(kept)
    if not kept:
        return [], CurateReason.BELOW_MIN_SCORE, dropped
    before = len(kept)
    kept = [i for i in kept if chosen is None or int(i["category_id"]) in chosen]
    dropped[CurateReason.NOT_CHOSEN] += before - len(kept)
    if not kept:
        return [], CurateReason.NOT_CHOSEN, dropped
    before = len(kept)
    kept = [i for i in kept if usable(i, width, height)]
    dropped[CurateReason.UNUSABLE] += before - len(kept)  # empty mask or a sub-pixel box: trainers drop these anyway
    if not kept:
        return [], CurateReason.UNUSABLE, dropped
    people = {c.id for c in spec.categories if c.supercategory == PERSON_SUPERCATEGORY}
    if not settings.keep_only_person and all(int(i["category_id"]) in people for i in kept):
        return [], CurateReason.PERSON_ONLY, dropped
    return kept, None, dropped


def _rarest_label(frames: dict[str, list[int]]) -> dict[str, str]:
    """One stratification label per frame: its rarest category in this partition (splitters take one label)."""
    counts = Counter(c for ids in frames.values() for c in set(ids))
    return {d: str(min(set(ids), key=lambda c: (counts[c], c))) for d, ids in frames.items()}


def video_group(video_id: object, dhash: str) -> str:
    """The split group: the video, or the frame itself when its name carried no video id."""
    return str(video_id) if isinstance(video_id, str) and video_id else f"frame:{dhash}"


_LABEL_COLUMNS = ("dhash", "status", "width", "height", "instances", "rel_path")


class _LabelRows:
    """dhash -> its label row as a small dict, read from column arrays (a person's reviewed row replaces
    SAM3's); no dict per row of the table is built up front. ``human`` tells a reviewed row from SAM3's."""

    def __init__(self, labels: pd.DataFrame, reviewed: pd.DataFrame | None) -> None:
        self._columns: list[dict] = []
        self._at: dict[str, tuple[int, int]] = {}
        self._add(labels)
        if reviewed is not None and len(reviewed):
            self._add(reviewed[reviewed["status"] == "reviewed"].assign(status=LabelStatus.DONE))

    def _add(self, table: pd.DataFrame) -> None:
        if not len(table):
            return
        source = len(self._columns)
        self._columns.append({c: table[c].to_numpy() for c in _LABEL_COLUMNS})
        self._at.update({d: (source, k) for k, d in enumerate(self._columns[-1]["dhash"])})

    def get(self, dhash: str) -> dict | None:
        at = self._at.get(dhash)
        if at is None:
            return None
        columns = self._columns[at[0]]
        return {**{c: columns[c][at[1]] for c in _LABEL_COLUMNS}, "human": at[0] > 0}


def curate_partition(labels: pd.DataFrame, deduped: pd.DataFrame, spec: Spec, settings: CurateSettings,
                     previous_groups: Mapping[str, str] | None = None, category: str | None = None,
                     reviewed: pd.DataFrame | None = None, selection: Selection | None = None) -> Curated:
    """Curate one category: ``labels`` is its sam3_labels table, ``deduped`` its deduped_images table,
    ``previous_groups`` the split of every video already split anywhere in the dataset, ``reviewed`` its
    reviewed_labels table: a person's row replaces SAM3's for that frame. ``selection`` chooses among SAM3's
    candidates (``None``: every candidate passes, for tables whose rows hold no more than the labels)."""
    chosen = settings.chosen_ids(spec)
    accepted = deduped[deduped["status"] == DedupeStatus.ACCEPTED].drop_duplicates("dhash")
    # columns and row positions, not one dict per row: instance texts are parsed one frame at a time
    label_rows = _LabelRows(labels, reviewed)
    rows: list[dict] = []
    kept: dict[str, JsonInstances] = {}
    classes: dict[str, list[int]] = {}  # category ids of each kept frame's instances
    meta: dict[str, dict] = {}
    dropped: Counter = Counter()
    for frame in accepted.to_dict("records"):
        dhash, video = frame["dhash"], frame.get("video_id")
        video = video if isinstance(video, str) and video else None
        row = {"dhash": dhash, "rel_path": frame["rel_path"], "video_id": video, "status": EXCLUDED,
               "reason": None, "split": None, "n_annotations": 0}
        label = label_rows.get(dhash)
        if label is None:
            row["reason"] = CurateReason.NOT_LABELLED
        elif label["status"] != LabelStatus.DONE:
            row["reason"] = CurateReason.LABEL_FAILED
        else:
            w, h = int(label["width"]), int(label["height"])
            text = label["instances"]
            if selection is not None and not label["human"]:
                parsed, same = select_text(text, selection)
                text = text if same else json.dumps(parsed)
            else:
                parsed = json.loads(text)
            instances, reason, lost = filter_instances(parsed, w, h, spec, settings, chosen)
            if reason:
                row["reason"] = reason
            else:
                dropped.update(lost)
                kept[dhash] = JsonInstances.of(instances, text if len(instances) == len(parsed) else None)
                classes[dhash] = [int(i["category_id"]) for i in instances]
                meta[dhash] = {"width": w, "height": h, "source_path": label["rel_path"], "video_id": video}
                row.update(status=INCLUDED, n_annotations=len(instances))
        rows.append(row)

    groups = {d: video_group(meta[d]["video_id"], d) for d in kept}
    keys = sorted(kept)
    labels_for_split = _rarest_label(classes)
    # A video whose earlier split is no longer asked for (test turned off) is split again like a new one.
    wanted = {s for s, r in settings.ratios.items() if r > 0}
    previous = {g: s for g, s in (previous_groups or {}).items() if s in wanted}
    moved = sorted({g for g in groups.values() if g in (previous_groups or {}) and g not in previous})
    assignment = assign_splits(keys, [groups[k] for k in keys], [labels_for_split[k] for k in keys],
                               settings.ratios, seed=settings.seed, previous=previous)
    frames: dict[str, list[CocoFrame]] = {s: [] for s in settings.ratios if settings.ratios[s] > 0}
    for row in rows:
        split = assignment.get(row["dhash"])
        if row["status"] == INCLUDED and split is not None:
            row["split"] = split
            m = meta[row["dhash"]]
            frames.setdefault(split, []).append(CocoFrame(
                dhash=row["dhash"], width=m["width"], height=m["height"], instances=kept[row["dhash"]],
                source_path=m["source_path"], video_id=m["video_id"], category=category))
    per_class = Counter(c for d in assignment if d in classes for c in classes[d])
    return Curated(table=to_table(rows), frames=frames, dropped_instances=dropped, resplit_videos=moved,
                   annotations_per_class=per_class)


def to_table(rows: Sequence[dict]) -> pd.DataFrame:
    return CURATED_COCO.frame(rows)


def split_of_groups(tables: Mapping[str, pd.DataFrame], skip: str | None = None) -> dict[str, str]:
    """Video (group) -> split over the curated tables of the dataset, skipping one category's if asked."""
    out: dict[str, str] = {}
    for category, table in sorted(tables.items()):
        if category == skip or table is None or not len(table):
            continue
        inc = table[(table["status"] == INCLUDED) & table["split"].notna()]
        for dhash, video, split in zip(inc["dhash"], inc["video_id"], inc["split"]):
            out.setdefault(video_group(video if pd.notna(video) else None, dhash), str(split))
    return out
