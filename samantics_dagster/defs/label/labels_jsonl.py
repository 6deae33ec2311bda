"""``labels_jsonl``: the dataset-wide ``labels.jsonl`` the old tools read, rebuilt after labelling settles."""

from dagster import AssetExecutionContext, MaterializeResult, asset

from samantics_dagster.core.label.jsonl_segments import write_labels_jsonl
from samantics_dagster.defs.automation.conditions import EXPORT_CONDITION
from samantics_dagster.defs.label.sam3_labels import sam3_labels
from samantics_dagster.defs.resources.dataset import DatasetResource


@asset(
    deps=[sam3_labels],
    group_name="label",
    automation_condition=EXPORT_CONDITION,
    kinds={"json"},
    description="labels.jsonl: one record per labelled image of every category (the seed's format), for "
                "`samantics stats|split|to-coco` and the old scripts.",
)
def labels_jsonl(context: AssetExecutionContext, dataset: DatasetResource) -> MaterializeResult:
    path = dataset.layout.labels_jsonl
    with dataset.lock("labels.jsonl"):  # two rebuilds at once must not interleave their renames
        # only the categories whose table changed are re-read; the file is their segments concatenated
        result = write_labels_jsonl(dataset.layout)
    context.log.info(f"labels.jsonl: {result.records} records; segments rebuilt for {result.rebuilt or 'none'}")
    return MaterializeResult(metadata={"path": str(path), "records": result.records,
                                       "segments_rebuilt": len(result.rebuilt), "segments_removed": len(result.removed)})
