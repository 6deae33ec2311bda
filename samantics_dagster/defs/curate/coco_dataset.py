"""``coco_dataset``: every category's curated COCO as shards (coco/shards.json) and, merged, coco/{split}.json.

The manifest is rebuilt after every category from the per-category files' byte indexes; the merged single
files are rewritten with it while the dataset is small, and by the full export above
``SAMANTICS_SINGLE_FILES_MAX_IMAGES`` (``core.export.shards``): adding a category to a million-image
dataset must not rewrite gigabytes.
"""

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from samantics_dagster.core.dataset.spec import load_spec
from samantics_dagster.core.export.shards import TaxonomyChanged, export_coco
from samantics_dagster.defs.automation.conditions import EXPORT_CONDITION
from samantics_dagster.defs.curate.curated_coco import curated_coco
from samantics_dagster.defs.export_config import ExportConfig
from samantics_dagster.defs.resources.dataset import DatasetResource


@asset(
    deps=[curated_coco],
    group_name="curate",
    automation_condition=EXPORT_CONDITION,
    kinds={"json"},
    description="All curated_coco partitions as shards (coco/shards.json) and merged: coco/train.json and "
                "coco/val.json (and test.json), ids unique across the dataset; above "
                "SAMANTICS_SINGLE_FILES_MAX_IMAGES the merged files wait for the full export.",
)
def coco_dataset(context: AssetExecutionContext, config: ExportConfig, dataset: DatasetResource) -> MaterializeResult:
    layout = dataset.layout
    spec = load_spec(layout.spec)
    with dataset.lock("coco_dataset"):  # two exports at once must not interleave their renames
        try:
            export = export_coco(layout, spec, config.due, context.run.run_id)
        except TaxonomyChanged as exc:  # never an export that mixes two taxonomies
            raise Failure(str(exc), metadata={"stale_categories": MetadataValue.json(exc.categories)}) from None
    manifest, merged, images = export.manifest, export.merged, export.images
    current = all(e["current"] for e in manifest["splits"].values())
    metadata: dict = {}
    for split, entry in manifest["splits"].items():
        metadata[f"{split}_images"] = entry["images"]
        metadata[f"{split}_annotations"] = entry["annotations"]
        metadata[f"{split}_categories"] = MetadataValue.json(sorted(s["category"] for s in entry["shards"]))
    state = "rewritten" if merged is not None else ("current" if current else "stale")
    categories = {shard.category for per_split in export.shards.values() for shard in per_split}
    context.log.info(f"coco_dataset: {images} images from {len(categories)} categories; single files {state}"
                     + ("" if merged is not None else
                        f" (above {config.limit} images they are "
                        "rewritten by the full export: nightly_export or `samantics export coco`)"))
    return MaterializeResult(metadata={**metadata, "path": str(layout.coco), "images": images,
                                       "single_files": state, "shards": str(layout.coco_shards)})
