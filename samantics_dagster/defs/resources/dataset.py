"""Where the data lives: the read-only grabby workdir and the dataset directory with its image store."""


from pathlib import Path

import pandas as pd
from dagster import ConfigurableResource
from filelock import FileLock

from samantics_dagster.core.dataset.store import ImageStore, dataset_lock
from samantics_dagster.core.dataset.tables import read_all, read_table, table_path


class DatasetResource(ConfigurableResource):
    """Paths come from ``DATASET_DIR`` and ``GRABBY_WORKDIR`` (bound with ``EnvVar`` in definitions).

    GRABBY_WORKDIR is only ever read: nothing in this package opens a path under it for writing.
    """

    dataset_dir: str
    grabby_workdir: str

    @property
    def dataset_path(self) -> Path:
        return Path(self.dataset_dir)

    @property
    def workdir_path(self) -> Path:
        return Path(self.grabby_workdir)

    def store(self) -> ImageStore:
        return ImageStore(self.dataset_path)

    def lock(self, name: str) -> FileLock:
        return dataset_lock(self.dataset_path, name)

    def table(self, asset: str, category: str) -> pd.DataFrame | None:
        """A partition's last written table (``None`` before its first materialisation)."""
        return read_table(table_path(self.dataset_path, asset, category))

    def tables(self, asset: str) -> dict[str, pd.DataFrame]:
        return read_all(self.dataset_path, asset)
