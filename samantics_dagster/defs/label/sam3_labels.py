"""``sam3_labels``: SAM3's candidate instances (boxes, scores, COCO RLE masks) for every accepted image.

Every instance above ``candidate_floor`` is kept; the class thresholds, NMS and relation rules in
``sam-queries.yaml`` choose among them when curating (``core.label.candidates``).
"""

import json
from typing import TYPE_CHECKING, Any

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    ResourceParam,
    asset,
)
from pydantic import Field

from samantics_dagster.core.dataset.schema import DedupeStatus, LabelStatus, TableName
from samantics_dagster.core.dataset.spec import Spec
from samantics_dagster.core.label.candidates import DEFAULT_FLOOR, Selection, select_records
from samantics_dagster.core.label.failures import failure_share
from samantics_dagster.core.label.pipeline import (
    LabelResult,
    LabelSettings,
    label_partition,
    load_image,
    make_segmenter,
)
from samantics_dagster.core.label.precision import Relabel
from samantics_dagster.core.label.preview import previews_markdown, render_preview
from samantics_dagster.core.label.queries import QuerySet, truncate_queries
from samantics_dagster.core.label.taxonomy import RULES, dataset_selection, load_taxonomy
from samantics_dagster.core.progress import ProgressLog
from samantics_dagster.core.settings import settings
from samantics_dagster.defs.metadata import column_schema, md_table, table_metadata
from samantics_dagster.defs.partitions import category_partitions
from samantics_dagster.defs.resources.dataset import DatasetResource
from samantics_dagster.defs.resources.gpu_lease import held_lease
from samantics_dagster.defs.resources.ray_workers import ray_connected
from samantics_dagster.defs.resources.sam3 import Sam3Resource

if TYPE_CHECKING:  # ray is an optional extra: its path is imported only when a run labels on Ray
    from samantics_dagster.core.label.ray_workers import RayLabelResult


def _previews(table: pd.DataFrame, dataset: DatasetResource, names: dict[int, str], selection: Selection,
              n: int = 3) -> str:
    """A few of the frames with the most candidates, drawn with what passes today's thresholds."""
    rows = table[(table.status == LabelStatus.DONE) & (table.n_instances > 0)].sort_values("n_instances", ascending=False).head(n)
    store = dataset.store()
    shots = []
    for row in rows.itertuples():
        try:
            image = load_image(store.path_for(row.dhash))
        except OSError:
            continue
        shown = select_records(json.loads(row.instances), selection)
        shots.append((f"{row.rel_path} ({len(shown)} instances, {row.n_instances} candidates)",
                      render_preview(image, shown, names)))
    return previews_markdown(shots)


# On Kubernetes (dagster-k8s, deploy/k8s.md) this step asks for a GPU node; other launchers ignore the tag.
K8S_GPU_CONFIG = {
    "container_config": {
        "resources": {"requests": {"cpu": "4", "memory": "24Gi"}, "limits": {"nvidia.com/gpu": "1", "memory": "32Gi"}},
        "volume_mounts": [{"name": "dshm", "mount_path": "/dev/shm"}],
    },
    "pod_spec_config": {
        "node_selector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "volumes": [{"name": "dshm", "empty_dir": {"medium": "Memory", "size_limit": "8Gi"}}],
    },
}


# With a Ray cluster (SAMANTICS_RAY_ADDRESS, read when the code location loads) the step only drives the actors,
# which hold the GPUs: its pod needs no GPU node.
K8S_RAY_DRIVER_CONFIG = {"container_config": {"resources": {"requests": {"cpu": "1", "memory": "4Gi"},
                                                            "limits": {"memory": "8Gi"}}}}


