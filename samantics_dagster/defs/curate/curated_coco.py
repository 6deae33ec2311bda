"""``curated_coco``: the category's labelled frames filtered and split by video into COCO files.

The class thresholds, NMS and relation rules of ``sam-queries.yaml`` choose among SAM3's candidates here, so
a threshold change needs this asset alone (``thresholds_sensor`` runs it), not the model.
"""

from collections.abc import Mapping

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from samantics_dagster.core.curate.filters import CurateSettings, curate_partition
from samantics_dagster.core.curate.split import parse_ratios, split_shares
from samantics_dagster.core.curate.split_index import load_split_index, previous_splits, replace_category
from samantics_dagster.core.dataset.schema import CurateStatus, TableName
from samantics_dagster.core.dataset.spec import load_spec
from samantics_dagster.core.dataset.tables import write_table
from samantics_dagster.core.export.coco import SPLITS
from samantics_dagster.core.export.stream import write_coco_frames
from samantics_dagster.core.label.taxonomy import dataset_selection
from samantics_dagster.defs.metadata import column_schema, md_table, table_metadata
from samantics_dagster.defs.partitions import category_partitions
from samantics_dagster.defs.resources.dataset import DatasetResource


class CurateConfig(Config):
    """The old curate and split scripts' knobs and defaults."""

    keep_only_person: bool = Field(False, description="Keep frames whose only detections are of the `person` supercategory.")
    categories: list[str] = Field(default_factory=list, description="Keep only these categories or supercategories (empty: all).")
    min_score: float = Field(0.0, ge=0.0, le=1.0, description="Drop instances scoring below this.")
    train: float = Field(85.0, gt=0.0, le=100.0, description="Percent of frames for train.")
    val: float | None = Field(None, ge=0.0, le=100.0, description="Percent for val (default: the rest).")
    test: float = Field(0.0, ge=0.0, le=100.0, description="Percent for test (0: no test split).")
    seed: int = Field(0, description="Seed of the grouped split; same inputs and seed give the same split.")
    resplit: bool = Field(False, description="Forget this category's earlier split (other categories' videos still keep theirs).")

    def settings(self) -> CurateSettings:
        ratios = parse_ratios(self.train, self.val, self.test or None)
        return CurateSettings(keep_only_person=self.keep_only_person, categories=tuple(self.categories),
                              min_score=self.min_score, ratios=ratios, seed=self.seed)


