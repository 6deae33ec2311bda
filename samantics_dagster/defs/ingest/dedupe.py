"""``deduped_images``: exact + global dhash + per-video ORB dedupe into the image store."""


import time

import pandas as pd
from dagster import AssetExecutionContext, Config, Output, asset
from pydantic import Field

from samantics_dagster.core.dataset.schema import BAD_INPUT_REASONS, DedupeStatus, TableName
from samantics_dagster.core.dedupe.engine import dedupe_partition
from samantics_dagster.core.dedupe.orb import OrbSettings
from samantics_dagster.core.dedupe.settings import DedupeSettings, SignalSettings
from samantics_dagster.core.progress import ProgressLog
from samantics_dagster.defs.metadata import column_schema, md_table, table_metadata
from samantics_dagster.defs.partitions import category_partitions
from samantics_dagster.defs.resources.dataset import DatasetResource

_ORB = OrbSettings()
_SIGNALS = SignalSettings()
_DEFAULTS = DedupeSettings()


class DedupeConfig(Config):
    """Knobs of the old ``select`` step; the defaults are the ones measured on the sample (README)."""

    dhash_threshold: int = Field(_DEFAULTS.dhash_threshold, ge=0, le=64,
                                 description="Max Hamming distance (of 64 bits) at which a frame duplicates any accepted frame in the dataset.")
    dhash_verify_threshold: int = Field(_DEFAULTS.dhash_verify_threshold, ge=0, le=64,
                                        description="Up to this distance a hash match is a candidate, confirmed by ORB + geometry against the matched frame (needs use_orb).")
    use_orb: bool = Field(True, description="ORB + geometry test within a video (the old --no-orb turns it off).")
    orb_window: int = Field(_DEFAULTS.orb_window, ge=1, description="How many recent accepted frames of the same video a frame is compared with.")
    orb_min_good_matches: int = Field(_ORB.min_good_matches, ge=4)
    orb_min_inlier_ratio: float = Field(_ORB.min_inlier_ratio, ge=0.0, le=1.0)
    orb_max_shift: float = Field(_ORB.max_shift, ge=0.0, description="Max motion of the frame centre, as a fraction of the long side.")
    orb_max_scale_change: float = Field(_ORB.max_scale_change, ge=0.0)
    min_structure: int = Field(_SIGNALS.min_structure, ge=0, le=64,
                               description="Bits of the 64-bit dhash a clear gradient must decide for a hash match to be final; below it colour + phase-correlation shift decide.")
    colour_max: float = Field(_SIGNALS.colour_max, ge=0.0,
                              description="Mean RGB difference (grey levels) of 16x9 thumbnails up to which low-structure frames can be one scene.")
    structured_colour_max: float = Field(_SIGNALS.structured_colour_max, ge=0.0,
                                         description="The same limit where the hash or ORB also vouch for the grey layout.")
    dry_run: bool = Field(False, description="Decide and count, but copy nothing into images/.")

    def settings(self) -> DedupeSettings:
        orb = OrbSettings(
            min_good_matches=self.orb_min_good_matches, min_inlier_ratio=self.orb_min_inlier_ratio,
            max_shift=self.orb_max_shift, max_scale_change=self.orb_max_scale_change,
        )
        return DedupeSettings(dhash_threshold=self.dhash_threshold, dhash_verify_threshold=self.dhash_verify_threshold,
                              use_orb=self.use_orb,
                              orb_window=self.orb_window, orb=orb,
                              signals=SignalSettings(min_structure=self.min_structure, colour_max=self.colour_max,
                                                     structured_colour_max=self.structured_colour_max))


@asset(
    partitions_def=category_partitions,
    io_manager_key="table_io_manager",
    group_name="ingest",
    kinds={"python", "parquet", "opencv"},
    pool="dedupe",
    metadata=column_schema(TableName.DEDUPED_IMAGES),
    description="Accepted/rejected per frame; accepted frames copied to images/{dhash}.jpg. Global: serialised by the `dedupe` pool and a file lock.",
)
def deduped_images(
    context: AssetExecutionContext, config: DedupeConfig, dataset: DatasetResource, ingress_frames: pd.DataFrame
) -> Output[pd.DataFrame]:
    category = context.partition_key
    store = dataset.store()
    settings = config.settings()
    waited = time.perf_counter()
    with store.locked_for_writing() as orphans:
        context.log.info(f"dedupe lock held after {time.perf_counter() - waited:.1f}s; settings {settings.fingerprint()}"
                         + (f"; removed {orphans} temp files a killed run left in the store" if orphans else ""))
        result = dedupe_partition(
            ingress_frames, dataset.workdir_path, store, settings,
            previous=dataset.table(TableName.DEDUPED_IMAGES, category), dry_run=config.dry_run,
            progress=ProgressLog(context.log.info, f"dedupe {category}", "frames"),
        )
    table = result.table
    by_reason = table[table["status"] == DedupeStatus.REJECTED]["reason"].value_counts().to_dict()
    accepted = int((table["status"] == DedupeStatus.ACCEPTED).sum())
    context.log.info(
        f"{category}: {accepted} accepted, {len(table) - accepted} rejected {by_reason}; "
        f"{result.processed} decided, {result.reused} reused, {result.copied} copied in {result.seconds:.1f}s"
    )
    errors = table[table["reason"].isin([str(r) for r in BAD_INPUT_REASONS])]
    return Output(
        table,
        metadata={
            **table_metadata(TableName.DEDUPED_IMAGES, table),
            "accepted": accepted,
            "rejected": len(table) - accepted,
            **{f"rejected_{reason}": int(n) for reason, n in sorted(by_reason.items())},
            "decided": result.processed,
            "reused": result.reused,
            "copied": result.copied,
            "stored_under_another_code": result.rekeyed,
            "frames_per_s": round(result.processed / result.seconds, 1) if result.seconds > 0 else 0.0,
            "store_files": len(store.hashes()),
            "store_bytes": store.total_bytes(),
            "dry_run": config.dry_run,
            "settings": settings.fingerprint(),
            "bad_frames": md_table(errors[["rel_path", "reason", "detail"]], limit=20),
        },
    )
