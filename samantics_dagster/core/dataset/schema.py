"""The dataset contract's vocabulary: table names, statuses, reasons, splits, and each table's columns.

Everything that reads or writes a per-frame table, or shows it in Dagster's UI, takes its names and dtypes
from here: the writers cast through :meth:`TableSchema.frame`, the readers compare against the enums, and
``dagster/column_schema`` is built from :attr:`TableSchema.columns`. The enums are ``StrEnum``, so a value
compares equal to the plain string stored in parquet (``table.status == LabelStatus.DONE``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import pandas as pd


class TableName(StrEnum):
    """Per-frame tables, named after the partitioned asset that owns them (``tables/{name}/{category}.parquet``)."""

    INGRESS_FRAMES = "ingress_frames"
    DEDUPED_IMAGES = "deduped_images"
    SAM3_LABELS = "sam3_labels"
    CURATED_COCO = "curated_coco"
    REVIEW_TASKS = "review_tasks"
    REVIEWED_LABELS = "reviewed_labels"
    REVIEW_AGREEMENT = "review_agreement"  # written beside reviewed_labels, by the same asset
    REVIEW_ANNOTATIONS = "review_annotations"  # every person's annotation, beside reviewed_labels, same asset
    PROMPT_TRIALS = "prompt_trials"  # the reviewed frames labelled with each class's alternative phrasings


class DedupeStatus(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class DedupeReason(StrEnum):
    """Why a frame was rejected (an accepted frame has no reason)."""

    EXACT = "exact"                # the same bytes as an earlier frame
    DHASH = "dhash"                # within the dhash threshold of an accepted frame anywhere in the dataset
    ORB = "orb"                    # ORB + geometry: the same view as a recent frame of its video
    DECODE_ERROR = "decode_error"  # the file can't be decoded (detail says why and what to do)
    UNPARSED = "unparsed"          # the file name is not {video_id}_{timestamp_ms}.jpg


BAD_INPUT_REASONS = (DedupeReason.DECODE_ERROR, DedupeReason.UNPARSED)


class LabelStatus(StrEnum):
    DONE = "done"
    FAILED = "failed"


class CurateStatus(StrEnum):
    INCLUDED = "included"
    EXCLUDED = "excluded"


class CurateReason(StrEnum):
    """Why a labelled frame is not in the export."""

    NOT_LABELLED = "not_labelled"
    LABEL_FAILED = "label_failed"
    NO_DETECTIONS = "no_detections"
    BELOW_MIN_SCORE = "below_min_score"
    NOT_CHOSEN = "not_chosen"      # none of its classes is in `categories`
    UNUSABLE = "unusable"          # only empty masks or sub-pixel boxes, which trainers drop
    PERSON_ONLY = "person_only"


class ReviewStatus(StrEnum):
    SENT = "sent"          # a task exists in Label Studio
    REVIEWED = "reviewed"  # a person's annotation came back


class AgreementOutcome(StrEnum):
    """What a person did to one SAM3 instance (or added)."""

    MATCHED = "matched"
    CLASS_CHANGED = "class_changed"
    DELETED = "deleted"
    ADDED = "added"


HUMAN_PREFIX = "human:"
"""Prefix of ``labeler`` on reviewed rows: ``human:{annotator}``."""


class Split(StrEnum):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


SPLITS: tuple[str, ...] = tuple(s.value for s in Split)

IMPORTED_PREFIX = "imported:"
"""Prefix of ``labeler`` (sam3_labels) and ``settings`` (deduped_images) on rows brought in by
``samantics import-legacy``: decisions taken by an older pipeline, kept as done unless asked otherwise."""


def is_imported(value: object) -> bool:
    return isinstance(value, str) and value.startswith(IMPORTED_PREFIX)


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # a pandas dtype: "string", "Int64" (nullable), "int64"
    description: str


@dataclass(frozen=True)
class TableSchema:
    """One table's columns in order, their dtypes, and the key its rows are sorted by."""

    name: TableName
    columns: tuple[Column, ...]
    key: str | None  # rows are sorted by it; None keeps the writer's order

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def frame(self, rows: Iterable[Mapping] | pd.DataFrame) -> pd.DataFrame:
        """Rows (dicts or a frame) as this table: declared columns in order, declared dtypes, sorted by key."""
        df = rows.reindex(columns=self.names) if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows), columns=self.names)
        for col in self.columns:
            nullable = col.dtype in ("Int64", "Float64")  # extension dtypes: None stays <NA>
            df[col.name] = pd.array(df[col.name], dtype=col.dtype) if nullable else df[col.name].astype(col.dtype)
        return df.sort_values(self.key, ignore_index=True) if self.key else df


