"""The labelling run's GPU: a host-local device lease (``core.label.devices``) and the ``gpu`` pool sized to match.

A run process keeps its model on one device for as long as it lives (``Sam3Resource`` caches it per process),
so the lease is held by the process too and the kernel frees it when the process ends or dies. The ``gpu``
pool's limit defaults to the number of GPUs: the first labelling run on a GPU host raises the pool from the
instance's ``default_limit`` to its GPU count, so that many runs label at once, one per GPU. A limit set by
hand (``dagster instance concurrency set gpu N``, or the UI) is left alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from dagster import DagsterInstance

from samantics_dagster.core.label.devices import DeviceLease, DeviceSlot, take_device

GPU_POOL = "gpu"

_HELD: DeviceLease | None = None
_LOCK = threading.Lock()


def held_lease() -> DeviceLease | None:
    """This process's device lease, if it took one."""
    return _HELD if _HELD is not None and _HELD.held else None


def size_gpu_pool(instance: DagsterInstance, gpus: int, log: Callable[[str], None]) -> None:
    """Raise the ``gpu`` pool to ``gpus`` slots while it still runs on the instance's default limit."""
    storage = instance.event_log_storage
    if gpus <= 0 or not storage.supports_global_concurrency_limits:
        return
    info = storage.get_concurrency_info(GPU_POOL)
    configured = info.limit is not None and not info.using_default_limit
    if configured or info.slot_count >= gpus:
        return
    storage.set_concurrency_slots(GPU_POOL, gpus)
    log(f"pool `{GPU_POOL}`: {gpus} slots, one per GPU of this host (was {info.slot_count}; "
        f"`dagster instance concurrency set {GPU_POOL} N` overrides it)")


def leased_device(requested: str, slots: Callable[[], list[DeviceSlot]], *, owner: str,
                  instance: DagsterInstance | None, log: Callable[[str], None]) -> str:
    """The device this process labels on: ``requested`` itself for the CPU (or where no GPU is visible: the
    device rules of ``Sam3Resource`` decide what that means), else a leased ``cuda:N`` among ``slots()``; an
    explicit ``cuda:N`` leases that very device."""
    global _HELD
    with _LOCK:
        if held_lease() is not None:
            assert _HELD is not None
            return _HELD.device
        if requested == "cpu":
            return requested
        visible = slots()
        if not visible:
            return requested
        if instance is not None:
            size_gpu_pool(instance, len(visible), log)
        wanted = [s for s in visible if s.device == requested] if requested.startswith("cuda:") else visible
        if not wanted:
            raise ValueError(f"device {requested!r} is not among the {len(visible)} GPUs this process sees "
                             f"({', '.join(s.device for s in visible)}): use `cuda` to take any free one")
        _HELD = take_device(wanted, owner=owner, log=log)
        log(f"device lease: {_HELD.device} ({_HELD.slot.key}), one of {len(visible)} visible")
        return _HELD.device
