"""Find runs whose worker is gone and fail them through Dagster's API (see ``run_health.py`` for why).

No ``DatasetResource`` import here: the resource calls :func:`heal_before_run` when a run starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from samantics_dagster.core.health.liveness import WorkerEvidence, judge, lease_run_ids, lease_state, remove_lease

# A worker that dies while launched by a code server is failed by that server within a second or two;
# waiting this long after a run's last event keeps the two from failing the same run (two retries).
GRACE_S = 15.0
RELEASE_COMMAND = "samantics release-dead-runs"


@dataclass(frozen=True)
class DeadRun:
    run_id: str
    job_name: str
    partition: str | None
    reason: str
    pools: tuple[str, ...]


def _local_instance(instance: DagsterInstance) -> bool:
    """A SQLite instance lives on one machine's disk: the pids on its events are this host's."""
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

    return isinstance(instance.run_storage, SqliteRunStorage)


def _evidence(instance: DagsterInstance, record, dataset_dir: Path, local: bool) -> WorkerEvidence:
    run_id = record.dagster_run.run_id
    starts = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_START, limit=1).records
    start = starts[0].event_log_entry if starts else None
    last = instance.get_records_for_run(run_id, ascending=False, limit=1).records
    return WorkerEvidence(
        run_id=run_id, lease=lease_state(dataset_dir, run_id),
        pid=start.dagster_event.pid if start is not None and start.dagster_event is not None else None,
        pid_seen_at=start.timestamp if start is not None else None, pid_host_is_local=local,
        started_at=record.start_time, last_event_at=last[0].event_log_entry.timestamp if last else None,
    )


def slot_holders(instance: DagsterInstance) -> dict[str, set[str]]:
    """run_id -> the pools it holds a slot of (or waits on)."""
    storage = instance.event_log_storage
    out: dict[str, set[str]] = {}
    if not storage.supports_global_concurrency_limits:
        return out
    for pool in storage.get_concurrency_keys():
        info = storage.get_concurrency_info(pool)
        for slot in info.claimed_slots:
            out.setdefault(slot.run_id, set()).add(pool)
    return out


def find_dead_runs(instance: DagsterInstance, dataset_dir: Path, *, exclude: Iterable[str] = (),
                   grace_s: float = GRACE_S, stale_after_s: float = 0.0) -> list[DeadRun]:
    """STARTED runs whose worker is gone, with the pools whose slots they still hold."""
    skip, now, local = set(exclude), time.time(), _local_instance(instance)
    holders = slot_holders(instance)
    dead = []
    for record in instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.STARTED])):
        run = record.dagster_run
        if run.run_id in skip:
            continue
        evidence = _evidence(instance, record, dataset_dir, local)
        if evidence.last_event_at is not None and now - evidence.last_event_at < grace_s:
            continue
        verdict = judge(evidence, now, stale_after_s)
        if verdict.dead:
            dead.append(DeadRun(run.run_id, run.job_name, run.tags.get("dagster/partition"), verdict.reason,
                                tuple(sorted(holders.get(run.run_id, ())))))
    return dead


def fail_dead_run(instance: DagsterInstance, dead: DeadRun, dataset_dir: Path, by: str) -> bool:
    """Fail the run (Dagster then retries it under ``run_retries``) and free its pool slots now, not after
    ``free_slots_after_run_end_seconds``. False if it was no longer STARTED (it finished meanwhile)."""
    run = instance.get_run_by_id(dead.run_id)
    if run is None or run.status != DagsterRunStatus.STARTED:
        return False
    instance.report_run_failed(run, f"{by}: {dead.reason}; marking the run failed and freeing its pool slots "
                                    f"({', '.join(dead.pools) or 'none held'}).")
    instance.event_log_storage.free_concurrency_slots_for_run(dead.run_id)
    remove_lease(dataset_dir, dead.run_id)
    return True


def sweep_leases(instance: DagsterInstance, dataset_dir: Path) -> int:
    """Remove the leases dead workers left behind once their run has ended (failed by Dagster's code
    server or monitoring, not by us); a held lease or a STARTED run's lease is never touched."""
    removed = 0
    for run_id in lease_run_ids(dataset_dir):
        run = instance.get_run_by_id(run_id)
        if (run is None or run.is_finished) and lease_state(dataset_dir, run_id) == "released":
            remove_lease(dataset_dir, run_id)
            removed += 1
    return removed


def heal(instance: DagsterInstance, dataset_dir: Path, by: str, log: Callable[[str], None],
         exclude: Iterable[str] = (), grace_s: float = GRACE_S) -> list[DeadRun]:
    """Fail every dead STARTED run (slots freed), then tidy the leases of ended runs."""
    healed = []
    for dead in find_dead_runs(instance, dataset_dir, exclude=exclude, grace_s=grace_s):
        if fail_dead_run(instance, dead, dataset_dir, by):
            log(f"run {dead.run_id} ({dead.job_name}, {dead.partition or 'no partition'}) failed by {by}: "
                f"{dead.reason}; freed its slots of {', '.join(dead.pools) or 'no pool'}")
            healed.append(dead)
    sweep_leases(instance, dataset_dir)
    return healed


def heal_before_run(instance: DagsterInstance, dataset_dir: Path, run_id: str, log: Callable[[str], None]) -> None:
    """At the start of every run (in its worker): dead runs holding pool slots are failed and their slots
    freed, so a killed ``dagster asset materialize`` never blocks the next one. Only runs that hold slots:
    the rest is the sensor's (or nobody's) business and costs a run start nothing."""
    holders = slot_holders(instance)
    holders.pop(run_id, None)
    if not holders:
        return
    try:
        healed = {d.run_id for d in heal(instance, dataset_dir, f"run {run_id} at its start", log, exclude=[run_id],
                                         grace_s=0.0)}
        for other, pools in sorted(holders.items()):
            if other not in healed:
                log(f"run {other} holds the {', '.join(sorted(pools))} pool slot and looks alive: steps of this pool "
                    f"wait for it. If its worker died on another machine, `{RELEASE_COMMAND}` there frees it")
    except Exception as exc:  # healing must never fail a healthy run; say what frees the slot by hand
        log(f"could not check the runs holding pool slots ({exc}); if a step waits on a pool for good, "
            f"`{RELEASE_COMMAND}` fails the dead runs and frees their slots")