def _cols(*spec: tuple[str, str, str]) -> tuple[Column, ...]:
    return tuple(Column(*c) for c in spec)


_S, _I, _N = "string", "Int64", "int64"

INGRESS_FRAMES = TableSchema(TableName.INGRESS_FRAMES, _cols(
    ("rel_path", _S, "frame path relative to GRABBY_WORKDIR: {source}/{category}/{video_id}_{timestamp_ms}.jpg"),
    ("source", _S, "grabby source folder (youtube, vimeo...)"),
    ("category", _S, "category folder: the partition key"),
    ("video_id", _S, "from the file name; null when it does not parse"),
    ("timestamp_ms", _I, "from the file name; null when it does not parse"),
    ("bytes", _N, "file size"),
    ("mtime_ns", _N, "file mtime: with the size, the frame's fingerprint for re-runs"),
    ("parse_error", _S, "why the name does not parse, and how to fix it"),
), key="rel_path")

DEDUPED_IMAGES = TableSchema(TableName.DEDUPED_IMAGES, _cols(
    ("rel_path", _S, "frame path relative to GRABBY_WORKDIR"),
    ("source", _S, "grabby source folder"),
    ("video_id", _S, "video the frame is from"),
    ("timestamp_ms", _I, "position in the video"),
    ("bytes", _N, "file size when decided"),
    ("mtime_ns", _N, "file mtime when decided"),
    ("content_hash", _S, "digest of the file's bytes (exact duplicates)"),
    ("status", _S, "accepted | rejected"),
    ("reason", _S, "exact | dhash | orb | decode_error | unparsed (rejected rows)"),
    ("dup_of", _S, "rel_path or dhash of the frame this one duplicates"),
    ("detail", _S, "distances behind the decision, or the error and its fix"),
    ("dhash", _S, "64-bit difference hash, 16 hex chars: the name in images/ (where another scene's image "
                  "had that name, the nearest free code: detail says so)"),
    ("width", _I, "pixels"),
    ("height", _I, "pixels"),
    ("dhash_threshold", _I, "the threshold this frame was judged with; -1: low structure (or a hash another scene "
                            "shares), its hash alone never decides"),
    ("settings", _S, "fingerprint of the dedupe settings (imported:... for legacy rows)"),
), key="rel_path")

SAM3_LABELS = TableSchema(TableName.SAM3_LABELS, _cols(
    ("dhash", _S, "the image: images/{dhash}.jpg"),
    ("rel_path", _S, "the frame it was accepted from"),
    ("status", _S, "done | failed"),
    ("error", _S, "why labelling failed"),
    ("n_instances", _I, "candidates kept (scores above the candidate floor)"),
    ("instances", _S, "JSON list of candidates {category_id, bbox_xyxy, score, rle{size,counts}, area}; "
                      "sam-queries.yaml's thresholds, NMS and relation rules choose among them when curating"),
    ("labeler", _S, "model + queries + candidate floor fingerprint (imported:... for legacy rows)"),
    ("width", _I, "pixels"),
    ("height", _I, "pixels"),
), key="dhash")

CURATED_COCO = TableSchema(TableName.CURATED_COCO, _cols(
    ("dhash", _S, "the image"),
    ("rel_path", _S, "the frame it was accepted from"),
    ("video_id", _S, "the video: the unit of the split"),
    ("status", _S, "included | excluded"),
    ("reason", _S, "why excluded"),
    ("split", _S, "train | val | test (included rows)"),
    ("n_annotations", _I, "annotations in the COCO export"),
), key="dhash")

REVIEW_TASKS = TableSchema(TableName.REVIEW_TASKS, _cols(
    ("dhash", _S, "the image sent"),
    ("rel_path", _S, "the frame it was accepted from"),
    ("status", _S, "sent"),
    ("project_id", _I, "Label Studio project"),
    ("task_id", _I, "Label Studio task"),
    ("priority", "float64", "triage priority (higher: more worth a look)"),
    ("reasons", _S, "the triage signals behind the priority"),
    ("audit", "bool", "picked by the random audit share, not by a signal"),
    ("labeler", _S, "the sam3_labels labeler whose instances were pre-annotations"),
    ("sent_at", _S, "ISO time the task was created"),
    ("annotators_wanted", _I, "distinct people asked to annotate it (Label Studio's task overlap, at least)"),
), key="task_id")

