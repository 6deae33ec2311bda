"""The grabby workdir sensor: new category folders become partitions, new frames become runs.

The scan itself (cursor, debounce, chunking) is ``core.workdir_scan``; this module turns its result into
Dagster's terms: one add request for every new category, one ``RunRequest`` of ``category_pipeline``
per changed category, with a ``run_key`` built from the folder signature so a repeated tick (or a
reset cursor) never launches the same work twice.
"""

import os
from pathlib import Path

from dagster import (
    DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor,
)

from samantics_dagster.core.workdir_scan import decode_cursor, encode_cursor, scan_workdir
from samantics_dagster.jobs import category_pipeline
from samantics_dagster.partitions import category_partitions
from samantics_dagster.resources.dataset import DatasetResource


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


# Knobs read when the code location loads (sensors take no run config): how often a tick runs, how long
# a folder must be quiet before its frames count, and how long one tick may scan before it resumes next tick.
INTERVAL_S = int(_env_float("SAMANTICS_SENSOR_INTERVAL_SECONDS", 30))
QUIET_S = _env_float("SAMANTICS_SENSOR_QUIET_SECONDS", 30.0)
BUDGET_S = _env_float("SAMANTICS_SENSOR_TIME_BUDGET_SECONDS", 20.0)
DEFAULT_STATUS = (DefaultSensorStatus.STOPPED if os.environ.get("SAMANTICS_SENSOR", "on").lower() in ("off", "0", "false")
                  else DefaultSensorStatus.RUNNING)


@sensor(
    name="grabby_workdir_sensor",
    job=category_pipeline,
    minimum_interval_seconds=INTERVAL_S,
    default_status=DEFAULT_STATUS,
    description="Watches GRABBY_WORKDIR: new category folders become `category` partitions, new or changed "
                "frames (once the folder is quiet) launch category_pipeline for that category.",
)
def grabby_workdir_sensor(context: SensorEvaluationContext, dataset: DatasetResource):
    # A missing workdir raises (a red tick in the UI), rather than looking like an empty one.
    scan = scan_workdir(Path(dataset.grabby_workdir), decode_cursor(context.cursor),
                        quiet_seconds=QUIET_S, time_budget_s=BUDGET_S)
    for reason in [r for _, r in sorted(scan.skipped.items())]:
        context.log.warning(f"skipped: {reason}")
    for reason in [r for _, r in sorted(scan.waiting.items())]:
        context.log.info(f"waiting: {reason}")
    existing = set(context.instance.get_dynamic_partitions(category_partitions.name))
    new = sorted(set(scan.categories) - existing)
    runs = [RunRequest(partition_key=category, run_key=f"{category}:{signature}",
                       tags={"samantics/trigger": "grabby_workdir_sensor", "samantics/signature": signature})
            for category, signature in sorted(scan.changed.items())]
    context.log.info(f"scanned {scan.folders_statted} folders ({scan.folders_listed} listed) in {scan.seconds:.2f}s; "
                     f"{len(new)} new categories, {len(runs)} runs, {len(scan.waiting)} waiting"
                     + ("" if scan.complete else "; scan continues next tick"))
    if not new and not runs:
        return SensorResult(skip_reason=SkipReason("no new or changed category folders"), cursor=encode_cursor(scan.cursor))
    return SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[category_partitions.build_add_request(new)] if new else [],
        cursor=encode_cursor(scan.cursor),
    )
