"""One GPU per labelling run on a host: a run leases a free device, so two runs never share one.

``torch.device("cuda")`` is always ``cuda:0``: every run on an 8-GPU host would pile onto the first GPU.
Instead a run takes a *device lease*: a ``flock`` on ``{lease_dir}/{key}.lock`` for one of the devices
``CUDA_VISIBLE_DEVICES`` leaves it, held for as long as the process keeps a model on that device. The kernel
drops a flock when its process dies, however it dies (SIGKILL, OOM), so a dead run's device is free again at
once; no pid or clock guessing (the same idea as the run leases in ``core.health.liveness``).

Unlike the run leases, device leases are host-local: two hosts sharing the dataset volume each have a
``cuda:0``. The lease folder therefore lives on local storage (``SAMANTICS_DEVICE_LEASE_DIR``; by default
``$XDG_RUNTIME_DIR/samantics/devices``, else ``/tmp/samantics-devices-{uid}``); containers of one host share it
through a host volume (docker-compose.yml mounts one). A device is keyed by its GPU UUID where torch reports
one, so containers that number the GPUs differently (``CUDA_VISIBLE_DEVICES=2,3`` in one, all in another) still
agree on which physical GPU a lease names.

No Dagster here; ``defs/resources/sam3.py`` takes the lease when a run loads its model.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from samantics_dagster.core.health.liveness import try_flock
from samantics_dagster.core.settings import Env, Settings, read_settings

_POLL_S = 2.0


class NoFreeDevice(RuntimeError):
    """Every visible device is leased by another live run of this host."""


@dataclass(frozen=True)
class DeviceSlot:
    """A device a run may take: ``key`` names the physical device on this host (the lock file's name),
    ``device`` is what this process hands to torch (``cuda:N``, N counted among the visible devices)."""

    key: str
    device: str


def default_lease_dir(env: dict[str, str] | None = None) -> Path:
    """``SAMANTICS_DEVICE_LEASE_DIR``, else a per-user folder on local storage (never the dataset volume)."""
    env = dict(os.environ) if env is None else env
    configured = Settings.from_env(env).device_lease_dir
    if configured:
        return Path(configured)
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "samantics" / "devices"
    return Path("/tmp") / f"samantics-devices-{os.getuid()}"


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key)


def visible_cuda_devices() -> list[DeviceSlot]:
    """The CUDA devices this process sees (``CUDA_VISIBLE_DEVICES`` applied by the driver), keyed by GPU UUID
    (else by their entry in ``CUDA_VISIBLE_DEVICES``, else by index)."""
    import torch

    if not torch.cuda.is_available():
        return []
    listed = [e.strip() for e in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if e.strip()]
    slots = []
    for i in range(torch.cuda.device_count()):
        uuid = getattr(torch.cuda.get_device_properties(i), "uuid", None)
        key = f"gpu-{uuid}" if uuid else f"gpu-{listed[i] if i < len(listed) else i}"
        slots.append(DeviceSlot(key=_safe(key), device=f"cuda:{i}"))
    return slots


class DeviceLease:
    """A held device (see the module docstring); :meth:`release` frees it before the process ends."""

    def __init__(self, slot: DeviceSlot, path: Path, fd: int) -> None:
        self.slot, self.path, self._fd = slot, path, fd

    @property
    def device(self) -> str:
        return self.slot.device

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        """Drop the lock. The file stays: unlinking it would let a waiter lock the old inode while a newcomer
        locks a new file of the same name, and both would think they own the device."""
        if self._fd < 0:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)
            self._fd = -1


def _try(lease_dir: Path, slot: DeviceSlot, owner: str) -> DeviceLease | None:
    path = lease_dir / f"{_safe(slot.key)}.lock"
    fd = try_flock(path, {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(), "since": time.time(),
                          "device": slot.device}, mode=0o666)
    return None if fd is None else DeviceLease(slot, path, fd)


def holder(lease_dir: Path, slot: DeviceSlot) -> str:
    """Who holds ``slot``, as its lease file says (for messages only)."""
    try:
        rec = json.loads((lease_dir / f"{_safe(slot.key)}.lock").read_text())
        return f"{rec['owner']} (pid {rec['pid']})"
    except (OSError, ValueError, KeyError):
        return "another process"


def take_device(slots: Sequence[DeviceSlot], *, owner: str, lease_dir: Path | None = None,
                wait_s: float | None = None, log: Callable[[str], None] = print) -> DeviceLease:
    """Lease the first free device of ``slots``; wait up to ``wait_s`` (``SAMANTICS_DEVICE_WAIT_SECONDS``,
    600) for one to come free, then fail naming the holders and the fix.

    The ``gpu`` pool admits as many labelling steps as there are GPUs, so a wait here means something else
    holds a device (a run of another Dagster instance on this host, or a pool limit set above the GPU count).
    """
    if not slots:
        raise NoFreeDevice("no device to lease: this process sees no GPU")
    lease_dir = default_lease_dir() if lease_dir is None else lease_dir
    lease_dir.mkdir(parents=True, exist_ok=True)
    if wait_s is None:
        wait_s = read_settings().device_wait_s
    deadline = time.monotonic() + wait_s
    said = 0.0
    while True:
        for slot in slots:
            lease = _try(lease_dir, slot, owner)
            if lease is not None:
                return lease
        busy = "; ".join(f"{s.device} by {holder(lease_dir, s)}" for s in slots)
        if time.monotonic() >= deadline:
            raise NoFreeDevice(
                f"all {len(slots)} visible GPUs are leased ({busy}); waited {wait_s:.0f}s. Lower the `gpu` pool's "
                f"limit to the number of GPUs (`dagster instance concurrency set gpu {len(slots)}`), or stop the "
                f"other runs; {Env.DEVICE_WAIT} sets how long a run waits (leases in {lease_dir})")
        if time.monotonic() - said > 60:
            log(f"every visible GPU is leased ({busy}): waiting for one to come free")
            said = time.monotonic()
        time.sleep(_POLL_S)
