"""The resources every asset, check, sensor and schedule gets, bound to the environment with ``EnvVar``."""

import dagster as dg

from samantics_dagster.core.settings import settings
from samantics_dagster.defs.resources.dataset import DatasetResource
from samantics_dagster.defs.resources.io_manager import ParquetTableIOManager
from samantics_dagster.defs.resources.ray_workers import RayWorkersResource
from samantics_dagster.defs.resources.sam3 import Sam3Resource


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={
        "dataset": DatasetResource(dataset_dir=dg.EnvVar("DATASET_DIR"), grabby_workdir=dg.EnvVar("GRABBY_WORKDIR")),
        "table_io_manager": ParquetTableIOManager(dataset_dir=dg.EnvVar("DATASET_DIR")),
        # mypy reads the defaulted pydantic Fields of a ConfigurableResource as required
        # device: SAMANTICS_DEVICE, read when the code location loads (in the run's own container too)
        "sam3": Sam3Resource(model_cache=dg.EnvVar("MODEL_CACHE"), device=settings().sam3_device),  # type: ignore[call-arg]
        # SAMANTICS_RAY_ADDRESS (read at run time) or a dagster-ray resource under this key: label on Ray
        "ray_workers": RayWorkersResource(),  # type: ignore[call-arg]
    })
