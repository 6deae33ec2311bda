"""The jobs sensors, schedules and backfills launch."""

from dagster import AssetSelection, define_asset_job

from samantics_dagster.assets.curate import curated_coco
from samantics_dagster.assets.dedupe import deduped_images
from samantics_dagster.assets.export import coco_dataset
from samantics_dagster.assets.ingress import ingress_frames
from samantics_dagster.assets.labels import sam3_labels

CATEGORY_ASSETS = [ingress_frames, deduped_images, sam3_labels, curated_coco]

# One category from frames to its COCO files: what the sensor, the retry schedule or a backfill launches.
category_pipeline = define_asset_job(
    "category_pipeline", selection=AssetSelection.assets(*CATEGORY_ASSETS),
    description="ingress_frames -> deduped_images -> sam3_labels -> curated_coco for one category, with their checks.",
)
coco_export = define_asset_job(
    "coco_export", selection=AssetSelection.assets(coco_dataset),
    description="Merge every curated category into coco/train.json, val.json.",
)