class CandidateConfig(Config):
    """What the model keeps (the candidates) and how fast: the knobs of ``LabelSettings``, shared by every asset that
    labels with SAM3 (``sam3_labels``, ``prompt_trials``) so their candidates compare."""

    candidate_floor: float = Field(DEFAULT_FLOOR, ge=0.0, le=1.0, description=(
        "Keep every instance whose score (sigmoid(logit) x sigmoid(presence)) exceeds this, with its mask: keep it "
        "below every class threshold in sam-queries.yaml, since a threshold under the floor can't be curated."))
    max_candidates: int = Field(100, ge=1, description="Per (image, prompt), highest scores first.")
    image_batch: int = Field(4, ge=1, description="Images through the vision encoder at once.")
    pair_chunk: int = Field(32, ge=1, description="(image, prompt) pairs through the heads at once.")
    upsample_budget_mb: float | None = Field(None, gt=0, description=(
        "Device memory for upsampling kept masks to full size, per chunk (masks are upsampled and run-length "
        "encoded a chunk at a time; same output for any value). Empty: 2048 on CUDA, 32 on the CPU. Lower it "
        "if huge frames (100 MP, 150 instances) run out of GPU memory."))
    post_workers: int = Field(1, ge=0, description="Threads turning masks into RLE while the next batch is on the GPU (0: serial).")

    def settings(self) -> LabelSettings:
        return LabelSettings(
            candidate_floor=self.candidate_floor, max_candidates=self.max_candidates, image_batch=self.image_batch,
            pair_chunk=self.pair_chunk, upsample_budget_mb=self.upsample_budget_mb,
        )


class LabelConfig(CandidateConfig):
    """What the model keeps (the candidates) and how fast; the class thresholds, NMS and relation rules are in
    sam-queries.yaml and applied when curating, so changing them relabels nothing."""

    retry_failed: bool = Field(False, description=(
        "Label again every image whose last attempt failed. Without it, a run (Dagster's retry included) tries "
        "again only the images that failed on a device error (CUDA out of memory, a CUDA runtime error); an "
        "unreadable image or a post-processing error would fail the same way."))
    relabel_imported: bool = Field(False, description="Label again the images whose labels came from `samantics import-legacy`.")
    relabel: Relabel = Field(Relabel.changed, description=(
        "changed: label again only the images whose model, queries or thresholds changed. other_precision: also "
        "those labelled at another precision (dtype, torch or transformers major.minor) than this run's, so a "
        "category reported as mixed precision (metadata `precisions`, `samantics status`) becomes one."))
    ray_max_actors: int = Field(8, ge=1, description=(
        "On Ray (SAMANTICS_RAY_ADDRESS): at most this many SAM3 replicas, one per free GPU of the cluster."))
    ray_share_batches: int = Field(4, ge=1, description=(
        "On Ray: images go to actors in shares of this many batches; a dead actor's retry redoes at most its "
        "batches in flight, a smaller share balances better, a larger one costs fewer calls."))
    ray_cpus_per_actor: float = Field(1.0, gt=0, description="On Ray: CPUs reserved per actor (decode and RLE threads).")
    max_failed_share: float = Field(0.05, ge=0.0, le=1.0, description=(
        "Blocking check: above this share of failed images among the category's accepted images (failed in this "
        "run or kept failed from an earlier one), the run fails its `labels_failure_share` check and nothing "
        "downstream (curation, export) runs."))


