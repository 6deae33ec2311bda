"""``coco_dataset``: every category's curated COCO merged into coco/train.json, val.json (test.json)."""

import json

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from samantics_dagster.defs.curate.curated_coco import curated_coco
from samantics_dagster.core.dataset.atomic import write_json_atomic
from samantics_dagster.core.dataset.schema import TableName
from samantics_dagster.core.export.coco import SPLITS, merge_coco
from samantics_dagster.core.dataset.spec import load_spec
from samantics_dagster.defs.resources.dataset import DatasetResource
from samantics_dagster.defs.automation.conditions import EXPORT_CONDITION


def category_files(dataset: DatasetResource) -> dict[str, dict[str, object]]:
    """split -> category -> path of that category's file, for every category curated so far."""
    out: dict[str, dict[str, object]] = {s: {} for s in SPLITS}
    for category in dataset.layout.table_categories(TableName.CURATED_COCO):
        for split in SPLITS:
            path = dataset.layout.coco_category(category, split)
            if path.is_file():
                out[split][category] = path
    return out


@asset(
    deps=[curated_coco],
    group_name="curate",
    automation_condition=EXPORT_CONDITION,
    kinds={"json"},
    description="All curated_coco partitions merged: coco/train.json and coco/val.json (and test.json), ids unique across the dataset.",
)
def coco_dataset(context: AssetExecutionContext, dataset: DatasetResource) -> MaterializeResult:
    spec = load_spec(dataset.layout.spec)
    files = category_files(dataset)
    metadata: dict = {}
    with dataset.lock("coco_dataset"):  # two exports at once must not interleave their renames
        for split in SPLITS:
            path = dataset.layout.coco_merged(split)
            parts = [json.loads(p.read_text(encoding="utf-8")) for p in files[split].values()]
            if not parts:
                if path.exists():
                    path.unlink()
                continue
            merged = merge_coco(parts, spec)
            write_json_atomic(merged, path)
            metadata[f"{split}_images"] = len(merged["images"])
            metadata[f"{split}_annotations"] = len(merged["annotations"])
            metadata[f"{split}_categories"] = MetadataValue.json(sorted(files[split]))
    total = sum(v for k, v in metadata.items() if k.endswith("_images"))
    context.log.info(f"coco_dataset: {total} images from {len(files['train'])} categories")
    return MaterializeResult(metadata={**metadata, "path": str(dataset.layout.coco), "images": total})
