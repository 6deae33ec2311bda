"""Nightly upkeep: retry failed labels (off by default: it spends GPU time); the full export (on: it only runs
when the single files wait, see ``core.export.shards``)."""

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, SkipReason, schedule

from samantics_dagster.core.export.shards import load_manifest, load_shards, single_files_current
from samantics_dagster.core.label.jsonl_segments import labels_jsonl_current
from samantics_dagster.core.tools.status import failed_labels
from samantics_dagster.defs.automation.jobs import category_pipeline, coco_export
from samantics_dagster.defs.resources.dataset import DatasetResource


@schedule(
    name="nightly_label_retry",
    job=category_pipeline,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="02:00 UTC: re-runs category_pipeline with retry_failed for every category with failed labels.",
)
def nightly_label_retry(context: ScheduleEvaluationContext, dataset: DatasetResource):
    failed = failed_labels(dataset.dataset_path)
    if failed.empty:
        return SkipReason("no failed labels")
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [
        RunRequest(partition_key=category, run_key=f"retry:{category}:{day}",
                   run_config={"ops": {"sam3_labels": {"config": {"retry_failed": True}}}},
                   tags={"samantics/trigger": "nightly_label_retry", "samantics/failed": str(n)})
        for category, n in failed.groupby("category").size().items()
    ]


@schedule(
    name="nightly_export",
    job=coco_export,
    cron_schedule="0 5 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="05:00 UTC: the full export. Rewrites the single files (coco/{split}.json, labels.jsonl) that "
                "wait above SAMANTICS_SINGLE_FILES_MAX_IMAGES, and skips when they are current.",
)
def nightly_export(context: ScheduleEvaluationContext, dataset: DatasetResource):
    layout = dataset.layout
    if single_files_current(layout, load_manifest(layout), load_shards(layout)) and labels_jsonl_current(layout):
        return SkipReason("coco/{split}.json and labels.jsonl are current")
    full = {"config": {"single_files": "always"}}
    return RunRequest(run_key=f"export:{context.scheduled_execution_time:%Y-%m-%d}",
                      run_config={"ops": {"coco_dataset": full, "labels_jsonl": full}},
                      tags={"samantics/trigger": "nightly_export"})