@asset(
    partitions_def=category_partitions,
    io_manager_key="table_io_manager",
    group_name="label",
    kinds={"pytorch", "parquet"},
    pool="gpu",
    metadata=column_schema(TableName.SAM3_LABELS),
    op_tags={"dagster-k8s/config": K8S_RAY_DRIVER_CONFIG if settings().ray_address else K8S_GPU_CONFIG},
    description="SAM3 on every accepted image of the category: one row per image, its candidates (every instance above "
                "candidate_floor) as JSON (boxes XYXY, scores, RLE); sam-queries.yaml's thresholds apply when curating.",
    check_specs=[AssetCheckSpec("labels_failure_share", asset="sam3_labels", blocking=True, description=(
        "The share of the category's accepted images whose label failed (in this run or kept from an earlier "
        "attempt) is at most max_failed_share (5%): a broken CUDA stack or a post-processing bug fails here, and "
        "its retry stays red while the images are failed, instead of shipping an export without them."))],
)
def sam3_labels(
    context: AssetExecutionContext, config: LabelConfig, dataset: DatasetResource, sam3: Sam3Resource,
    ray_workers: ResourceParam[Any], deduped_images: pd.DataFrame,
) -> MaterializeResult:
    """Writes its own table (batch parts merged under its resume protocol), so it returns no value: the IO
    manager only reads the table for curated_coco."""
    category = context.partition_key
    settings = config.settings()
    # Spec and queries are checked before any model work: a typo fails in a second, not after loading 3 GB.
    taxonomy = load_taxonomy(dataset.layout, RULES)
    spec, queries = taxonomy.spec, taxonomy.queries
    selection = dataset_selection(dataset.layout, spec)
    low = selection.below_floor(settings.candidate_floor)
    if low:
        context.log.warning(f"thresholds {low} (category id -> threshold; -1: the default) are below candidate_floor "
                            f"{settings.candidate_floor}: below the floor there are no candidates to pass")
    if ray_connected(ray_workers, context.log.info):
        return _label_on_ray(context, config, dataset, sam3, spec, queries, deduped_images, selection)
    loaded = sam3.load(compile_cache=dataset.layout.compile_cache)
    tokenizer = loaded.processor.tokenizer
    queries, warnings = truncate_queries(queries, lambda text: len(tokenizer(text).input_ids) - 2)
    for warning in warnings:
        context.log.warning(warning)
    labeler = settings.labeler(loaded.fingerprint, queries, loaded.precision)
    accepted = deduped_images[deduped_images["status"] == DedupeStatus.ACCEPTED]
    context.log.info(f"{category}: {len(accepted)} accepted images, {len(queries.queries)} prompts, labeler {labeler}")
    result = label_partition(
        accepted, dataset.store(), make_segmenter(loaded, queries, spec, settings), labeler,
        table_path=dataset.layout.table(TableName.SAM3_LABELS, category), image_batch=settings.image_batch,
        retry_failed=config.retry_failed, relabel_imported=config.relabel_imported, relabel=config.relabel,
        post_workers=config.post_workers,
        progress=ProgressLog(context.log.info, f"label {category}", "images"),
        log=context.log.info,
    )
    table = result.table
    if len(result.precisions) > 1:
        context.log.warning(
            f"{category}: labels of {len(result.precisions)} precisions "
            f"({', '.join(f'{p}: {n}' for p, n in result.precisions.items())}); this run's is {loaded.precision}. "
            "Run sam3_labels with `relabel: other_precision` to label the others again at this one.")
    failed = table[table.status == LabelStatus.FAILED]
    device = loaded.device
    gpu = "cpu"
    if device.type == "cuda":
        import torch

        gpu = torch.cuda.get_device_name(device)
    return MaterializeResult(
        check_results=[failure_share_check(result, labeler, config.max_failed_share)],
        metadata={
            **_run_metadata(result, dataset, spec, selection),
            "candidate_floor": settings.candidate_floor,
            "postprocess_s": round(result.post_seconds, 2),
            "postprocess_not_hidden_s": round(result.post_wait_seconds, 2),
            "stage_seconds": MetadataValue.json({k: round(v, 2) for k, v in result.stage_seconds.items()}),
            "slowest_stage": result.slowest_stage,
            "device": gpu,  # what `auto` picked, or the GPU `cuda` named
            "device_requested": sam3.device,
            "dtype": str(loaded.dtype).removeprefix("torch."),
            **({"device_lease": f"{lease.device} ({lease.slot.key})"} if (lease := held_lease()) else {}),
            "model_fingerprint": loaded.fingerprint,
            "queries_fingerprint": queries.fingerprint(),
            "labeler": labeler,
            "precision": loaded.precision,
            "precisions": MetadataValue.json(result.precisions),
            "mixed_precision": len(result.precisions) > 1,
            **({"relabelled_because": result.relabel_reason} if result.relabel_reason else {}),
            "failures": md_table(failed[["dhash", "rel_path", "error"]]),
        },
    )


