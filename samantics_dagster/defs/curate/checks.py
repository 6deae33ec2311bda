"""Checks on the curated COCO files, per category and merged: what a trainer would reject or mis-read."""

import pandas as pd
from dagster import AssetCheckExecutionContext, AssetCheckResult, MetadataValue, asset_check

from samantics_dagster.core.curate.filters import video_group
from samantics_dagster.core.curate.split import leaked_groups
from samantics_dagster.core.curate.split_index import leaked_index_groups, load_split_index
from samantics_dagster.core.dataset.schema import CurateStatus
from samantics_dagster.core.dataset.spec import load_spec
from samantics_dagster.core.export.coco import validate_coco
from samantics_dagster.core.export.shards import (
    load_manifest,
    load_shards,
    shard_problems,
    single_files_current,
    written_in_run,
)
from samantics_dagster.core.export.stream_check import image_video_ids, scan_merged_coco
from samantics_dagster.defs.curate.coco_dataset import coco_dataset
from samantics_dagster.defs.curate.curated_coco import curated_coco
from samantics_dagster.defs.partitions import category_partitions
from samantics_dagster.defs.resources.dataset import DatasetResource


def _coco_problems(dataset: DatasetResource, paths: list) -> tuple[list[str], int]:
    spec = load_spec(dataset.layout.spec)
    problems: list[str] = []
    for path in paths:
        problems += validate_coco(path, dataset.dataset_path, spec)
    return problems, len(paths)


def _coco_result(problems: list[str], n_files: int) -> AssetCheckResult:
    return AssetCheckResult(
        passed=not problems,
        metadata={"files": n_files, "problems": len(problems),
                  "first_problems": MetadataValue.md("\n".join(f"- {p}" for p in problems[:10]) or "none")},
        description=None if not problems else "a trainer would reject or mis-read these files: re-materialise curated_coco",
    )


@asset_check(asset=curated_coco, partitions_def=category_partitions, blocking=True,
             description="pycocotools loads coco/{category}/*.json and loadRes takes its annotations; category ids "
                         "in the spec; boxes inside their image; RLE sizes match; iscrowd 0; every image file exists.")
def curated_coco_valid(context: AssetCheckExecutionContext, dataset: DatasetResource) -> AssetCheckResult:
    folder = dataset.layout.coco_category_dir(context.partition_key)
    return _coco_result(*_coco_problems(dataset, sorted(folder.glob("*.json"))))


@asset_check(asset=curated_coco, partitions_def=category_partitions, blocking=True,
             description="No video has frames in two splits (a leak inflates validation scores).")
def curated_coco_no_video_leak(context: AssetCheckExecutionContext, curated_coco: pd.DataFrame) -> AssetCheckResult:
    inc = curated_coco[curated_coco["status"] == CurateStatus.INCLUDED]
    leaked = leaked_groups(list(inc["dhash"]), [video_group(v if pd.notna(v) else None, d) for v, d in
                                                 zip(inc["video_id"], inc["dhash"])], dict(zip(inc["dhash"], inc["split"])))
    return AssetCheckResult(passed=not leaked, metadata={"videos": int(inc["video_id"].nunique()), "leaked": len(leaked),
                                                         "leaked_videos": MetadataValue.text(", ".join(leaked[:20]) or "none")})


def _single_files_state(dataset: DatasetResource, run_id: str) -> tuple[dict, bool]:
    """(the shard manifest, whether this run rewrote the single files coco/{split}.json)."""
    manifest = load_manifest(dataset.layout)
    return manifest, written_in_run(manifest, run_id)


@asset_check(asset=coco_dataset, blocking=True,
             description="The export's ids from the per-category files' byte indexes: no annotation id on two "
                         "images across categories. When this run rewrote the merged coco/*.json, they are parsed "
                         "as a stream (bounded memory at any size): ids unique, every annotation's image present, "
                         "category ids in the spec, boxes inside their image, RLE size (h, w), iscrowd 0, counts "
                         "equal to coco/shards.json's. pycocotools loads each per-category file in curated_coco_valid.")
def coco_dataset_valid(context: AssetCheckExecutionContext, dataset: DatasetResource) -> AssetCheckResult:
    spec = load_spec(dataset.layout.spec)
    shards = load_shards(dataset.layout)
    problems = shard_problems(shards)
    manifest, written = _single_files_state(dataset, context.run.run_id)
    paths = list(dataset.layout.coco_merged_files()) if written else []
    expected = {s: (int(v["images"]), int(v["annotations"])) for s, v in manifest.get("splits", {}).items()}
    problems += [p for path in paths for p in scan_merged_coco(path, spec, expected.get(path.stem)).problems]
    result = _coco_result(problems, sum(len(v) for v in shards.values()) + len(paths))
    single = "parsed (rewritten in this run)" if written else (
        "current" if single_files_current(dataset.layout, manifest, shards) else "stale (waiting for the full export)")
    return AssetCheckResult(passed=result.passed, description=result.description,
                            metadata={**result.metadata, "single_files": single})


@asset_check(asset=coco_dataset, blocking=True,
             description="No video in two splits across categories (the video -> split index of every curated "
                         "table), and, when this run rewrote them, in the merged coco/*.json (streamed).")
def coco_dataset_no_video_leak(context: AssetCheckExecutionContext, dataset: DatasetResource) -> AssetCheckResult:
    leaked, videos = leaked_index_groups(load_split_index(dataset.layout))
    if _single_files_state(dataset, context.run.run_id)[1]:
        splits_of: dict[str, set[str]] = {}
        for path in dataset.layout.coco_merged_files():
            for video in image_video_ids(path):  # streamed: the images only
                splits_of.setdefault(video, set()).add(path.stem)
        leaked |= {v for v, s in splits_of.items() if len(s) > 1}
    return AssetCheckResult(passed=not leaked, metadata={"videos": videos, "leaked": len(leaked),
                                                         "leaked_videos": MetadataValue.text(", ".join(sorted(leaked)[:20]) or "none")})
