"""Nightly upkeep, off by default (it spends GPU time): retry failed labels, refresh the merged export."""

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, SkipReason, schedule

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
    default_status=DefaultScheduleStatus.STOPPED,
    description="05:00 UTC: re-merges coco_dataset, for instances that run without the automation sensor.",
)
def nightly_export(context: ScheduleEvaluationContext):
    return RunRequest(run_key=f"export:{context.scheduled_execution_time:%Y-%m-%d}")
