"""CPU stand-ins for GPUs: the device-lease and label-worker tests run where no GPU is.

``StandInSam3Resource`` sees ``SAMANTICS_TEST_STANDIN_DEVICES`` stand-in devices (default 2) instead of the
CUDA devices: each is leased like a GPU (its own lock file) and labels on the CPU. Run as a script it takes
a lease the way a run's model load does, prints the device it got and holds it until killed: the concurrency
test starts several at once. Nothing outside tests/ reads these names.
"""

import os
import sys
import threading

from samantics_dagster.core.label.devices import DeviceSlot
from samantics_dagster.defs.resources.sam3 import Sam3Resource


def standins(n: int | None = None) -> list[DeviceSlot]:
    n = int(os.environ.get("SAMANTICS_TEST_STANDIN_DEVICES", "2")) if n is None else n
    return [DeviceSlot(key=f"standin-{i}", device="cpu") for i in range(n)]


class StandInSam3Resource(Sam3Resource):
    def visible_devices(self) -> list[DeviceSlot]:
        return standins()


if __name__ == "__main__":
    from samantics_dagster.defs.resources.gpu_lease import held_lease

    StandInSam3Resource(model_cache=".").run_device()
    lease = held_lease()
    print(f"held {lease.slot.key if lease else None}", flush=True)
    sys.stdout.close()
    threading.Event().wait()  # hold it until the test kills this process
