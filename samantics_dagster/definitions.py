"""The code location: ``dagster dev -m samantics_dagster.definitions`` (or via workspace.yaml)."""

from dagster import AssetSelection, Definitions, EnvVar, define_asset_job

from samantics_dagster.assets.checks import (
    accepted_frames_in_store, coco_dataset_no_video_leak, coco_dataset_valid, curated_coco_no_video_leak,
    curated_coco_valid, no_near_duplicates_accepted,
)
from samantics_dagster.assets.curate import curated_coco
from samantics_dagster.assets.dedupe import deduped_images
from samantics_dagster.assets.export import coco_dataset
from samantics_dagster.assets.ingress import ingress_frames
from samantics_dagster.assets.labels import sam3_labels
from samantics_dagster.resources.dataset import DatasetResource
from samantics_dagster.resources.io_manager import ParquetTableIOManager
from samantics_dagster.resources.sam3 import Sam3Resource

CATEGORY_ASSETS = [ingress_frames, deduped_images, sam3_labels, curated_coco]

# One category from frames to its COCO files: what a sensor or a backfill launches per partition.
category_pipeline = define_asset_job(
    "category_pipeline", selection=AssetSelection.assets(*CATEGORY_ASSETS),
    description="ingress_frames -> deduped_images -> sam3_labels -> curated_coco for one category, with their checks.",
)
export_job = define_asset_job(
    "coco_export", selection=AssetSelection.assets(coco_dataset),
    description="Merge every curated category into coco/train.json, val.json.",
)

defs = Definitions(
    assets=[*CATEGORY_ASSETS, coco_dataset],
    asset_checks=[accepted_frames_in_store, no_near_duplicates_accepted, curated_coco_valid,
                  curated_coco_no_video_leak, coco_dataset_valid, coco_dataset_no_video_leak],
    jobs=[category_pipeline, export_job],
    resources={
        "dataset": DatasetResource(dataset_dir=EnvVar("DATASET_DIR"), grabby_workdir=EnvVar("GRABBY_WORKDIR")),
        "table_io_manager": ParquetTableIOManager(dataset_dir=EnvVar("DATASET_DIR")),
        "sam3": Sam3Resource(model_cache=EnvVar("MODEL_CACHE")),
    },
)
