"""``reviewed_labels``: completed Label Studio reviews back as rows that curated_coco prefers over SAM3's.

Several people may annotate one task: every person's annotation lands in ``review_annotations``, the
consensus of the task's people in ``reviewed_labels`` (one row per task, what curation uses), and tasks whose
people agree under the bound go back to Label Studio for one more person.
"""

import pandas as pd
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from samantics_dagster.core.dataset.schema import TableName
from samantics_dagster.core.dataset.spec import load_spec
from samantics_dagster.core.dataset.tables import write_table
from samantics_dagster.core.label.candidates import shown_table
from samantics_dagster.core.label.taxonomy import dataset_selection
from samantics_dagster.core.review.agreement import per_class_summary
from samantics_dagster.core.review.consensus import class_summary, person_summary
from samantics_dagster.core.review.loop import ConsensusSettings, pull_reviews
from samantics_dagster.defs.metadata import column_schema, md_table, table_metadata
from samantics_dagster.defs.partitions import category_partitions
from samantics_dagster.defs.resources.dataset import DatasetResource
from samantics_dagster.defs.review.resources import LabelStudioResource
from samantics_dagster.defs.review.review_tasks import REVIEW_AGREEMENT, REVIEWED_LABELS, outcome_counts, spec_ids

REVIEW_ANNOTATIONS = TableName.REVIEW_ANNOTATIONS


class ReviewedLabelsConfig(Config):
    """How several people's annotations of a frame become the one curation uses, and when to ask one more."""

    match_iou: float = Field(0.5, gt=0.0, le=1.0, description="Regions of different people at least this close are one object (pixel majority of 3+).")
    agreement_bound: float = Field(0.6, ge=0.0, le=1.0, description="A frame whose people agree less (region-IoU agreement) goes back for one more person.")
    max_annotators: int = Field(3, ge=1, description="Never ask for more people than this on one frame.")
    rerequest: bool = Field(True, description="Send low-agreement frames back to Label Studio (raise the task's overlap).")

    def settings(self) -> ConsensusSettings:
        return ConsensusSettings(match_iou=self.match_iou, bound=self.agreement_bound,
                                 max_people=self.max_annotators, rerequest=self.rerequest)


@asset(
    partitions_def=category_partitions,
    io_manager_key="table_io_manager",
    group_name="review",
    kinds={"python", "parquet"},
    description="Completed reviews as one `reviewed` row per task: the consensus of its people (one person: theirs; "
                "two: the more reliable person's; three or more: the pixel majority), labeler human:{annotator}. "
                "Beside it every person's annotation with their agreement (tables/review_annotations), and per "
                "instance SAM3 against the consensus (tables/review_agreement). Frames whose people agree under "
                "the bound go back to Label Studio for one more person.",
    metadata=column_schema(REVIEWED_LABELS),
)
def reviewed_labels(context: AssetExecutionContext, config: ReviewedLabelsConfig, dataset: DatasetResource,
                    label_studio: LabelStudioResource, review_tasks: pd.DataFrame,
                    sam3_labels: pd.DataFrame) -> MaterializeResult:
    """Writes its three tables itself (the agreement and annotation tables have no asset of their own), so it
    returns no value."""
    category = context.partition_key
    layout = dataset.layout
    spec = load_spec(layout.spec)
    # SAM3's side of the agreement: what passes today's thresholds (what the tasks showed, thresholds unchanged)
    candidates = sam3_labels  # where an accepted near miss is found again
    sam3_labels = shown_table(sam3_labels, dataset_selection(layout, spec))
    previous = dataset.table(REVIEWED_LABELS, category)
    with label_studio.client() as client:
        result = pull_reviews(client, review_tasks, sam3_labels, previous, spec_ids(spec), config.settings(),
                              previous_people=dataset.table(REVIEW_ANNOTATIONS, category), candidates=candidates)
    write_table(result.table, layout.table(REVIEWED_LABELS, category))
    write_table(result.agreement, layout.table(REVIEW_AGREEMENT, category))
    write_table(result.annotations, layout.table(REVIEW_ANNOTATIONS, category))
    names = {c.id: c.name for c in spec.categories}
    per_class = per_class_summary(result.agreement, names)
    people = pd.DataFrame(class_summary(result.people, {t: c.instances for t, c in result.agreed.items()},
                                        result.sam, names))
    persons = pd.DataFrame(person_summary(result.people, result.agreed))
    table = result.table
    several = table[table["n_annotators"] > 1]
    context.log.info(f"{category}: {len(table)} reviewed frames ({result.new} new or changed, {len(several)} by "
                     f"several people) of {len(review_tasks)} tasks; outcomes {outcome_counts(result.agreement)}; "
                     f"{len(result.asked_again)} sent back for one more person")
    matched = result.agreement[result.agreement["outcome"] == "matched"]
    asked = table[table["task_id"].isin(list(result.asked_again))]
    return MaterializeResult(metadata={
        "reviewed": len(table),
        "new_or_changed": result.new,
        "tasks": len(review_tasks),
        "annotators": MetadataValue.json(result.annotators),
        "annotations": len(result.annotations),
        "frames_by_several_people": len(several),
        "consensus_methods": MetadataValue.json({str(k): int(v) for k, v in table["consensus"].value_counts().items()}),
        "people_agreement_mean": round(float(several["people_agreement"].mean()), 4) if len(several) else None,
        "sam3_agreement_mean_same_frames": round(float(several["sam_agreement"].mean()), 4) if len(several) else None,
        "sam3_agreement_mean": round(float(table["sam_agreement"].mean()), 4) if len(table) else None,
        "people_vs_sam3_per_class": md_table(people, limit=100),
        "people_vs_sam3_per_class_json": MetadataValue.json(people.to_dict("records")),
        "annotators_agreement": md_table(persons, limit=100),
        "sent_back_this_pull": MetadataValue.json({str(k): v for k, v in result.asked_again.items()}),
        "sent_back": md_table(asked[["rel_path", "task_id", "n_annotators", "people_agreement", "asked_again"]]),
        "near_misses": MetadataValue.json(result.near_misses),  # shown to people, and kept by their tick
        "outcomes": MetadataValue.json(outcome_counts(result.agreement)),
        "mean_iou_kept": round(float(matched["iou"].mean()), 4) if len(matched) else 0.0,
        "agreement_per_class": MetadataValue.json(per_class),
        "agreement_table": str(layout.table(REVIEW_AGREEMENT, category)),
        "annotations_table": str(layout.table(REVIEW_ANNOTATIONS, category)),
        # the two tables written beside it have no asset of their own: their columns are shown here
        "annotations_table_columns": MetadataValue.table_schema(column_schema(REVIEW_ANNOTATIONS)["dagster/column_schema"]),
        "agreement_table_columns": MetadataValue.table_schema(column_schema(REVIEW_AGREEMENT)["dagster/column_schema"]),
        **table_metadata(REVIEWED_LABELS, table),
        "latest_reviews": md_table(table.sort_values("updated_at", ascending=False)[
            ["rel_path", "task_id", "annotator", "n_annotators", "consensus", "people_agreement", "sam_agreement",
             "n_instances", "updated_at"]]),
    })
