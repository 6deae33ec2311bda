"""``review_tasks``: the category's frames most worth a person's look, sent to Label Studio with SAM3's labels."""

import json

import pandas as pd
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from samantics_dagster.core.dataset.schema import TableName
from samantics_dagster.core.dataset.spec import Spec, load_spec
from samantics_dagster.core.dataset.tables import write_table
from samantics_dagster.core.label.candidates import PASSENGER, Selection, shown_table
from samantics_dagster.core.label.taxonomy import dataset_selection
from samantics_dagster.core.review.convert import SLOTS
from samantics_dagster.core.review.loop import PeoplePerTask, ensure_project, send_frames
from samantics_dagster.core.review.near_miss import NearMiss, NearMissSettings, near_misses
from samantics_dagster.core.review.triage import RelationPair, TriageSettings, triage_frames
from samantics_dagster.core.review_backend.connect import connect_backend
from samantics_dagster.defs.metadata import md_table, table_metadata
from samantics_dagster.defs.partitions import category_partitions
from samantics_dagster.defs.resources.dataset import DatasetResource
from samantics_dagster.defs.review.resources import LabelStudioResource

REVIEW_TASKS, REVIEWED_LABELS, REVIEW_AGREEMENT = TableName.REVIEW_TASKS, TableName.REVIEWED_LABELS, TableName.REVIEW_AGREEMENT


class ReviewTasksConfig(Config):
    """Which frames count as uncertain (the class thresholds are sam-queries.yaml's) and how many to send."""

    band: float = Field(0.1, ge=0.0, le=1.0, description="Scores in [threshold, threshold + band) are borderline.")
    overlap_iou: float = Field(0.3, ge=0.0, le=1.0, description="Kept masks of different classes overlapping above this.")
    relation_margin: float = Field(0.1, ge=0.0, le=1.0, description="Containment this close to a relation rule's thresholds.")
    rare_max_instances: int = Field(3, ge=0, description="A class with at most this many instances in the category is rare.")
    audit_share: float = Field(0.05, ge=0.0, le=1.0, description="Random share of done frames sent for an unbiased measure.")
    seed: int = Field(0, description="Seed of the audit draw (a frame's draw never changes as frames are added).")
    max_tasks: int = Field(200, ge=0, description="New tasks per run, highest priority first.")
    recreate_project: bool = Field(False, description="The recorded project was deleted: send the unreviewed frames to a new one.")
    annotators_audit: int = Field(2, ge=1, description="Distinct people per audit task (agreement between people is measured there).")
    annotators_other: int = Field(1, ge=1, description="Distinct people per other task: the project's annotations per task.")
    near_miss_band: float = Field(0.15, ge=0.0, le=1.0, description=(
        "Candidates scored in [threshold - band, threshold] go with the task as near misses, for a person to accept with one click (0: none)."))
    near_miss_max: int = Field(5, ge=0, le=SLOTS, description="Near misses per task at most, the closest to their threshold first.")

    def near_misses(self) -> NearMissSettings:
        return NearMissSettings(band=self.near_miss_band, max_per_frame=self.near_miss_max)

    def people(self) -> PeoplePerTask:
        return PeoplePerTask(audit=self.annotators_audit, other=self.annotators_other)

    def settings(self, spec: Spec, selection: Selection) -> TriageSettings:
        ids = {c.name: c.id for c in spec.categories}
        relations: tuple[RelationPair, ...] = ()
        if {PASSENGER.subject, PASSENGER.container, PASSENGER.becomes} <= ids.keys():
            relations = (RelationPair(frozenset({ids[PASSENGER.subject], ids[PASSENGER.becomes]}), ids[PASSENGER.container],
                                      (PASSENGER.loose_containment, PASSENGER.min_containment)),)
        return TriageSettings(score_thresh=selection.default, band=self.band, overlap_iou=self.overlap_iou,
                              category_thresh=dict(selection.thresholds),
                              relation_margin=self.relation_margin, relations=relations,
                              rare_max_instances=self.rare_max_instances, audit_share=self.audit_share, seed=self.seed)


