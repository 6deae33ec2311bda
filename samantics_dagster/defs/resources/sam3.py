"""SAM3 on the GPU: transformers' Sam3Model + Sam3Processor, loaded once per process."""

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field

if TYPE_CHECKING:  # torch is imported when a model loads, not by every process that loads the code location
    from samantics_dagster.core.label.model import LoadedSam3

_LOADED: dict[tuple, "LoadedSam3"] = {}
_LOCK = threading.Lock()


class Sam3Resource(ConfigurableResource):
    """Weights come from ``MODEL_CACHE`` offline (a Hugging Face cache holding ``repo_id`` or a snapshot
    folder). ``HF_TOKEN`` only matters to whoever fills a gated cache; it is never read into config,
    logs or metadata here. The model is cached at module level, so every partition and batch a run
    worker executes shares one copy (it is 3.4 GB in fp32)."""

    model_cache: str
    repo_id: str = Field("facebook/sam3", description="Hugging Face repo id to look for inside MODEL_CACHE.")
    device: str = Field("auto", description="auto = cuda if present, else cpu.")
    dtype: str = Field("auto", description="auto = bfloat16 on cuda, float32 on cpu.")
    compile: bool = Field(False, description="torch.compile the sub-networks (static shapes; long runs only).")

    def model_dir(self) -> Path:
        from samantics_dagster.core.label.model import resolve_model_dir

        return resolve_model_dir(Path(self.model_cache), self.repo_id)

    def after_part(self, parts_written: int) -> None:
        """Called once each finished batch is on disk (``label_partition``'s ``after_part``); nothing here.
        The kill test's resource (``tests/label_kill_defs.py``) blocks in it to die at a known batch."""

    def load(self) -> "LoadedSam3":
        from samantics_dagster.core.label.model import load_sam3

        model_dir = self.model_dir()
        key = (str(model_dir), self.device, self.dtype, self.compile)
        with _LOCK:
            if key not in _LOADED:
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # a tqdm bar per load clutters Dagster's captured stderr
                _LOADED[key] = load_sam3(model_dir, device=self.device, dtype=self.dtype, compile=self.compile)
            return _LOADED[key]
