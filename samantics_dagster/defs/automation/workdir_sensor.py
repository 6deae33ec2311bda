"""The grabby workdir sensor: new category folders become partitions, new frames become runs.

The scan itself (cursor, debounce, chunking) is ``core.workdir.scan``; this module turns its result into
Dagster's terms: one add request for every new category, one ``RunRequest`` of ``category_pipeline``
per changed category, with a ``run_key`` built from the folder signature so a repeated tick (or a
reset cursor) never launches the same work twice. Before it requests a run it reads ``coco-spec.json`` and
``sam-queries.yaml`` as the run would: while they are missing or broken it requests nothing, keeps its cursor
(the changes are still there once the files are fixed) and says why in the tick's skip reason.
"""

from pathlib import Path

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from samantics_dagster.core.dataset.spec import SpecError
from samantics_dagster.core.label.pipeline import PASSENGER
from samantics_dagster.core.label.taxonomy import load_taxonomy
from samantics_dagster.core.settings import Settings, settings
from samantics_dagster.core.workdir.scan import decode_cursor, encode_cursor, scan_workdir
from samantics_dagster.defs.automation.jobs import category_pipeline
from samantics_dagster.defs.partitions import category_partitions
from samantics_dagster.defs.resources.dataset import DatasetResource


def build_workdir_sensor(config: Settings) -> SensorDefinition:
    """The sensor with its tick interval, quiet period, time budget and default status from ``config``."""

    @sensor(
        name="grabby_workdir_sensor",
        job=category_pipeline,
        minimum_interval_seconds=config.sensor_interval_s,
        default_status=DefaultSensorStatus.RUNNING if config.sensor_on else DefaultSensorStatus.STOPPED,
        description="Watches GRABBY_WORKDIR: new category folders become `category` partitions, new or changed "
                    "frames (once the folder is quiet) launch category_pipeline for that category.",
    )
    def grabby_workdir_sensor(context: SensorEvaluationContext, dataset: DatasetResource):
        # A missing workdir raises (a red tick in the UI), rather than looking like an empty one.
        scan = scan_workdir(Path(dataset.grabby_workdir), decode_cursor(context.cursor),
                            quiet_seconds=config.sensor_quiet_s,
                            time_budget_s=config.sensor_time_budget_s)
        for reason in [r for _, r in sorted(scan.skipped.items())]:
            context.log.warning(f"skipped: {reason}")
        for reason in [r for _, r in sorted(scan.waiting.items())]:
            context.log.info(f"waiting: {reason}")
        existing = set(context.instance.get_dynamic_partitions(str(category_partitions.name)))
        new = sorted(set(scan.categories) - existing)
        runs = [RunRequest(partition_key=category, run_key=f"{category}:{signature}",
                           tags={"samantics/trigger": "grabby_workdir_sensor", "samantics/signature": signature})
                for category, signature in sorted(scan.changed.items())]
        context.log.info(f"scanned {scan.folders_statted} folders ({scan.folders_listed} listed) in {scan.seconds:.2f}s; "
                         f"{len(new)} new categories, {len(runs)} runs, {len(scan.waiting)} waiting"
                         + ("" if scan.complete else "; scan continues next tick"))
        if not new and not runs:
            return SensorResult(skip_reason=SkipReason("no new or changed category folders"), cursor=encode_cursor(scan.cursor))
        partitions = [category_partitions.build_add_request(new)] if new else []
        if runs:
            try:  # the runs carry no run config: sam3_labels' default relation rules apply
                load_taxonomy(dataset.layout, (PASSENGER,))
            except SpecError as exc:
                waiting = [r.partition_key or "" for r in runs]
                more = f" and {len(waiting) - 5} more" if len(waiting) > 5 else ""
                reason = f"not requesting runs for {', '.join(waiting[:5])}{more} until this is fixed: {exc}"
                context.log.error(reason)
                # The old cursor: the next tick finds the same changes and requests their runs once fixed.
                return SensorResult(skip_reason=SkipReason(reason), dynamic_partitions_requests=partitions,
                                    cursor=context.cursor)
        return SensorResult(
            run_requests=runs,
            dynamic_partitions_requests=partitions,
            cursor=encode_cursor(scan.cursor),
        )

    return grabby_workdir_sensor


grabby_workdir_sensor = build_workdir_sensor(settings())
