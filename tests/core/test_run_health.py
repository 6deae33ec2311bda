"""Dead-run detection: leases and pids on real processes, and a real SIGKILLed run holding the `gpu` slot."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from samantics_dagster.core.health.liveness import (
    WorkerEvidence,
    hold_lease,
    judge,
    lease_path,
    lease_run_ids,
    lease_state,
    process_alive,
)

REPO = Path(__file__).resolve().parents[2]
HOLDER = "import sys, time; from samantics_dagster.core.health.liveness import hold_lease; " \
         "l = hold_lease(sys.argv[1], sys.argv[2]); print('held', flush=True); time.sleep(120)"


def _holder(dataset: Path, run_id: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(dataset), run_id], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_lease_is_held_while_its_worker_lives_and_free_once_it_is_killed(tmp_path):
    proc = _holder(tmp_path, "run-a")
    try:
        assert lease_state(tmp_path, "run-a") == "held"
        assert hold_lease(tmp_path, "run-a") is None  # a second process can't take a live run's lease
        assert lease_run_ids(tmp_path) == ["run-a"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert lease_state(tmp_path, "run-a") == "released"
    assert lease_state(tmp_path, "never-ran") == "absent"


def test_a_cleanly_released_lease_is_not_a_dead_worker(tmp_path):
    lease = hold_lease(tmp_path, "run-b")
    assert lease is not None and lease_state(tmp_path, "run-b") == "held"
    fd = os.open(lease_path(tmp_path, "run-b"), os.O_RDONLY)  # a probe that opened the file just before the end
    lease.release()
    assert lease_state(tmp_path, "run-b") == "absent"
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # the probe gets the lock: on an unlinked file
    assert os.fstat(fd).st_nlink == 0
    os.close(fd)


def test_process_alive_sees_killed_zombie_and_reused_pids():
    assert process_alive(os.getpid())
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(0.2)
    assert process_alive(proc.pid, not_started_after=time.time())
    assert not process_alive(proc.pid, not_started_after=time.time() - 3600)  # started after: a reused pid
    proc.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_alive(proc.pid) and time.monotonic() < deadline:  # a zombie until reaped: already dead
        time.sleep(0.05)
    assert not process_alive(proc.pid)
    proc.wait()
    assert not process_alive(proc.pid)


@pytest.mark.parametrize("evidence,dead", [
    (WorkerEvidence("r", "held", pid=1, pid_host_is_local=True), False),
    (WorkerEvidence("r", "released", pid=os.getpid(), pid_host_is_local=True), True),  # the lease wins
    (WorkerEvidence("r", "absent", pid=os.getpid(), pid_seen_at=time.time(), pid_host_is_local=True), False),
    (WorkerEvidence("r", "absent", pid=2 ** 22 + 7, pid_host_is_local=True), True),
    (WorkerEvidence("r", "absent", pid=2 ** 22 + 7, pid_host_is_local=False), False),  # another host's pid
    (WorkerEvidence("r", "absent", last_event_at=0.0), False),  # silence alone is no evidence by default
])
def test_judge_needs_evidence(evidence, dead):
    assert judge(evidence, now=time.time()).dead is dead


def test_judge_stale_after():
    e = WorkerEvidence("r", "absent", last_event_at=time.time() - 600)
    assert judge(e, time.time(), stale_after_s=300).dead and not judge(e, time.time(), stale_after_s=900).dead


SLOW_RUN = textwrap.dedent('''
    import sys, time
    import dagster as dg
    from samantics_dagster.defs.resources.dataset import DatasetResource

    @dg.asset(pool="gpu")
    def on_the_gpu(dataset: DatasetResource) -> None:
        print("step running", flush=True)
        time.sleep(float(sys.argv[2]))

    result = dg.materialize([on_the_gpu], instance=dg.DagsterInstance.get(),
                            resources={"dataset": DatasetResource(dataset_dir=sys.argv[1], grabby_workdir=sys.argv[1])})
    print("success" if result.success else "failure", flush=True)
''')


@pytest.mark.slow  # subprocess Dagster runs
def test_a_sigkilled_cli_run_is_healed_by_the_next_run_and_by_the_command(tmp_path, monkeypatch):
    from dagster import DagsterInstance, DagsterRunStatus

    from samantics_dagster.cli.main import main
    from samantics_dagster.defs.health.dead_runs import find_dead_runs, slot_holders

    home, dataset = tmp_path / "home", tmp_path / "dataset"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    script = tmp_path / "slow_run.py"
    script.write_text(SLOW_RUN)

    def killed_run() -> None:
        proc = subprocess.Popen([sys.executable, str(script), str(dataset), "120"], env=env, stdout=subprocess.PIPE,
                                text=True, cwd=tmp_path)
        assert proc.stdout.readline().strip() == "step running"
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    killed_run()
    with DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.status == DagsterRunStatus.STARTED and run.run_id in slot_holders(instance)  # the bug
        (dead,) = find_dead_runs(instance, dataset, grace_s=0)
        assert dead.run_id == run.run_id and dead.pools == ("gpu",) and "lease" in dead.reason

    # the next run heals it when it starts, so it is not blocked on the `gpu` slot
    proc = subprocess.run([sys.executable, str(script), str(dataset), "0"], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.stdout.strip().endswith("success"), proc.stdout[-2000:] + proc.stderr[-2000:]
    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        assert "its worker died" in instance.all_logs(run.run_id)[-1].message
        assert not slot_holders(instance)

    # with no run starting, the command does it
    killed_run()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert main(["release-dead-runs", "--dataset-dir", str(dataset)]) == 0
    with DagsterInstance.from_config(str(home)) as instance:
        assert not slot_holders(instance)
        assert not [r for r in instance.get_runs() if r.status == DagsterRunStatus.STARTED]
    assert lease_run_ids(dataset) == []


OWNER = "import sys, time; from samantics_dagster.defs.resources.run_guard import own_category; " \
        "lock = own_category(sys.argv[1], 'gym', 'run-first', print); print('owned', flush=True); time.sleep(120)"


def test_a_second_run_of_a_category_waits_then_fails_naming_the_first(tmp_path):
    from samantics_dagster.defs.resources.run_guard import CategoryBusy, own_category

    proc = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "owned"
        waited: list[str] = []
        with pytest.raises(CategoryBusy, match=r"category 'gym' is being written by run run-first \(pid \d+"):
            own_category(tmp_path, "gym", "run-second", waited.append, wait_s=0.5)
        other = own_category(tmp_path, "kitchen", "run-second", waited.append, wait_s=0.5)  # other categories: free
        other.release()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    lock = own_category(tmp_path, "gym", "run-second", print, wait_s=5)  # the first died: its lock went with it
    lock.release()
