"""What every run's worker does first: take its lease, heal dead runs, and own its category.

Called by :class:`DatasetResource` when a run sets up its resources (every asset uses it), so it needs no
asset code: the run's lease (``core.health.liveness``) says to the ``run_health_sensor`` and to later runs
that this worker lives; dead runs still holding pool slots are failed and freed (the CLI path, with no
daemon); and a per-category file lock makes a second run of the same category (a double click, the sensor
plus a manual run) wait for the first, then fail with a message naming it, so their writes never
interleave.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.health.liveness import RunLease, hold_lease, this_host
from samantics_dagster.core.settings import Env, read_settings

_POLL_S = 15.0


class CategoryBusy(RuntimeError):
    """Another live run is writing the same category."""


@dataclass
class RunGuard:
    lease: RunLease | None
    category_lock: FileLock | None

    def release(self) -> None:
        if self.category_lock is not None:
            self.category_lock.release()
        if self.lease is not None:
            self.lease.release()


def _owner_path(dataset_dir: Path, category: str) -> Path:
    return DatasetLayout(dataset_dir).category_owner(category)


def _owner(dataset_dir: Path, category: str) -> str:
    try:
        o = json.loads(_owner_path(dataset_dir, category).read_text())
        return f"run {o['run_id']} (pid {o['pid']} on {o['host']})"
    except (OSError, ValueError, KeyError):
        return "another run"


def own_category(dataset_dir: Path, category: str, run_id: str, log: Callable[[str], None],
                 wait_s: float | None = None) -> FileLock:
    """The category's write lock, waited for up to ``wait_s`` (``SAMANTICS_CATEGORY_WAIT_SECONDS``, 1800)."""
    if wait_s is None:
        wait_s = read_settings().category_wait_s
    path = DatasetLayout(dataset_dir).category_lock(category)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    deadline = time.monotonic() + wait_s
    while True:
        try:
            lock.acquire(timeout=max(0.0, min(_POLL_S, deadline - time.monotonic())))
            break
        except Timeout:
            holder = _owner(dataset_dir, category)
            if time.monotonic() >= deadline:
                raise CategoryBusy(
                    f"category {category!r} is being written by {holder}; this run waited {wait_s:.0f}s and gives up "
                    f"so the two never write the same tables. Let that run finish (or terminate it in the UI), then "
                    f"re-run; {Env.CATEGORY_WAIT} sets how long a run waits") from None
            log(f"category {category!r} is being written by {holder}: waiting for it to finish")
    _owner_path(dataset_dir, category).write_text(json.dumps({"run_id": run_id, "pid": os.getpid(), "host": this_host()}))
    return lock


def enter_run(instance, dataset_dir: Path, run_id: str, category: str | None, log: Callable[[str], None]) -> RunGuard:
    """Lease, heal, lock; undone by :meth:`RunGuard.release` when the run's resources are torn down."""
    from samantics_dagster.defs.health.dead_runs import heal_before_run

    lease = hold_lease(dataset_dir, run_id)
    heal_before_run(instance, dataset_dir, run_id, log)
    lock = None
    if category is not None and lease is not None:  # a second step process of this run already owns it
        try:
            lock = own_category(dataset_dir, category, run_id, log)
        except BaseException:
            lease.release()
            raise
    return RunGuard(lease, lock)