@asset(
    partitions_def=category_partitions,
    io_manager_key="table_io_manager",
    group_name="curate",
    kinds={"python", "parquet", "json"},
    metadata=column_schema(TableName.CURATED_COCO),
    # optional: a category nobody reviewed has no reviewed_labels table, and is curated from SAM3's rows alone
    deps=["reviewed_labels"],
    description="Included/excluded per frame with its reason and split; writes coco/{category}/train.json, val.json (test.json).",
    check_specs=[AssetCheckSpec("split_ratios", asset="curated_coco", description=(
        "Each split's share of frames is within 5 points of its target, or within the share of the largest "
        "video when videos are too few for that (whole videos can't be cut)."))],
)
def curated_coco(
    context: AssetExecutionContext, config: CurateConfig, dataset: DatasetResource,
    deduped_images: pd.DataFrame, sam3_labels: pd.DataFrame,
) -> MaterializeResult:
    """Writes its own table inside the split lock (so concurrent categories see each other's splits), so it
    returns no value: the IO manager only reads it."""
    category = context.partition_key
    settings = config.settings()
    spec = load_spec(dataset.layout.spec)
    selection = dataset_selection(dataset.layout, spec)
    # Splits are sticky across the dataset: the lock keeps two categories from giving one video two splits.
    with dataset.lock("splits"):
        # the compact video -> split index, not every category's table (core.curate.split_index)
        index = load_split_index(dataset.layout)
        previous = previous_splits(index, skip=category if config.resplit else None)
        curated = curate_partition(sam3_labels, deduped_images, spec, settings, previous, category=category,
                                   reviewed=dataset.table("reviewed_labels", category), selection=selection)
        write_table(curated.table, dataset.layout.table(TableName.CURATED_COCO, category))
        replace_category(dataset.layout, index, category, curated.table)
    if curated.resplit_videos:
        context.log.warning(f"{len(curated.resplit_videos)} videos were in a split these ratios lack and were split "
                            f"again (e.g. {curated.resplit_videos[:3]}); the coco_dataset leak check will flag any "
                            "that another category keeps in the old split")
    counts = {}
    for split in SPLITS:
        path = dataset.layout.coco_category(category, split)
        if split in curated.frames:  # written as a stream: no whole COCO dict of the partition
            counts[split] = write_coco_frames(path, spec, curated.frames[split])
        elif path.exists():  # a split that is no longer asked for must not linger for a trainer to find
            path.unlink()
    table = curated.table
    included = table[table["status"] == CurateStatus.INCLUDED]
    excluded = table[table["status"] == CurateStatus.EXCLUDED]
    per_class = curated.annotations_per_class
    names = {c.id: c.name for c in spec.categories}
    shares = split_shares(dict(zip(included["dhash"], included["split"])))
    context.log.info(f"{category}: {len(included)} of {len(table)} frames included; " +
                     ", ".join(f"{s} {n} images / {a} annotations" for s, (n, a) in counts.items()))
    return MaterializeResult(check_results=[split_ratio_check(included, settings.ratios)], metadata={
        **table_metadata(TableName.CURATED_COCO, table),
        "included": len(included),
        "excluded": len(excluded),
        "excluded_by_reason": MetadataValue.json({str(k): int(v) for k, v in excluded["reason"].value_counts().items()}),
        "instances_dropped": MetadataValue.json(dict(curated.dropped_instances)),
        **{f"{s}_images": n for s, (n, _) in counts.items()},
        **{f"{s}_annotations": a for s, (_, a) in counts.items()},
        "split_shares": MetadataValue.json({s: round(v, 4) for s, v in shares.items()}),
        "videos": int(included["video_id"].nunique()),
        "annotations_per_class": MetadataValue.json({names.get(k, str(k)): v for k, v in sorted(per_class.items())}),
        "coco_files": MetadataValue.json({s: str(dataset.layout.coco_category(category, s)) for s in counts}),
        "largest_exclusions": md_table(excluded[["rel_path", "reason"]]),
        SELECTION_METADATA: selection.fingerprint(),
        "thresholds": MetadataValue.json({"default": selection.default, **{
            names.get(k, str(k)): v for k, v in sorted(selection.thresholds.items())}}),
    })


SELECTION_METADATA = "selection_fingerprint"  # what passed: the re-curate sensor compares it with sam-queries.yaml


RATIO_TOLERANCE = 0.05


def split_ratio_check(included: pd.DataFrame, ratios: Mapping[str, float]) -> AssetCheckResult:
    """Compares frame shares with the targets; the check's config-dependence is why it lives in the asset."""
    total = len(included)
    shares = split_shares(dict(zip(included["dhash"], included["split"])))
    largest = included.groupby(included["video_id"].fillna(included["dhash"])).size().max() / total if total else 0.0
    tolerance = max(RATIO_TOLERANCE, float(largest))
    targets = {s: r / 100.0 for s, r in ratios.items() if r > 0}
    errors = {s: abs(shares.get(s, 0.0) - t) for s, t in targets.items()}
    return AssetCheckResult(
        check_name="split_ratios",
        passed=bool(total == 0 or all(e <= tolerance for e in errors.values())),
        severity=AssetCheckSeverity.WARN,
        metadata={"targets": MetadataValue.json(targets), "shares": MetadataValue.json({s: round(v, 4) for s, v in shares.items()}),
                  "tolerance": round(tolerance, 4), "largest_video_share": round(float(largest), 4)},
    )
