"""Asset checks: the invariants a person would otherwise query ``pipeline.db`` for."""

import json

import numpy as np
import pandas as pd
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from samantics_dagster.assets.curate import curated_coco
from samantics_dagster.assets.dedupe import deduped_images
from samantics_dagster.assets.export import coco_dataset
from samantics_dagster.assets.metadata import md_table
from samantics_dagster.core.coco import validate_coco
from samantics_dagster.core.curate import video_group
from samantics_dagster.core.hamming import hamming, hex_to_codes, pairs_within
from samantics_dagster.core.queries import load_spec
from samantics_dagster.core.split import leaked_groups
from samantics_dagster.partitions import category_partitions
from samantics_dagster.resources.dataset import DatasetResource


@asset_check(asset=deduped_images, partitions_def=category_partitions, blocking=True,
             description="Every accepted frame of the partition has its file images/{dhash}.jpg.")
def accepted_frames_in_store(
    context: AssetCheckExecutionContext, dataset: DatasetResource, deduped_images: pd.DataFrame
) -> AssetCheckResult:
    store = dataset.store()
    accepted = deduped_images[deduped_images["status"] == "accepted"]
    missing = [h for h in accepted["dhash"] if not store.has(h)]
    return AssetCheckResult(
        passed=not missing,
        metadata={"accepted": len(accepted), "missing": len(missing),
                  "first_missing": MetadataValue.text(", ".join(missing[:10]) or "none")},
        description=None if not missing else "accepted rows without a stored file: re-run without dry_run to copy them",
    )


def near_duplicate_violations(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Accepted pairs across the dataset closer than the threshold either of them was judged with."""
    accepted = pd.concat(
        [t.assign(category=c) for c, t in tables.items() if len(t)], ignore_index=True
    ) if tables else pd.DataFrame()
    if accepted.empty:
        return pd.DataFrame(columns=["a", "b", "distance"])
    accepted = accepted[accepted["status"] == "accepted"].reset_index(drop=True)
    codes = hex_to_codes(accepted["dhash"].tolist())
    thresholds = accepted["dhash_threshold"].fillna(0).to_numpy(dtype=np.int64)
    if len(codes) < 2:
        return pd.DataFrame(columns=["a", "b", "distance"])
    pairs = pairs_within(codes, int(thresholds.max()))
    if len(pairs) == 0:
        return pd.DataFrame(columns=["a", "b", "distance"])
    i, j = pairs[:, 0], pairs[:, 1]
    dist = hamming(codes[i], codes[j])
    bad = dist <= np.minimum(thresholds[i], thresholds[j])
    paths = accepted["category"] + ":" + accepted["rel_path"]
    return pd.DataFrame({"a": paths.to_numpy()[i[bad]], "b": paths.to_numpy()[j[bad]], "distance": dist[bad]})


@asset_check(asset=deduped_images, partitions_def=category_partitions,
             description="No two accepted frames in the whole dataset are within the dhash threshold.")
def no_near_duplicates_accepted(context: AssetCheckExecutionContext, dataset: DatasetResource) -> AssetCheckResult:
    tables = dataset.tables("deduped_images")
    violations = near_duplicate_violations(tables)
    n_accepted = sum(int((t["status"] == "accepted").sum()) for t in tables.values())
    return AssetCheckResult(
        passed=violations.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={"accepted_in_dataset": n_accepted, "violations": len(violations),
                  "examples": md_table(violations)},
    )


def _coco_problems(dataset: DatasetResource, paths: list) -> tuple[list[str], int]:
    spec = load_spec(dataset.dataset_path / "coco-spec.json")
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
    folder = dataset.dataset_path / "coco" / context.partition_key
    return _coco_result(*_coco_problems(dataset, sorted(folder.glob("*.json"))))


@asset_check(asset=curated_coco, partitions_def=category_partitions, blocking=True,
             description="No video has frames in two splits (a leak inflates validation scores).")
def curated_coco_no_video_leak(context: AssetCheckExecutionContext, curated_coco: pd.DataFrame) -> AssetCheckResult:
    inc = curated_coco[curated_coco["status"] == "included"]
    leaked = leaked_groups(list(inc["dhash"]), [video_group(v if pd.notna(v) else None, d) for v, d in
                                                 zip(inc["video_id"], inc["dhash"])], dict(zip(inc["dhash"], inc["split"])))
    return AssetCheckResult(passed=not leaked, metadata={"videos": int(inc["video_id"].nunique()), "leaked": len(leaked),
                                                         "leaked_videos": MetadataValue.text(", ".join(leaked[:20]) or "none")})


@asset_check(asset=coco_dataset, blocking=True,
             description="The merged coco/*.json load in pycocotools with every invariant of curated_coco_valid, "
                         "and ids are unique across the dataset.")
def coco_dataset_valid(context: AssetCheckExecutionContext, dataset: DatasetResource) -> AssetCheckResult:
    folder = dataset.dataset_path / "coco"
    return _coco_result(*_coco_problems(dataset, sorted(folder.glob("*.json"))))


@asset_check(asset=coco_dataset, blocking=True,
             description="No video in two splits of the merged export (videos can span categories).")
def coco_dataset_no_video_leak(context: AssetCheckExecutionContext, dataset: DatasetResource) -> AssetCheckResult:
    splits_of: dict[str, set[str]] = {}
    for path in sorted((dataset.dataset_path / "coco").glob("*.json")):
        for image in json.loads(path.read_text(encoding="utf-8"))["images"]:
            if image.get("video_id"):
                splits_of.setdefault(image["video_id"], set()).add(path.stem)
    leaked = sorted(v for v, s in splits_of.items() if len(s) > 1)
    return AssetCheckResult(passed=not leaked, metadata={"videos": len(splits_of), "leaked": len(leaked),
                                                         "leaked_videos": MetadataValue.text(", ".join(leaked[:20]) or "none")})
