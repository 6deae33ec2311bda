"""Label Studio, the review loop's outside world: its URL and key from the environment, and how it sees images.

Bound here in a ``@dg.definitions`` of its own so that the code location loads whether or not
``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` are set: ``EnvVar`` is resolved only when a review asset or
the review sensor runs, and only those fail (with the variable's name) when it is unset.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import dagster as dg
from pydantic import Field, PrivateAttr

from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.review.client import LabelStudioClient
from samantics_dagster.core.settings import Env, settings


class LabelStudioResource(dg.ConfigurableResource):
    """``api_key`` is a personal access token (Account & Settings in Label Studio) or a legacy token; it is
    never logged or put in metadata (``repr`` and every error leave it out).

    Images: with ``images_url`` set, a task's image is ``{images_url}/{dhash}.jpg`` (any web server over
    ``{DATASET_DIR}/images``). Otherwise Label Studio serves them itself from local-files storage, which
    needs ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` on
    its side; ``document_root`` and ``dataset_dir`` say where Label Studio sees that root and DATASET_DIR
    (in docker-compose: /label-studio/files and /label-studio/files/dataset; on one host: the defaults).
    """

    url: str
    api_key: str
    project_prefix: str = Field(default="samantics", description="Projects are titled '{project_prefix}: {category}'.")
    images_url: str = Field(default="", description="Base URL of the image store; empty: Label Studio's local-files storage.")
    document_root: str = Field(default="", description="LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT as Label Studio sees it (default: DATASET_DIR's parent).")
    dataset_dir: str = Field(default="", description="DATASET_DIR as Label Studio sees it (default: DATASET_DIR).")
    timeout_s: float = Field(default=30.0, description="Per HTTP request.")
    ml_backend_url: str = Field(default="", description="The click-to-mask backend (`samantics ml-backend`) as Label Studio reaches it; connected to every review project when set.")
    _checked: bool = PrivateAttr(False)

    def __repr__(self) -> str:  # the key stays out of every log line that prints the resource
        return f"LabelStudioResource(url={self.url!r}, api_key=<hidden>)"

    def client(self) -> LabelStudioClient:
        return LabelStudioClient(self.url, self.api_key, timeout=self.timeout_s)

    def project_title(self, category: str) -> str:
        return f"{self.project_prefix}: {category}"

    def _seen_dataset(self, dataset_dir: Path) -> tuple[Path, Path]:
        dataset = Path(self.dataset_dir or dataset_dir)
        root = Path(self.document_root or dataset.parent)
        return dataset, root

    def storage_path(self, dataset_dir: Path) -> str | None:
        """The image store as Label Studio sees it, to connect as local-files storage (None with images_url)."""
        if self.images_url:
            return None
        return str(DatasetLayout(self._seen_dataset(dataset_dir)[0]).images)

    def image_url(self, dataset_dir: Path, dhash: str) -> str:
        if self.images_url:
            return f"{self.images_url.rstrip('/')}/{dhash}.jpg"
        dataset, root = self._seen_dataset(dataset_dir)
        rel = os.path.relpath(DatasetLayout(dataset).image(dhash), root)
        return f"/data/local-files/?d={quote(rel)}"


@dg.definitions
def review_resources() -> dg.Definitions:
    return dg.Definitions(resources={
        # the two paths are not secret and optional, so they are read with the settings rather than as EnvVar
        # (which must be set)
        "label_studio": LabelStudioResource(
            url=dg.EnvVar(Env.LABEL_STUDIO_URL), api_key=dg.EnvVar(Env.LABEL_STUDIO_API_KEY),
            document_root=settings().label_studio_document_root, dataset_dir=settings().label_studio_dataset_dir,
            ml_backend_url=settings().label_studio_ml_backend_url),
    })
