"""The run config the dataset-wide exports share: when the single files are rewritten (``core.export.shards``)."""

from typing import Literal

from dagster import Config
from pydantic import Field

from samantics_dagster.core.export.shards import single_files_due
from samantics_dagster.core.settings import settings


class ExportConfig(Config):
    """When the single files (coco/{split}.json, labels.jsonl) are rewritten; shards and segments always are."""

    single_files: Literal["auto", "always"] = Field(
        "auto", description="auto: rewrite them if the dataset has at most max_images images; always: the full "
                            "export (what nightly_export runs).")
    max_images: int | None = Field(None, ge=0, description="Overrides SAMANTICS_SINGLE_FILES_MAX_IMAGES.")

    @property
    def limit(self) -> int:
        return settings().single_files_max_images if self.max_images is None else self.max_images

    def due(self, images: int) -> bool:
        return single_files_due(self.single_files, images, self.limit)
