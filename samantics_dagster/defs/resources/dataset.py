"""Where the data lives: the read-only grabby workdir and the dataset directory with its image store."""


from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from dagster import ConfigurableResource, InitResourceContext
from filelock import FileLock
from pydantic import PrivateAttr

from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.dataset.schema import TableName
from samantics_dagster.core.dataset.store import ImageStore, dataset_lock
from samantics_dagster.core.dataset.tables import read_all, read_table

if TYPE_CHECKING:  # imported where it is used, in setup_for_execution, to keep this module's imports light
    from samantics_dagster.defs.resources.run_guard import RunGuard


class DatasetResource(ConfigurableResource):
    """Paths come from ``DATASET_DIR`` and ``GRABBY_WORKDIR`` (bound with ``EnvVar`` in definitions).

    GRABBY_WORKDIR is only ever read: nothing in this package opens a path under it for writing.
    """

    dataset_dir: str
    grabby_workdir: str
    _guard: "RunGuard | None" = PrivateAttr(default=None)  # held between setup and teardown of a run

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """In a run (not a sensor): its lease, dead runs healed, its category owned (``run_guard``)."""
        run = context.run
        if run is None or context.instance is None:
            return
        from samantics_dagster.defs.resources.run_guard import enter_run

        self._guard = enter_run(context.instance, self.dataset_path, run.run_id, run.tags.get("dagster/partition"),
                                context.log.info if context.log else print)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._guard is not None:
            self._guard.release()
            self._guard = None

    @property
    def dataset_path(self) -> Path:
        return Path(self.dataset_dir)

    @property
    def layout(self) -> DatasetLayout:
        """Every path under DATASET_DIR (``core.dataset.layout``)."""
        return DatasetLayout(self.dataset_path)

    @property
    def workdir_path(self) -> Path:
        return Path(self.grabby_workdir)

    def store(self) -> ImageStore:
        return ImageStore(self.dataset_path)

    def lock(self, name: str) -> FileLock:
        return dataset_lock(self.dataset_path, name)

    def table(self, asset: TableName | str, category: str) -> pd.DataFrame | None:
        """A partition's last written table (``None`` before its first materialisation)."""
        return read_table(self.layout.table(asset, category))

    def tables(self, asset: TableName | str, columns: list[str] | None = None) -> dict[str, pd.DataFrame]:
        return read_all(self.dataset_path, asset, columns=columns)
