"""One GPU per labelling run: concurrent run processes lease different devices, a killed one's device comes back.

Two CPU stand-ins play the GPUs (``tests/standin_devices.py``); the processes are real and take their lease
the way a run's model load does (``Sam3Resource.run_device``).
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from dagster import materialize

from samantics_dagster.core.dataset.tables import table_path
from samantics_dagster.core.label.devices import DeviceSlot, NoFreeDevice, default_lease_dir, take_device
from samantics_dagster.definitions import defs
from samantics_dagster.defs.resources import gpu_lease
from tests.standin_devices import StandInSam3Resource, standins
from tests.test_labels import CATEGORY, LABELS, UPSTREAM, _meta, deduped  # noqa: F401 - the fixture

REPO = Path(__file__).resolve().parent.parent


def _holder(lease_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tests.standin_devices"], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "SAMANTICS_DEVICE_LEASE_DIR": str(lease_dir),
                                            "SAMANTICS_DEVICE_WAIT_SECONDS": "0"})
    return proc


def _device_of(proc: subprocess.Popen) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:  # its log lines, then the device it holds
        if line.startswith("held "):
            return line.split()[1]
    raise AssertionError(f"the lease process exited ({proc.wait()}) without a device")


def test_concurrent_runs_get_different_devices_and_a_killed_runs_device_is_free_again(tmp_path):
    lease_dir = tmp_path / "leases"
    a, b = _holder(lease_dir), _holder(lease_dir)
    procs = [a, b]
    try:
        got = {_device_of(a), _device_of(b)}
        assert got == {"standin-0", "standin-1"}  # two live runs, two devices
        third = _holder(lease_dir)  # both taken: a third fails (waits 0 s) naming the holders and the fix
        assert third.wait(timeout=60) != 0
        with pytest.raises(NoFreeDevice, match="concurrency set gpu 2"):
            take_device(standins(), owner="test", lease_dir=lease_dir, wait_s=0)

        os.kill(a.pid, signal.SIGKILL)
        a.wait()
        c = _holder(lease_dir)
        procs.append(c)
        freed = _device_of(c)
        assert freed in got and c.poll() is None  # the dead run's device, leased again at once
        with pytest.raises(NoFreeDevice):  # and b still holds its own
            take_device(standins(), owner="test", lease_dir=lease_dir, wait_s=0)
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()


def test_a_lease_released_in_process_is_taken_again_and_explicit_keys_stay_apart(tmp_path):
    slots = [DeviceSlot("gpu-GPU-aaaa", "cuda:0"), DeviceSlot("gpu-GPU-bbbb", "cuda:1")]
    first = take_device(slots, owner="one", lease_dir=tmp_path, wait_s=0)
    second = take_device(slots, owner="two", lease_dir=tmp_path, wait_s=0)
    assert {first.device, second.device} == {"cuda:0", "cuda:1"}
    first.release()
    again = take_device(slots, owner="three", lease_dir=tmp_path, wait_s=0)
    assert again.device == first.device
    for lease in (second, again):
        lease.release()


def test_the_lease_folder_is_host_local_by_default(monkeypatch, tmp_path):
    assert default_lease_dir({"SAMANTICS_DEVICE_LEASE_DIR": str(tmp_path)}) == tmp_path
    assert default_lease_dir({"XDG_RUNTIME_DIR": "/run/user/7"}) == Path("/run/user/7/samantics/devices")
    assert str(default_lease_dir({})).startswith("/tmp/samantics-devices-")


def test_a_labelling_run_records_its_lease_and_sizes_the_gpu_pool(dataset_env, instance, deduped, tmp_path,  # noqa: F811
                                                                   monkeypatch):
    monkeypatch.setenv("SAMANTICS_DEVICE_LEASE_DIR", str(tmp_path / "leases"))
    monkeypatch.setattr(gpu_lease, "_HELD", None)  # this process's lease, dropped again below
    resources = {**defs.resources, "sam3": StandInSam3Resource(model_cache=os.environ["MODEL_CACHE"])}
    result = materialize(LABELS + UPSTREAM, selection=["sam3_labels"], instance=instance, partition_key=CATEGORY,
                         resources=resources)
    meta = _meta(result)
    assert meta["device_lease"].startswith("cpu (standin-")
    assert instance.event_log_storage.get_concurrency_info("gpu").slot_count == 2  # one slot per device
    assert len(pd.read_parquet(table_path(dataset_env, "sam3_labels", CATEGORY))) == len(deduped)
    held = gpu_lease.held_lease()
    assert held is not None
    held.release()
