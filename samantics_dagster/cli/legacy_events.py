"""What ``samantics import-legacy`` tells the Dagster instance: the tables it wrote, as materialisations.

The import writes ``deduped_images``, ``sam3_labels`` and ``curated_coco`` rows without a run. Without an
event, Dagster would show those partitions as never materialised while their tables say they are
labelled and curated; a runless materialisation per (asset, category) it wrote makes the UI, the sensors'
partition status and ``samantics status`` agree. ``ingress_frames`` is not reported: its table is the
workdir's catalog, rebuilt by its next run, and the import does not write it.
"""

from __future__ import annotations

import pyarrow.parquet as pq
from dagster import AssetMaterialization, DagsterInstance, MetadataValue

from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.dataset.schema import TableName
from samantics_dagster.core.tools.legacy import CategoryReport, ImportReport

SOURCE_TAG = "samantics/source"


def _imported_rows(rep: CategoryReport) -> dict[TableName, int]:
    """Rows the import wrote per table of one category (zero: the table was not touched)."""
    return {TableName.DEDUPED_IMAGES: rep.frames, TableName.SAM3_LABELS: rep.labels + rep.label_failed,
            TableName.CURATED_COCO: rep.curated}


def record_imported_tables(instance: DagsterInstance, report: ImportReport) -> list[tuple[str, str]]:
    """One runless ``AssetMaterialization`` per (asset, category) whose table the import wrote; returns them
    as (asset, category), in order. The categories must already be partitions of the instance."""
    layout = DatasetLayout(report.dataset_dir)
    recorded: list[tuple[str, str]] = []
    for category, rep in sorted(report.categories.items()):
        for table, rows in _imported_rows(rep).items():
            path = layout.table(table, category)
            if rows == 0 or not path.is_file():
                continue
            instance.report_runless_asset_event(AssetMaterialization(
                asset_key=str(table), partition=category,
                description=f"imported by `samantics import-legacy` from {report.data_root}",
                metadata={
                    "imported_rows": rows,
                    "dagster/row_count": pq.read_metadata(path).num_rows,  # the merged table, old rows too
                    "table": MetadataValue.path(str(path)),
                    "legacy_data_root": MetadataValue.path(str(report.data_root)),
                    "legacy_layouts": ", ".join(report.layouts),
                },
                tags={SOURCE_TAG: "import-legacy"},
            ))
            recorded.append((str(table), category))
    return recorded
