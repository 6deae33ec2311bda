"""``ingress_frames``: the catalog of one category's frames across every grabby source."""


import pandas as pd
from dagster import AssetExecutionContext, Output, asset

from samantics_dagster.core.dataset.schema import TableName
from samantics_dagster.core.workdir.catalog import frames_to_table, scan_category
from samantics_dagster.defs.ingest.preflight import check_taxonomy_first
from samantics_dagster.defs.metadata import column_schema, md_table, table_metadata
from samantics_dagster.defs.partitions import category_partitions
from samantics_dagster.defs.resources.dataset import DatasetResource


def largest_videos(table: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    parsed = table[table["parse_error"].isna()]
    grouped = parsed.groupby(["source", "video_id"], as_index=False).agg(frames=("rel_path", "size"), bytes=("bytes", "sum"))
    return grouped.sort_values(["frames", "bytes"], ascending=False).head(n)


@asset(
    partitions_def=category_partitions,
    io_manager_key="table_io_manager",
    group_name="ingest",
    kinds={"python", "parquet"},
    metadata=column_schema(TableName.INGRESS_FRAMES),
    description="One row per frame file under {GRABBY_WORKDIR}/{source}/{category}/ (stat only, never written).",
)
def ingress_frames(context: AssetExecutionContext, dataset: DatasetResource) -> Output[pd.DataFrame]:
    category = context.partition_key
    check_taxonomy_first(context, dataset)
    if not dataset.workdir_path.is_dir():
        raise FileNotFoundError(
            f"GRABBY_WORKDIR {dataset.workdir_path} is not a folder: set GRABBY_WORKDIR to grabby's output "
            "(the folder holding {source}/{category}/ frames), or mount it"
        )
    table = frames_to_table(scan_category(dataset.workdir_path, category))
    if table.empty:
        context.log.warning(f"no frames for {category!r} in any source under {dataset.workdir_path}")
    unparsed = table[table["parse_error"].notna()]
    for row in unparsed.head(20).itertuples():
        context.log.warning(f"{row.rel_path}: {row.parse_error}")
    context.log.info(f"{category}: {len(table)} frames, {len(unparsed)} unparsed")
    return Output(
        table,
        metadata={
            **table_metadata(TableName.INGRESS_FRAMES, table),
            "frames": len(table),
            "sources": int(table["source"].nunique()),
            "videos": int(table.dropna(subset=["video_id"]).groupby(["source", "video_id"]).ngroups),
            "unparsed": len(unparsed),
            "bytes": int(table["bytes"].sum()),
            "largest_videos": md_table(largest_videos(table)),
        },
    )
