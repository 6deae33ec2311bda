"""Asset checks: the invariants a person would otherwise query ``pipeline.db`` for."""


import numpy as np
import pandas as pd
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from samantics_dagster.assets.dedupe import deduped_images
from samantics_dagster.assets.metadata import md_table
from samantics_dagster.core.hamming import hamming, hex_to_codes, pairs_within
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
