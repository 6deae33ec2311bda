"""Checks on dedupe: the store holds what the table accepted, and no accepted pair is a near-duplicate."""

import pandas as pd
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from samantics_dagster.core.dataset.schema import DedupeStatus, TableName
from samantics_dagster.core.dedupe.audit import AUDIT_COLUMNS, near_duplicate_violations, partition_violations
from samantics_dagster.core.export.shards import load_manifest, written_in_run
from samantics_dagster.defs.curate.coco_dataset import coco_dataset
from samantics_dagster.defs.ingest.dedupe import deduped_images
from samantics_dagster.defs.metadata import md_table
from samantics_dagster.defs.partitions import category_partitions
from samantics_dagster.defs.resources.dataset import DatasetResource


@asset_check(asset=deduped_images, partitions_def=category_partitions, blocking=True,
             description="Every accepted frame of the partition has its file images/{dhash}.jpg.")
def accepted_frames_in_store(
    context: AssetCheckExecutionContext, dataset: DatasetResource, deduped_images: pd.DataFrame
) -> AssetCheckResult:
    store = dataset.store()
    accepted = deduped_images[deduped_images["status"] == DedupeStatus.ACCEPTED]
    missing = [h for h in accepted["dhash"] if not store.has(h)]
    return AssetCheckResult(
        passed=not missing,
        metadata={"accepted": len(accepted), "missing": len(missing),
                  "first_missing": MetadataValue.text(", ".join(missing[:10]) or "none")},
        description=None if not missing else "accepted rows without a stored file: re-run without dry_run to copy them",
    )


@asset_check(asset=deduped_images, partitions_def=category_partitions,
             description="No accepted frame of this partition is within the dhash threshold of another accepted "
                         "frame of the dataset (this partition's against the rest: cost grows with the partition, "
                         "not the dataset; the all-pairs audit runs with the export, coco_dataset_no_near_duplicates).")
def no_near_duplicates_accepted(context: AssetCheckExecutionContext, dataset: DatasetResource) -> AssetCheckResult:
    tables = dataset.tables(TableName.DEDUPED_IMAGES, columns=AUDIT_COLUMNS)
    violations = partition_violations(tables, context.partition_key)
    mine = tables.get(context.partition_key)
    n_accepted = int((mine["status"] == DedupeStatus.ACCEPTED).sum()) if mine is not None else 0
    return AssetCheckResult(
        passed=violations.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={"accepted_in_partition": n_accepted, "violations": len(violations), "examples": md_table(violations.examples)},
    )


@asset_check(asset=coco_dataset,
             description="No two accepted frames in the whole dataset are within the dhash threshold (all pairs). "
                         "Runs with the full export (the runs that rewrite the merged coco/*.json); after every "
                         "other category run each partition's no_near_duplicates_accepted covered its own frames.")
def coco_dataset_no_near_duplicates(context: AssetCheckExecutionContext, dataset: DatasetResource) -> AssetCheckResult:
    if not written_in_run(load_manifest(dataset.layout), context.run.run_id):
        return AssetCheckResult(passed=True, severity=AssetCheckSeverity.WARN,
                                metadata={"scope": "partitions only: the all-pairs audit runs with the full export"})
    tables = dataset.tables(TableName.DEDUPED_IMAGES, columns=AUDIT_COLUMNS)
    violations = near_duplicate_violations(tables)
    n_accepted = sum(int((t["status"] == DedupeStatus.ACCEPTED).sum()) for t in tables.values())
    return AssetCheckResult(
        passed=violations.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={"scope": "all pairs", "accepted_in_dataset": n_accepted, "violations": len(violations),
                  "examples": md_table(violations.examples)},
    )
