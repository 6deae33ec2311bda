"""Retries Dagster's retry daemon promised and never launched: requested again as fresh runs of the partition.

Measured with Dagster 1.13.27 on the SQLite instance: when two runs fail within about a second of each other,
the retry daemon sometimes drops one. The failed run keeps ``dagster/will_retry: true``, but no "Retrying
the run" event and no child run follow, and the category waits for its next trigger. This module finds those
runs once Dagster has had ``grace_s`` to retry them, and asks for a new run of the same job and partition with
the run's own tags and the retries it had left. A fresh run is as cheap as a retry from the failed step:
every stage resumes from what is recorded (dedupe reuses its rows, labelling its parts). The dropped run's
``will_retry`` tag is set to false first, so a late retry from Dagster and ours can't both start.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

WILL_RETRY, RETRY_NUMBER, MAX_RETRIES = "dagster/will_retry", "dagster/retry_number", "dagster/max_retries"
PARENT = "dagster/parent_run_id"
REPLACES = "samantics/lost_retry_of"
# Dagster's own bookkeeping, not carried over to the replacement run
_SYSTEM = ("dagster/retry_number", "dagster/will_retry", "dagster/parent_run_id", "dagster/root_run_id",
           "dagster/is_resume_retry", "dagster/failure_reason", "dagster/run_key", "dagster/sensor_name",
           "dagster/step_selection", "dagster/auto_retry_run_id", "dagster/backfill", "dagster/run_worker_failure")


@dataclass(frozen=True)
class LostRetry:
    run_id: str
    job_name: str
    partition: str | None
    tags: dict[str, str]  # what the replacement run carries


def find_lost_retries(instance: DagsterInstance, grace_s: float = 30.0, window_s: float = 6 * 3600) -> list[LostRetry]:
    """FAILED runs that Dagster marked to retry, ended more than ``grace_s`` ago, with no retry in sight."""
    now = time.time()
    records = instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.FAILURE], tags={WILL_RETRY: "true"},
                                                  updated_after=_utc(now - window_s)))
    out = []
    for record in records:
        run = record.dagster_run
        ended = record.end_time or (record.update_timestamp.timestamp() if record.update_timestamp else now)
        if now - ended < grace_s:
            continue
        if instance.get_runs(RunsFilter(tags={PARENT: run.run_id}), limit=1) or \
                instance.get_runs(RunsFilter(tags={REPLACES: run.run_id}), limit=1):
            continue  # Dagster retried it after all, or we already did
        left = max(0, int(run.tags.get(MAX_RETRIES, "0")) - int(run.tags.get(RETRY_NUMBER, "0")) - 1)
        tags = {k: v for k, v in run.tags.items() if k not in _SYSTEM}
        tags.update({REPLACES: run.run_id, MAX_RETRIES: str(left)})
        out.append(LostRetry(run.run_id, run.job_name, run.tags.get("dagster/partition"), tags))
    return out


def claim(instance: DagsterInstance, lost: LostRetry) -> None:
    """Tell Dagster's retry daemon not to retry it now: the replacement is ours."""
    instance.add_run_tags(lost.run_id, {WILL_RETRY: "false"})


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)
