"""The code location: ``dagster dev -m samantics_dagster.definitions`` (or via workspace.yaml)."""

from dagster import Definitions, EnvVar

from samantics_dagster.assets.checks import accepted_frames_in_store, no_near_duplicates_accepted
from samantics_dagster.assets.dedupe import deduped_images
from samantics_dagster.assets.ingress import ingress_frames
from samantics_dagster.assets.labels import sam3_labels
from samantics_dagster.resources.dataset import DatasetResource
from samantics_dagster.resources.io_manager import ParquetTableIOManager
from samantics_dagster.resources.sam3 import Sam3Resource

defs = Definitions(
    assets=[ingress_frames, deduped_images, sam3_labels],
    asset_checks=[accepted_frames_in_store, no_near_duplicates_accepted],
    resources={
        "dataset": DatasetResource(dataset_dir=EnvVar("DATASET_DIR"), grabby_workdir=EnvVar("GRABBY_WORKDIR")),
        "table_io_manager": ParquetTableIOManager(dataset_dir=EnvVar("DATASET_DIR")),
        "sam3": Sam3Resource(model_cache=EnvVar("MODEL_CACHE")),
    },
)
