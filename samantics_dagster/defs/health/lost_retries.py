"""Retries Dagster's retry daemon promised and never launched: requested again as fresh runs of the partition.

Measured with Dagster 1.13.27 on the SQLite instance: when two runs fail within about a second of each other,
the retry daemon sometimes drops one. The failed run keeps ``dagster/will_retry: true``, but no "Retrying
the run" event and no child run follow, and the category waits for its next trigger. This module finds those
runs once Dagster has had ``grace_s`` to retry them, and asks for a new run of the same job and partition with
the run's own run config, tags, asset (and asset check) selection and the retries it had left: a ``dry_run``
dedupe comes back dry, a dedupe with its own settings keeps them (the same settings fingerprint, nothing
deduplicated again), the nightly export keeps ``single_files: always``, the nightly label retry keeps
``retry_failed``. A fresh run is as cheap as a retry from the failed step:
every stage resumes from what is recorded (dedupe reuses its rows, labelling its parts). The dropped run's
``will_retry`` tag is set to false first, so a late retry from Dagster and ours can't both start.
"""

from __future__ import annotations

import time
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from dagster import AssetCheckKey, AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

K = TypeVar("K", AssetKey, AssetCheckKey)

WILL_RETRY, RETRY_NUMBER, MAX_RETRIES = "dagster/will_retry", "dagster/retry_number", "dagster/max_retries"
PARENT = "dagster/parent_run_id"
REPLACES = "samantics/lost_retry_of"
# Dagster's own bookkeeping, not carried over to the replacement run
_SYSTEM = ("dagster/retry_number", "dagster/will_retry", "dagster/parent_run_id", "dagster/root_run_id",
           "dagster/is_resume_retry", "dagster/failure_reason", "dagster/run_key", "dagster/sensor_name",
           "dagster/step_selection", "dagster/auto_retry_run_id", "dagster/backfill", "dagster/run_worker_failure")


@dataclass(frozen=True)
class LostRetry:
    """The dropped run, and what its replacement carries over."""

    run_id: str
    job_name: str
    partition: str | None
    tags: dict[str, str]
    run_config: dict[str, Any] = field(default_factory=dict)
    asset_selection: tuple[AssetKey, ...] | None = None  # None: the whole job
    asset_check_selection: tuple[AssetCheckKey, ...] | None = None
    op_selection: tuple[str, ...] | None = None  # an op job's selection (a run request can't carry it)

    @property
    def replaceable(self) -> bool:
        """Whether a run request can ask for the same run: an op selection has no field in one, and a run of
        the whole job instead would do more than the run it replaces."""
        return self.op_selection is None or self.asset_selection is not None


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
        out.append(LostRetry(
            run.run_id, run.job_name, run.tags.get("dagster/partition"), tags, run_config=dict(run.run_config or {}),
            asset_selection=_sorted(run.asset_selection), asset_check_selection=_sorted(run.asset_check_selection),
            op_selection=tuple(run.op_selection) if run.op_selection else None))
    return out


def claim(instance: DagsterInstance, lost: LostRetry) -> None:
    """Tell Dagster's retry daemon not to retry it now: the replacement is ours."""
    instance.add_run_tags(lost.run_id, {WILL_RETRY: "false"})


def _sorted(keys: AbstractSet[K] | None) -> tuple[K, ...] | None:
    return None if keys is None else tuple(sorted(keys, key=lambda k: k.to_user_string()))


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)
