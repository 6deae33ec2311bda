"""Is a run's worker still alive? Pure logic (no Dagster imports), shared by the sensor and the CLI.

Dagster's default run launcher has no worker health check, and a run started by ``dagster asset
materialize`` is launched by nothing at all: if its process is SIGKILLed (the OOM killer, a closed
laptop lid, a ``kill -9``) the run stays STARTED and keeps its pool slots for good. Each worker therefore
holds a *lease*: ``{DATASET_DIR}/.locks/runs/{run_id}.lease``, ``flock``ed for the life of the process and
holding its host, pid and start time. The kernel drops a flock when the process dies, however it dies,
so "the lease file exists and can be locked" means "its worker is gone" on any host that shares the
dataset folder; no clock or pid guessing. Runs without a lease (started before this code, or killed
before their resources were built) fall back to the pid Dagster records on their events, checked only
on the host that recorded it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from samantics_dagster.core.dataset.layout import DatasetLayout


def this_host() -> str:
    return socket.gethostname()


def lease_path(dataset_dir: Path, run_id: str) -> Path:
    return DatasetLayout(dataset_dir).run_lease(run_id)


class RunLease:
    """The flock a run worker holds while it lives (see the module docstring)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    def release(self) -> None:
        """Drop the lock and the file: a finished run leaves nothing under ``.locks/runs``."""
        if self._fd < 0:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = -1


def try_flock(path: Path, record: dict, mode: int = 0o644) -> int | None:
    """Open ``path`` and take its exclusive ``flock`` without waiting, then write ``record`` (JSON: who holds it)
    into it; the open fd, which holds the lock until it is closed or the process dies, or ``None`` if another
    process holds it. The one way the run leases and the device leases are taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    return fd


def hold_lease(dataset_dir: Path, run_id: str) -> RunLease | None:
    """Take the run's lease for this process; ``None`` if this run's lease is already held (another step
    process of the same run holds it, which says just as well that the run lives)."""
    path = lease_path(dataset_dir, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = try_flock(path, {"run_id": run_id, "host": this_host(), "pid": os.getpid(), "started": time.time()})
    return None if fd is None else RunLease(path, fd)


def lease_state(dataset_dir: Path, run_id: str) -> str:
    """``"held"`` (a live process holds it), ``"released"`` (the file is there, nobody holds it: the
    worker died) or ``"absent"`` (no lease: this run never took one, or it ended and removed it)."""
    path = lease_path(dataset_dir, run_id)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return "absent"
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        # A worker that ends cleanly unlinks its lease *before* dropping the lock: a probe that opened the
        # file just before and got the lock just after holds an unlinked file, and that run is not dead.
        return "released" if os.fstat(fd).st_nlink > 0 else "absent"
    except BlockingIOError:
        return "held"
    finally:
        os.close(fd)  # closing drops our probe lock, if we got it


def lease_run_ids(dataset_dir: Path) -> list[str]:
    """The runs with a lease file (held by a live worker, or left by a dead one)."""
    folder = DatasetLayout(dataset_dir).run_leases
    return sorted(p.name[: -len(".lease")] for p in folder.glob("*.lease")) if folder.is_dir() else []


def remove_lease(dataset_dir: Path, run_id: str) -> None:
    """Tidy a dead worker's lease once its run has been failed."""
    lease_path(dataset_dir, run_id).unlink(missing_ok=True)


def _boot_time() -> float:
    with open("/proc/stat") as fh:
        for line in fh:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def process_alive(pid: int, not_started_after: float | None = None) -> bool:
    """Whether ``pid`` is a live (not zombie) process of this host's pid namespace.

    ``not_started_after``: the time the worker was first seen with this pid; a process that started later
    is a new one that reused the number, so the worker is gone.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc to look closer: kill(0) said it exists
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return False  # killed, not yet reaped by its parent
    if not_started_after is not None:
        started = _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
        if started > not_started_after + 2.0:
            return False
    return True


@dataclass(frozen=True)
class WorkerEvidence:
    """What the instance and the dataset folder say about one STARTED run."""

    run_id: str
    lease: str                      # lease_state(): held / released / absent
    pid: int | None = None          # the worker pid on its RUN_START event
    pid_seen_at: float | None = None  # when that event was written
    pid_host_is_local: bool = False  # True only when that pid can be checked here (local SQLite instance)
    started_at: float | None = None  # the run's start time
    last_event_at: float | None = None


@dataclass(frozen=True)
class Verdict:
    dead: bool
    reason: str


def judge(evidence: WorkerEvidence, now: float, stale_after_s: float = 0.0) -> Verdict:
    """Decide whether a STARTED run's worker is dead; never guesses "dead" without evidence.

    ``stale_after_s`` > 0 also calls a run dead when no event at all arrived for that long and nothing
    else can be checked (a lease-less run on another host); 0 leaves such runs alone.
    """
    e = evidence
    if e.lease == "held":
        return Verdict(False, "its worker holds its lease")
    if e.lease == "released":
        return Verdict(True, "its worker died: the run lease it held is free (the process is gone)")
    if e.pid is not None and e.pid_host_is_local:
        if process_alive(e.pid, e.pid_seen_at):
            return Verdict(False, f"worker pid {e.pid} is alive")
        return Verdict(True, f"its worker (pid {e.pid}, this host) is no longer running")
    last = e.last_event_at or e.started_at
    if stale_after_s > 0 and last is not None and now - last > stale_after_s:
        return Verdict(True, f"no event for {now - last:.0f}s (> {stale_after_s:.0f}s) and no lease or local pid to check")
    return Verdict(False, "no evidence that its worker died")
