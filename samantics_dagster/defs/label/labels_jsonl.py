"""``labels_jsonl``: the dataset-wide ``labels.jsonl`` the old tools read, rebuilt after labelling settles."""

from dagster import AssetExecutionContext, MaterializeResult, asset

from samantics_dagster.core.label.jsonl_segments import write_labels_jsonl
from samantics_dagster.defs.automation.conditions import EXPORT_CONDITION
from samantics_dagster.defs.export_config import ExportConfig
from samantics_dagster.defs.label.sam3_labels import sam3_labels
from samantics_dagster.defs.resources.dataset import DatasetResource


@asset(
    deps=[sam3_labels, "curated_coco"],  # curated_coco: re-curated after a threshold change, which changes the records
    group_name="label",
    automation_condition=EXPORT_CONDITION,
    kinds={"json"},
    description="labels.jsonl: one record per labelled image of every category (the seed's format; the instances "
                "that pass sam-queries.yaml's thresholds), for "
                "`samantics stats|split|to-coco` and the old scripts.",
)
def labels_jsonl(context: AssetExecutionContext, config: ExportConfig, dataset: DatasetResource) -> MaterializeResult:
    path = dataset.layout.labels_jsonl
    with dataset.lock("labels.jsonl"):  # two rebuilds at once must not interleave their renames
        # only the categories whose table changed are re-read; the file is their segments concatenated,
        # rewritten while the dataset is small and by the full export above SAMANTICS_SINGLE_FILES_MAX_IMAGES
        result = write_labels_jsonl(dataset.layout, due=config.due)
    if result.stale_temps:
        context.log.info(f"removed {result.stale_temps} temp file(s) a killed labels.jsonl rebuild left")
    state = "rewritten" if result.written else ("current" if result.current else "stale")
    context.log.info(f"labels.jsonl: {result.records} records, {state}; segments rebuilt for {result.rebuilt or 'none'}"
                     + ("" if result.written else f" (above {config.limit} records the full export rewrites it)"))
    return MaterializeResult(metadata={"path": str(path), "records": result.records, "labels_jsonl": state,
                                       "segments_rebuilt": len(result.rebuilt), "segments_removed": len(result.removed)})