def _label_on_ray(context: AssetExecutionContext, config: LabelConfig, dataset: DatasetResource, sam3: Sam3Resource,
                  spec: Spec, queries: QuerySet, deduped_images: pd.DataFrame, selection: Selection) -> MaterializeResult:
    """The category on Ray actors (``core.label.ray_workers``): one replica per free GPU of the cluster (CPU
    actors where the model's device is ``cpu``, or ``auto`` on a cluster without GPUs)."""
    from samantics_dagster.core.label.ray_workers import ReplicaSpec, cluster_has_gpus, label_partition_ray

    category = context.partition_key
    gpu = sam3.device != "cpu" and (sam3.device != "auto" or cluster_has_gpus())
    replica = ReplicaSpec(str(sam3.model_dir()), gpu=gpu, dtype=sam3.dtype, compile=sam3.compile,
                          cpus=config.ray_cpus_per_actor)
    accepted = deduped_images[deduped_images["status"] == DedupeStatus.ACCEPTED]
    context.log.info(f"{category}: {len(accepted)} accepted images, {len(queries.queries)} prompts, on Ray")
    result = label_partition_ray(
        accepted, dataset.dataset_path, replica, spec, queries, config.settings(),
        table_path=dataset.layout.table(TableName.SAM3_LABELS, category), max_actors=config.ray_max_actors,
        share_batches=config.ray_share_batches, retry_failed=config.retry_failed,
        relabel_imported=config.relabel_imported, relabel=config.relabel, post_workers=config.post_workers,
        progress=ProgressLog(context.log.info, f"label {category} on Ray", "images"), log=context.log.info)
    for warning in result.warnings:
        context.log.warning(warning)
    table = result.table
    failed = table[table.status == LabelStatus.FAILED]
    return MaterializeResult(
        check_results=[failure_share_check(result, result.labeler, config.max_failed_share)],
        metadata={
            **_run_metadata(result, dataset, spec, selection),
            "ray_actors": MetadataValue.json(result.actors),
            "slowest_actor": result.slowest_actor or "-",
            "ray_start_s": round(result.start_seconds, 2),
            "relabelled_after_failures": result.relabelled_after_failures,
            "model_fingerprint": result.model_fingerprint,
            "queries_fingerprint": result.queries_fingerprint,
            "labeler": result.labeler,
            **({"relabelled_because": result.relabel_reason} if result.relabel_reason else {}),
            "failures": md_table(failed[["dhash", "rel_path", "error"]]),
        },
    )


def _run_metadata(result: "LabelResult | RayLabelResult", dataset: DatasetResource, spec: Spec,
                  selection: Selection) -> dict[str, Any]:
    """What both paths (in-process, Ray) report of the table and the run: the table's schema and size, previews,
    counts, candidates per class and the rate. Each path adds its own (device and stages, or actors)."""
    table = result.table
    by_name = {str(c.id): c.name for c in spec.categories}
    return {
        **table_metadata(TableName.SAM3_LABELS, table),
        "previews": MetadataValue.md(_previews(table, dataset, {c.id: c.name for c in spec.categories}, selection)),
        "done": int((table.status == LabelStatus.DONE).sum()),
        "failed": int((table.status == LabelStatus.FAILED).sum()),
        "labelled_this_run": result.labelled,
        "reused": result.reused,
        "candidates": int(table["n_instances"].fillna(0).sum()),
        "candidates_per_class": MetadataValue.json({by_name.get(k, k): v for k, v in result.instances_per_class.items()}),
        "images_per_s": round(result.labelled / result.seconds, 2) if result.seconds > 0 else 0.0,
    }


def failure_share_check(result: "LabelResult | RayLabelResult", labeler: str, bound: float) -> AssetCheckResult:
    """The category's rows under this labeler judged, not this attempt's (``core.label.failures``)."""
    judged = failure_share(result.table, labeler, attempted=result.attempted, failed_this_run=result.failed_this_run)
    return AssetCheckResult(check_name="labels_failure_share", passed=judged.passed(bound),
                            metadata={k: MetadataValue.json(v) if isinstance(v, dict) else v
                                      for k, v in judged.metadata(bound).items()},
                            description=judged.explain(bound))
