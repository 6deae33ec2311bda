"""``coco_dataset``: every category's curated COCO merged into coco/train.json, val.json (test.json)."""

from pathlib import Path

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from samantics_dagster.core.dataset.atomic import write_json_atomic
from samantics_dagster.core.dataset.schema import TableName
from samantics_dagster.core.dataset.spec import load_spec
from samantics_dagster.core.export.coco import SPLITS
from samantics_dagster.core.export.stream import MergeResult, merge_coco_files
from samantics_dagster.core.export.taxonomy import stale_files, taxonomy_error
from samantics_dagster.defs.automation.conditions import EXPORT_CONDITION
from samantics_dagster.defs.curate.curated_coco import curated_coco
from samantics_dagster.defs.resources.dataset import DatasetResource


def category_files(dataset: DatasetResource) -> dict[str, dict[str, Path]]:
    """split -> category -> path of that category's file, for every category curated so far."""
    out: dict[str, dict[str, Path]] = {s: {} for s in SPLITS}
    for category in dataset.layout.table_categories(TableName.CURATED_COCO):
        for split in SPLITS:
            path = dataset.layout.coco_category(category, split)
            if path.is_file():
                out[split][category] = path
    return out


def shard_entry(dataset: DatasetResource, merged: MergeResult) -> dict:
    """One split of coco/shards.json: the merged file and every per-category file (a shard a trainer can read
    alone), paths relative to DATASET_DIR, with counts; ``images``/``annotations`` are the merged file's
    (per-category sums less what two files shared), which coco_dataset_valid compares with the file."""
    root = dataset.layout.root

    def rel(p) -> str:  # type: ignore[no-untyped-def]
        return p.relative_to(root).as_posix()

    return {"file": rel(merged.path), "images": merged.images, "annotations": merged.annotations,
            "shards": [{"category": p.path.parent.name, "file": rel(p.path), "images": p.images,
                        "annotations": p.annotations} for p in merged.parts]}


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
    by_category: dict[str, list[Path]] = {}
    for per_split in files.values():
        for category, path in per_split.items():
            by_category.setdefault(category, []).append(path)
    stale = stale_files(by_category, spec)
    if stale:  # never an export that mixes two taxonomies
        raise Failure(taxonomy_error(stale, dataset.layout.spec),
                      metadata={"stale_categories": MetadataValue.json(sorted(stale))})
    metadata: dict = {}
    shards: dict[str, dict] = {}
    with dataset.lock("coco_dataset"):  # two exports at once must not interleave their renames
        for split in SPLITS:
            path = dataset.layout.coco_merged(split)
            if not files[split]:
                if path.exists():
                    path.unlink()
                continue
            # streamed k-way merge of the per-category files: bounded memory at any dataset size
            merged = merge_coco_files(list(files[split].values()), spec, path)
            shards[split] = shard_entry(dataset, merged)
            metadata[f"{split}_images"] = merged.images
            metadata[f"{split}_annotations"] = merged.annotations
            metadata[f"{split}_categories"] = MetadataValue.json(sorted(files[split]))
        write_json_atomic({"splits": shards}, dataset.layout.coco_shards)
    total = sum(v for k, v in metadata.items() if k.endswith("_images"))
    context.log.info(f"coco_dataset: {total} images from {len(files['train'])} categories")
    return MaterializeResult(metadata={**metadata, "path": str(dataset.layout.coco), "images": total})