REVIEWED_LABELS = TableSchema(TableName.REVIEWED_LABELS, _cols(
    ("dhash", _S, "the image"),
    ("rel_path", _S, "the frame it was accepted from"),
    ("status", _S, "reviewed"),
    ("task_id", _I, "Label Studio task"),
    ("annotation_id", _I, "the Label Studio annotation taken whole (null: a pixel majority of several)"),
    ("annotator", _S, "who reviewed it (several: their e-mails joined by '+')"),
    ("labeler", _S, "human:{annotator}"),
    ("n_instances", _I, "instances in the consensus: the version curation uses"),
    ("instances", _S, "JSON list of the consensus instances, as in sam3_labels"),
    ("width", _I, "pixels"),
    ("height", _I, "pixels"),
    ("updated_at", _S, "the latest change of its annotations"),
    ("agreement", _S, "JSON: SAM3 against the consensus, counts of matched / class_changed / deleted / added"),
    ("n_annotators", _I, "people whose completed annotation is behind it (skipped ones left out)"),
    ("consensus", _S, "single | best (of two, the more reliable person's) | majority (pixel majority of 3+)"),
    ("people_agreement", "Float64", "mean over pairs of people of their region-IoU agreement (null: one person)"),
    ("sam_agreement", "Float64", "SAM3's region-IoU agreement with the consensus, the same measure"),
    ("annotations", _S, "JSON [[annotation id, updated_at], ...] behind it: a change is a new review"),
    ("asked_again", _I, "people asked for when its agreement was under the bound (null: never sent back)"),
), key="dhash")

REVIEW_ANNOTATIONS = TableSchema(TableName.REVIEW_ANNOTATIONS, _cols(
    ("dhash", _S, "the image"),
    ("task_id", _I, "Label Studio task"),
    ("annotation_id", _I, "Label Studio annotation (the person's latest completed one on the task)"),
    ("annotator", _S, "who completed it (e-mail)"),
    ("n_instances", _I, "instances the person drew or kept"),
    ("instances", _S, "JSON list of the person's instances, as in sam3_labels"),
    ("updated_at", _S, "the annotation's last change"),
    ("agreement_people", "Float64", "mean region-IoU agreement with the other people on the frame (null: alone)"),
    ("agreement_consensus", "float64", "region-IoU agreement with the frame's consensus"),
    ("per_class", _S, "JSON {category id: agreement with the consensus}"),
    ("chosen", "bool", "this annotation is the consensus, taken whole"),
), key="annotation_id")

REVIEW_AGREEMENT = TableSchema(TableName.REVIEW_AGREEMENT, _cols(
    ("dhash", _S, "the image"),
    ("task_id", _I, "Label Studio task"),
    ("sam_index", _I, "the SAM3 instance (null: added by the person)"),
    ("human_index", _I, "the person's instance (null: deleted)"),
    ("sam_class", _I, "SAM3's category id"),
    ("human_class", _I, "the person's category id"),
    ("iou", "float64", "mask IoU of the matched pair"),
    ("sam_score", "Float64", "SAM3's score"),
    ("outcome", _S, "matched | class_changed | deleted | added"),
), key=None)

PROMPT_TRIALS = TableSchema(TableName.PROMPT_TRIALS, _cols(
    ("dhash", _S, "the reviewed image"),
    ("rel_path", _S, "the frame it was accepted from"),
    ("category_id", _I, "the class the phrasing is tried for"),
    ("prompt", _S, "the phrasing: one listed under the class's alternatives, or its query (the reference)"),
    ("status", _S, "done | failed"),
    ("error", _S, "why labelling failed"),
    ("n_instances", _I, "candidates kept (scores above the candidate floor)"),
    ("instances", _S, "JSON list of the phrasing's candidates, as in sam3_labels (category_id: the class)"),
    ("labeler", _S, "model + this phrasing + candidate floor fingerprint: a rerun labels the pairs it lacks"),
    ("width", _I, "pixels"),
    ("height", _I, "pixels"),
), key=None)  # one row per (image, class, phrasing); written sorted by class, phrasing, image

TABLES: dict[TableName, TableSchema] = {t.name: t for t in (
    INGRESS_FRAMES, DEDUPED_IMAGES, SAM3_LABELS, CURATED_COCO, REVIEW_TASKS, REVIEWED_LABELS, REVIEW_AGREEMENT,
    REVIEW_ANNOTATIONS, PROMPT_TRIALS)}
