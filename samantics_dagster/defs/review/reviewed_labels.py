"""``reviewed_labels``: completed Label Studio reviews back as rows that curated_coco prefers over SAM3's."""

import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from samantics_dagster.core.dataset.spec import load_spec
from samantics_dagster.core.dataset.tables import write_table
from samantics_dagster.core.review.agreement import per_class_summary
from samantics_dagster.core.review.loop import pull_reviews
from samantics_dagster.defs.metadata import md_table
from samantics_dagster.defs.partitions import category_partitions
from samantics_dagster.defs.resources.dataset import DatasetResource
from samantics_dagster.defs.review.resources import LabelStudioResource
from samantics_dagster.defs.review.review_tasks import REVIEW_AGREEMENT, REVIEWED_LABELS, outcome_counts, spec_ids


@asset(
    partitions_def=category_partitions,
    io_manager_key="table_io_manager",
    group_name="review",
    kinds={"python", "parquet"},
    description="Completed reviews as `reviewed` rows (labeler human:{annotator}, the person's instances), and per "
                "instance their agreement with SAM3 (mask IoU, class changed, added, deleted) in "
                "tables/review_agreement/{category}.parquet and per class in the metadata.",
)
def reviewed_labels(context: AssetExecutionContext, dataset: DatasetResource, label_studio: LabelStudioResource,
                    review_tasks: pd.DataFrame, sam3_labels: pd.DataFrame) -> MaterializeResult:
    """Writes its two tables itself (the agreement table has no asset of its own), so it returns no value."""
    category = context.partition_key
    layout = dataset.layout
    spec = load_spec(layout.spec)
    previous = dataset.table(REVIEWED_LABELS, category)
    with label_studio.client() as client:
        result = pull_reviews(client, review_tasks, sam3_labels, previous, spec_ids(spec))
    write_table(result.table, layout.table(REVIEWED_LABELS, category))
    write_table(result.agreement, layout.table(REVIEW_AGREEMENT, category))
    names = {c.id: c.name for c in spec.categories}
    per_class = per_class_summary(result.agreement, names)
    context.log.info(f"{category}: {len(result.table)} reviewed frames ({result.new} new or changed) of "
                     f"{len(review_tasks)} tasks; outcomes {outcome_counts(result.agreement)}")
    matched = result.agreement[result.agreement["outcome"] == "matched"]
    return MaterializeResult(metadata={
        "reviewed": len(result.table),
        "new_or_changed": result.new,
        "tasks": len(review_tasks),
        "annotators": MetadataValue.json(result.annotators),
        "outcomes": MetadataValue.json(outcome_counts(result.agreement)),
        "mean_iou_kept": round(float(matched["iou"].mean()), 4) if len(matched) else 0.0,
        "agreement_per_class": MetadataValue.json(per_class),
        "agreement_table": str(layout.table(REVIEW_AGREEMENT, category)),
        "dagster/row_count": len(result.table),
        "latest_reviews": md_table(result.table.sort_values("updated_at", ascending=False)[
            ["rel_path", "task_id", "annotator", "n_instances", "updated_at"]]),
    })
