"""Where a category labels: in this run's process (the default), or on the actors of a Ray cluster.

With a Ray address (``address`` here, else ``SAMANTICS_RAY_ADDRESS``) ``sam3_labels`` spreads a category over
one SAM3 replica per free GPU of the cluster (``core.label.ray_workers``). A dagster-ray resource
(``dagster_ray.LocalRay``, its KubeRay resources) bound under the same key works too: it connects the run to
its cluster when the run starts, and a connected process labels on that cluster. Ray is an optional extra
(``pip install 'samantics-dagster[ray]'``): nothing is imported from it unless an address is set.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from samantics_dagster.core.settings import Env, read_settings


class RayWorkersResource(ConfigurableResource):
    """The Ray cluster labelling runs on, if any (see the module docstring)."""

    address: str = Field("", description=(
        f"Ray cluster address (`ray://head:10001`, `head:6379`, or `auto` on a Ray node); empty: {Env.RAY_ADDRESS}; "
        "both empty: label in the run's own process on one leased GPU."))
    _connected_here: bool = PrivateAttr(default=False)

    def resolved_address(self) -> str:
        return self.address or read_settings().ray_address

    def connect(self, log: Callable[[str], None]) -> bool:
        """Connect this process to the cluster; ``False`` when no Ray is configured (label in-process)."""
        return ray_connected(self, log)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._connected_here:
            import ray

            ray.shutdown()
            self._connected_here = False


def ray_connected(resource: Any, log: Callable[[str], None]) -> bool:
    """Whether this run labels on Ray: through our resource's address, or a dagster-ray resource that already
    connected the process (``ray.is_initialized()``)."""
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return True
    address = resource.resolved_address() if isinstance(resource, RayWorkersResource) else ""
    if not address:
        return False
    try:
        import ray
    except ImportError:
        raise RuntimeError(f"{Env.RAY_ADDRESS}={address!r} asks for Ray, which is not installed here: install the "
                           "`ray` extra (pip install 'samantics-dagster[ray]'), or unset it to label in-process") from None
    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    resource._connected_here = True
    log(f"connected to the Ray cluster at {address}: {ray.cluster_resources()}")
    return True
