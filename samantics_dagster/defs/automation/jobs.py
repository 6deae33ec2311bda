"""The jobs that sensors, schedules and backfills launch (assets selected by key: no asset imports here)."""

from dagster import AssetSelection, define_asset_job

# One category from frames to its COCO files, in graph order.
CATEGORY_ASSET_KEYS = ("ingress_frames", "deduped_images", "sam3_labels", "curated_coco")

category_pipeline = define_asset_job(
    "category_pipeline", selection=AssetSelection.assets(*CATEGORY_ASSET_KEYS),
    description="ingress_frames -> deduped_images -> sam3_labels -> curated_coco for one category, with their checks.",
)
coco_export = define_asset_job(
    "coco_export", selection=AssetSelection.assets("labels_jsonl", "coco_dataset", "yolo_dataset"),
    description="Rebuild the dataset-wide files: labels.jsonl, the merged coco/train.json, val.json and export/yolo/.",
)
recurate = define_asset_job(
    "recurate", selection=AssetSelection.assets("curated_coco"),
    description="curated_coco alone for one category: the thresholds in sam-queries.yaml changed (no model is loaded).",
)
prompt_trials_job = define_asset_job(
    "prompt_trials_job", selection=AssetSelection.assets("prompt_trials"),
    description="prompt_trials for one category: its reviewed frames labelled with every phrasing listed in "
                "sam-queries.yaml (GPU); label_quality then ranks the phrasings (`samantics prompts`).",
)
