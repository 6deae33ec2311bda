"""Dead run workers, failed through Dagster's own API so retries and slot release follow its rules.

Dagster's run monitoring notices a dead worker only when its launcher can check workers (Docker, k8s) or
when the code server that launched it sees its subprocess die. A run started by ``dagster asset
materialize`` (in process, launched by nothing) that is SIGKILLed stays STARTED with its ``gpu`` /
``dedupe`` pool slots, and every later step of that pool waits forever. The evidence and the verdict are
``core.health.liveness`` (each worker holds a flock lease in the dataset folder); this module gathers the
evidence from the instance, and fails a dead run with ``report_run_failed`` (the retry daemon then
retries it, as it would any failed run) and frees its slots at once.

Three entry points: the ``run_health_sensor`` (under the daemon), :func:`heal_before_run` (each run's
worker, when it starts, so the CLI path heals without a daemon) and ``samantics release-dead-runs``.
"""

from __future__ import annotations

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from samantics_dagster.core.settings import settings
from samantics_dagster.defs.automation.jobs import category_pipeline, coco_export
from samantics_dagster.defs.health.dead_runs import heal
from samantics_dagster.defs.health.lost_retries import claim, find_lost_retries
from samantics_dagster.defs.resources.dataset import DatasetResource

_JOBS = (category_pipeline.name, coco_export.name)  # what the sensor may request


@sensor(
    name="run_health_sensor",
    jobs=[category_pipeline, coco_export],
    minimum_interval_seconds=10,
    default_status=DefaultSensorStatus.RUNNING,
    description="Fails STARTED runs whose worker is gone (SIGKILLed, OOM-killed, a CLI run whose terminal "
                "closed) and frees their pool slots at once; run_retries then retries them. A retry Dagster "
                "promised (will_retry) but never launched is requested again as a fresh run of the partition.",
)
def run_health_sensor(context: SensorEvaluationContext, dataset: DatasetResource):
    if settings().executor == "k8s":
        # step pods come and go within one run (no lease between steps); K8sRunLauncher checks its workers
        return SkipReason("SAMANTICS_EXECUTOR=k8s: Dagster's run monitoring checks the run workers")
    instance = context.instance
    healed = heal(instance, dataset.dataset_path, "run_health_sensor", context.log.warning)
    requests = []
    for lost in find_lost_retries(instance):
        claim(instance, lost)
        if lost.job_name not in _JOBS or not lost.replaceable:
            context.log.warning(f"run {lost.run_id} of {lost.job_name} was to be retried but Dagster launched no "
                                "retry, and this sensor can't ask for the same run (not one of its jobs, or an op "
                                "selection): re-execute it from the UI")
            continue
        context.log.warning(f"run {lost.run_id} was to be retried but Dagster launched no retry: requesting a "
                            f"new run of {lost.job_name} for {lost.partition or 'the dataset'}, with its run config "
                            "and selection")
        requests.append(RunRequest(
            job_name=lost.job_name, partition_key=lost.partition, run_key=f"lost-retry:{lost.run_id}",
            tags=lost.tags, run_config=lost.run_config,
            asset_selection=list(lost.asset_selection) if lost.asset_selection is not None else None,
            asset_check_keys=list(lost.asset_check_selection) if lost.asset_check_selection is not None else None))
    if requests:
        return SensorResult(run_requests=requests)
    if not healed:
        return SkipReason("no STARTED run with a dead worker, no lost retry")
    return SkipReason(f"failed {len(healed)} dead runs: {', '.join(d.run_id for d in healed)}")
