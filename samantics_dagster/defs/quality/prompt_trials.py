"""``prompt_trials``: the category's reviewed frames labelled with every phrasing listed for a class in
``sam-queries.yaml`` (its query and its ``alternatives``), resumably (``core.label.trials``); ``label_quality``
ranks the phrasings and ``samantics prompts`` shows the ranking."""

import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset
from pydantic import Field

from samantics_dagster.core.dataset.schema import LabelStatus, ReviewStatus, TableName
from samantics_dagster.core.label.pipeline import make_segmenter
from samantics_dagster.core.label.queries import load_alternatives
from samantics_dagster.core.label.taxonomy import RULES, derived_classes, load_taxonomy
from samantics_dagster.core.label.trials import label_trials, phrasing_labeler, trial_prompts
from samantics_dagster.core.progress import ProgressLog
from samantics_dagster.defs.label.sam3_labels import K8S_GPU_CONFIG, CandidateConfig
from samantics_dagster.defs.metadata import column_schema, md_table, table_metadata
from samantics_dagster.defs.partitions import category_partitions
from samantics_dagster.defs.resources.dataset import DatasetResource
from samantics_dagster.defs.resources.gpu_lease import held_lease
from samantics_dagster.defs.resources.sam3 import Sam3Resource


class TrialsConfig(CandidateConfig):
    """What the model keeps for each phrasing and how fast: ``sam3_labels``' knobs, so the two compare (leave the
    floor at sam3_labels': the ranking's curves start there)."""

    retry_failed: bool = Field(False, description="Label again the pairs whose last attempt failed on the image itself.")


@asset(
    partitions_def=category_partitions,
    io_manager_key="table_io_manager",
    group_name="review",
    kinds={"pytorch", "parquet"},
    pool="gpu",
    metadata=column_schema(TableName.PROMPT_TRIALS),
    op_tags={"dagster-k8s/config": K8S_GPU_CONFIG},  # labels in its own process, on Ray deployments too: a small set
    description="The category's reviewed frames labelled with each phrasing of every class that lists alternatives "
                "in sam-queries.yaml (its query too: the reference), candidates down to the floor; only the frames "
                "people reviewed, and a rerun labels only the (frame, phrasing) pairs it lacks. label_quality ranks "
                "the phrasings by F1 at their best threshold.",
)
def prompt_trials(context: AssetExecutionContext, config: TrialsConfig, dataset: DatasetResource, sam3: Sam3Resource,
                  reviewed_labels: pd.DataFrame) -> MaterializeResult:
    """Writes its own table (batch parts merged as sam3_labels merges them), so it returns no value."""
    category = context.partition_key
    layout = dataset.layout
    taxonomy = load_taxonomy(layout, RULES)
    spec = taxonomy.spec
    alternatives = load_alternatives(spec, layout.queries, derived=derived_classes(spec, RULES))
    frames = reviewed_labels[reviewed_labels["status"] == ReviewStatus.REVIEWED]
    if not alternatives or not len(frames):
        why = "no class lists alternatives in sam-queries.yaml" if not alternatives else "no reviewed frames"
        context.log.info(f"{category}: nothing to try ({why}); the model is not loaded")
        return MaterializeResult(metadata={"reviewed_frames": len(frames), "phrasings": 0, "labelled_pairs": 0,
                                           "nothing_to_try": why})
    settings = config.settings()
    loaded = sam3.load(compile_cache=layout.compile_cache)
    tokenizer = loaded.processor.tokenizer
    prompts, warnings = trial_prompts(taxonomy.queries, alternatives, lambda text: len(tokenizer(text).input_ids) - 2)
    for warning in warnings:
        context.log.warning(warning)
    result = label_trials(
        frames, prompts, dataset.store(), lambda queries: make_segmenter(loaded, queries, spec, settings),
        phrasing_labeler(settings, loaded.fingerprint, loaded.precision),
        table_path=layout.table(TableName.PROMPT_TRIALS, category), image_batch=settings.image_batch,
        retry_failed=config.retry_failed, post_workers=config.post_workers,
        progress=ProgressLog(context.log.info, f"prompt trials {category}", "images"), log=context.log.info)
    table = result.table
    done = table[table["status"] == LabelStatus.DONE]
    per_phrasing = (done.groupby(["category_id", "prompt"], as_index=False)
                    .agg(frames=("dhash", "nunique"), candidates=("n_instances", "sum")))
    names = {c.id: c.name for c in spec.categories}
    per_phrasing.insert(0, "class", per_phrasing["category_id"].map(names))
    failed = table[table["status"] == LabelStatus.FAILED]
    return MaterializeResult(metadata={
        **table_metadata(TableName.PROMPT_TRIALS, table),
        "reviewed_frames": result.frames,
        "phrasings": MetadataValue.json({p.category_name: [q.text for q in prompts if q.category_id == p.category_id]
                                         for p in prompts if p.reference}),
        "labelled_pairs": result.labelled_pairs,  # this run's GPU work: at most reviewed frames x phrasings
        "labelled_images": result.labelled_images,
        "reused_pairs": result.reused_pairs,
        "failed_pairs": result.failed_pairs,
        "seconds": round(result.seconds, 2),
        "pairs_per_s": round(result.labelled_pairs / result.seconds, 2) if result.seconds > 0 else 0.0,
        "stage_seconds": MetadataValue.json({k: round(v, 2) for k, v in result.stage_seconds.items()}),
        "device": str(loaded.device),
        **({"device_lease": f"{lease.device} ({lease.slot.key})"} if (lease := held_lease()) else {}),
        "candidates_per_phrasing": md_table(per_phrasing[["class", "prompt", "frames", "candidates"]], limit=100),
        "failures": md_table(failed[["dhash", "rel_path", "prompt", "error"]]),
    })
