"""SAM3 on the GPU: transformers' Sam3Model + Sam3Processor, loaded once per process."""

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

if TYPE_CHECKING:  # torch is imported when a model loads, not by every process that loads the code location
    from dagster import DagsterInstance

    from samantics_dagster.core.label.devices import DeviceSlot
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
    device: str = Field("auto", description=(
        "cuda (production: a run fails at start, naming the fix, if no GPU is visible), cuda:N, cpu, or "
        "auto = cuda if visible, else cpu (the demo; the run's metadata says which it picked). "
        "Deployments set it with SAMANTICS_DEVICE."))
    dtype: str = Field("auto", description="auto = bfloat16 on cuda, float32 on cpu.")
    compile: bool = Field(False, description=(
        "torch.compile the sub-networks (static shapes: the last batch is padded; long runs only). Its kernels are "
        "cached under the dataset's .cache/torchinductor, so later runs skip the compile. Refused with bf16 on torch "
        "2.14 (an inductor bug)."))
    _instance: "DagsterInstance | None" = PrivateAttr(default=None)
    _owner: str = PrivateAttr(default="")
    _log: "Callable[[str], None]" = PrivateAttr(default=print)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Checks the device when a run's labelling step starts, before reading any image or weight: a run
        that asked for ``cuda`` on a machine without one fails here in seconds, saying how to fix it (as does
        ``compile`` with bf16 on a torch known to break it). Also
        remembers the instance (the ``gpu`` pool is sized through it) and the run (named in the device lease)."""
        from samantics_dagster.core.label.model import check_compile, check_device, resolve_dtype
        from samantics_dagster.core.settings import read_settings

        self._instance = context.instance
        self._owner = f"run {context.run.run_id}" if context.run is not None else "a Dagster process"
        if context.log is not None:
            self._log = context.log.info
        if read_settings().ray_address:
            return  # the Ray actors hold the GPUs (one each, by Ray's accounting): this process needs none
        picked = check_device(self.device)
        if self.compile:
            check_compile(picked, resolve_dtype(self.dtype, picked))
        if self.device == "auto" and picked.type == "cpu" and context.log is not None:
            context.log.warning("sam3 device 'auto': no CUDA device visible, labelling on the CPU (slow). "
                                "Production deployments set SAMANTICS_DEVICE=cuda so this fails instead.")

    def visible_devices(self) -> "list[DeviceSlot]":
        """The GPUs a run may lease (``core.label.devices``); the lease tests put CPU stand-ins here."""
        from samantics_dagster.core.label.devices import visible_cuda_devices

        return visible_cuda_devices()

    def run_device(self) -> str:
        """``device`` with a GPU picked: a free one leased by this process for its life (``gpu_lease``), so
        concurrent runs of one host never share a GPU."""
        from samantics_dagster.defs.resources.gpu_lease import leased_device

        return leased_device(self.device, self.visible_devices, owner=self._owner or "a process",
                             instance=self._instance, log=self._log)

    def model_dir(self) -> Path:
        from samantics_dagster.core.label.model import resolve_model_dir

        return resolve_model_dir(Path(self.model_cache), self.repo_id)

    def load(self, compile_cache: Path | None = None) -> "LoadedSam3":
        """The process's model (loaded on first use). ``compile_cache``: where ``compile`` keeps its kernels
        (the dataset's ``.cache/torchinductor``, the folder every run container can write)."""
        from samantics_dagster.core.label.model import load_sam3

        model_dir = self.model_dir()
        device = self.run_device()
        key = (str(model_dir), device, self.dtype, self.compile)
        with _LOCK:
            if key not in _LOADED:
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # a tqdm bar per load clutters Dagster's captured stderr
                _LOADED[key] = load_sam3(model_dir, device=device, dtype=self.dtype, compile=self.compile,
                                         compile_cache=compile_cache)
            return _LOADED[key]