@asset(
    partitions_def=category_partitions,
    io_manager_key="table_io_manager",
    group_name="review",
    kinds={"python", "parquet"},
    description="Triage of sam3_labels (borderline scores, overlaps, relation decisions near a threshold, rare "
                "classes, a seeded audit share) sent to a Label Studio project with what passes today's thresholds as "
                "pre-annotations, and the near misses (candidates just below their class threshold) beside them, "
                "each with a box that keeps it in one click; each task asking for its number of people (2 for the audit share, 1 for the "
                "rest); one row per task sent (never sent twice).",
)
def review_tasks(context: AssetExecutionContext, config: ReviewTasksConfig, dataset: DatasetResource,
                 label_studio: LabelStudioResource, sam3_labels: pd.DataFrame) -> MaterializeResult:
    """Writes its own table after every batch sent (a failure mid-run keeps what was sent), so it returns
    no value: the IO manager only reads the table for reviewed_labels."""
    category = context.partition_key
    layout = dataset.layout
    spec = load_spec(layout.spec)
    selection = dataset_selection(layout, spec)
    candidates = dict(zip(sam3_labels["dhash"], sam3_labels["instances"]))
    sam3_labels = shown_table(sam3_labels, selection)  # what passes today's thresholds: triaged and pre-annotated
    near_settings = config.near_misses()
    near_sent: dict[str, int] = {}

    def near(dhash: str) -> list[NearMiss]:
        found = near_misses(json.loads(candidates[dhash]), selection, near_settings)
        near_sent[dhash] = len(found)
        return found
    path = layout.table(REVIEW_TASKS, category)
    previous = dataset.table(REVIEW_TASKS, category)
    reviewed = dataset.table(REVIEWED_LABELS, category)
    chosen = triage_frames(sam3_labels, config.settings(spec, selection))
    names = {c.id: c.name for c in spec.categories}
    with label_studio.client() as client:
        project_id, created, rows = ensure_project(
            client, label_studio.project_title(category), [c.name for c in spec.categories], previous,
            label_studio.storage_path(dataset.dataset_path), config.recreate_project, config.annotators_other)
        result = send_frames(
            client, project_id, category, chosen, sam3_labels, rows, names,
            lambda d: label_studio.image_url(dataset.dataset_path, d),
            skip=set(reviewed["dhash"]) if reviewed is not None else set(), max_tasks=config.max_tasks,
            write=lambda df: write_table(df, path), people=config.people(), near=near)
        # after the import, so that the project's model version stays SAM3's (see connect_backend)
        ml = connect_backend(client, project_id, label_studio.ml_backend_url) if label_studio.ml_backend_url else None
    if ml is not None and ml.status == "unreachable":
        context.log.warning(f"click-to-mask backend {label_studio.ml_backend_url} not connected to project {project_id}: "
                            f"{ml.detail}; the next run tries again")
    table = result.table
    write_table(table, path)
    reasons: dict[str, int] = {}
    for t in chosen:
        for r in t.reasons:
            reasons[r] = reasons.get(r, 0) + 1
    context.log.info(f"{category}: {result.sent} tasks sent, {result.adopted} adopted, {len(table)} in project "
                     f"{project_id} ({label_studio.url}); triage chose {len(chosen)} of {len(sam3_labels)} frames")
    return MaterializeResult(metadata={
        "project_id": project_id,
        "project_created": created,
        "label_studio_url": label_studio.url,
        "ml_backend": ml.status if ml is not None else "off (LABEL_STUDIO_ML_BACKEND_URL is not set)",
        "sent_this_run": result.sent,
        "adopted": result.adopted,
        "tasks": len(table),
        "triaged": len(chosen),
        "frames_by_reason": MetadataValue.json(reasons),
        "audit_frames": int(table["audit"].sum()) if len(table) else 0,
        "overlap_raised": result.overlap_raised,
        "near_misses_sent": sum(near_sent.values()),
        "tasks_with_near_misses": sum(1 for n in near_sent.values() if n),
        "people_per_task": MetadataValue.json({"audit": config.annotators_audit, "other": config.annotators_other}),
        **table_metadata(REVIEW_TASKS, table),
        "top_priorities": md_table(table.sort_values("priority", ascending=False)[["rel_path", "task_id", "priority", "reasons"]]),
    })


def spec_ids(spec: Spec) -> dict[str, int]:
    return {c.name: c.id for c in spec.categories}


def outcome_counts(agreement: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in agreement["outcome"].value_counts().items()} if len(agreement) else {}


def dumps(obj: object) -> str:
    return json.dumps(obj, sort_keys=True)
