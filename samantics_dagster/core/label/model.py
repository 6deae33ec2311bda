"""SAM3 located, checked and loaded (Hugging Face ``transformers``): the detector (``Sam3Model``) for labelling and
the point/box model (``Sam3TrackerModel``) for the review tool, from one checkpoint folder; the device, dtype and
compile rules; the model fingerprint that labels are recorded under. Running the detector is ``core.label.detect``.

Weights are loaded offline only (``local_files_only=True``): ``facebook/sam3`` is gated and a
pipeline run must not depend on the Hub. ``resolve_model_dir`` finds a snapshot in ``MODEL_CACHE``.
No Dagster here; the Sam3Resource wraps this.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

DEFAULT_REPO_ID = "facebook/sam3"
TEXT_MAX_LENGTH = 32  # the text encoder's max_position_embeddings; longer prompts must be truncated

_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")  # either holds the image processor
_TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))  # fast, or slow-tokenizer files
_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
           "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}


class ModelNotFoundError(FileNotFoundError):
    """No usable SAM3 snapshot under MODEL_CACHE. The message says where we looked and how to fill it,
    because the person reading it is setting up a machine, not debugging Python."""


def _how_to_fill(repo_id: str) -> str:
    return (f"Fill MODEL_CACHE on a machine with Hub access (the weights are gated: accept the licence and "
            f"set HF_TOKEN), e.g. `hf download {repo_id} --cache-dir $MODEL_CACHE`, or copy a "
            f"snapshot folder (config.json, *.safetensors, processor and tokenizer files) to "
            f"$MODEL_CACHE/{repo_id}/. Loading is offline only.")


def _missing_files(folder: Path) -> list[str]:
    """What ``from_pretrained`` would need but ``folder`` lacks. ``exists()`` follows symlinks, so a
    Hub-cache snapshot whose blob never finished downloading counts as missing."""
    missing: list[str] = []
    if not (folder / "config.json").exists():
        missing.append("config.json")
    index = folder / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing += [s for s in shards if not (folder / s).exists()]
    elif not any(p.exists() for p in folder.glob("*.safetensors")):
        missing.append("*.safetensors (weights)")
    if not any((folder / f).exists() for f in _PROCESSOR_FILES):
        missing.append(" or ".join(_PROCESSOR_FILES))
    if not any(all((folder / f).exists() for f in group) for group in _TOKENIZER_FILES):
        missing.append("tokenizer.json (or vocab.json + merges.txt)")
    return missing


def _hub_snapshot(cache: Path, repo_id: str) -> Path | None:
    """The snapshot a Hugging Face cache dir holds for ``repo_id``: the one ``refs/main`` names, else
    the most recently modified (a cache filled by ``--revision`` has no refs/main)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        pinned = snapshots / ref.read_text().strip()
        if pinned.is_dir():
            return pinned
    revs = [p for p in snapshots.iterdir() if p.is_dir()]
    return max(revs, key=lambda p: p.stat().st_mtime) if revs else None


def resolve_model_dir(model_cache: Path, repo_id: str = DEFAULT_REPO_ID) -> Path:
    """Find a complete snapshot folder of ``repo_id`` in ``model_cache``.

    Accepted layouts, tried in this order: (a) ``model_cache`` is the snapshot folder itself;
    (b) a Hugging Face cache dir (``models--facebook--sam3/snapshots/<rev>/``, also under ``hub/``
    as ``HF_HOME`` lays it out); (c) a parent holding ``facebook/sam3/`` or ``sam3/``. The first
    complete candidate wins; if some exist but none is complete, the error names the missing files.
    """
    model_cache = Path(model_cache).expanduser()
    name = repo_id.split("/")[-1]
    # (folder, is_hub_snapshot): a Hub snapshot is a model folder by construction, so an empty one is
    # "incomplete", not "absent"; other folders count only if they hold any model file.
    candidates: list[tuple[Path, bool]] = [(model_cache, False)]
    tried: list[str] = [str(model_cache)]
    for cache in (model_cache, model_cache / "hub"):
        tried.append(f"{cache / ('models--' + repo_id.replace('/', '--'))}/snapshots/<refs/main or newest>")
        snap = _hub_snapshot(cache, repo_id)
        if snap is not None:
            candidates.append((snap, True))
    for sub in (model_cache / repo_id, model_cache / name):
        tried.append(str(sub))
        candidates.append((sub, False))

    incomplete: list[tuple[Path, list[str]]] = []
    for folder, is_snapshot in candidates:
        if not folder.is_dir():
            continue
        missing = _missing_files(folder)
        if not missing:
            return folder
        if is_snapshot or _has_model_files(folder):
            incomplete.append((folder, missing))
    if incomplete:
        folder, missing = incomplete[0]
        raise ModelNotFoundError(
            f"SAM3 snapshot at {folder} (from MODEL_CACHE={model_cache}) is incomplete: missing "
            f"{', '.join(missing)}. {_how_to_fill(repo_id)}")
    raise ModelNotFoundError(
        f"No {repo_id} snapshot found in MODEL_CACHE={model_cache}; looked at: {'; '.join(tried)}. "
        f"{_how_to_fill(repo_id)}")


def _has_model_files(folder: Path) -> bool:
    names = ("config.json", "model.safetensors.index.json", "tokenizer.json", *_PROCESSOR_FILES)
    return any((folder / f).exists() for f in names) or any(folder.glob("*.safetensors"))


def model_fingerprint(model_dir: Path) -> str:
    """16 hex chars identifying the weights + config, for the labeler column and skip-if-done.

    Hashes config.json and the processor config (they set architecture and input resolution) and the
    weight files' names and sizes. Hashing gigabytes of weights on every start would cost seconds;
    sizes change with any re-export, and Hub snapshots are immutable per revision anyway.
    """
    model_dir = Path(model_dir)
    h = hashlib.sha256()
    for fname in ("config.json", *_PROCESSOR_FILES):
        p = model_dir / fname
        if p.exists():
            h.update(fname.encode() + b"\0" + p.read_bytes() + b"\0")
    for p in sorted(model_dir.glob("*.safetensors")):
        h.update(f"{p.name}\0{p.stat().st_size}\0".encode())
    return h.hexdigest()[:16]


@dataclass
class LoadedSam3:
    """A model ready for ``detect``; built once per process (it's 3.4 GB in fp32)."""

    model: Any  # transformers Sam3Model, eval mode
    processor: Any  # transformers Sam3Processor
    device: torch.device
    dtype: torch.dtype
    fingerprint: str
    compiled: bool = False  # then callers pad the last pair chunk so the heads see one shape

    @property
    def precision(self) -> str:
        """``bf16-torch2.11-transformers5.23``: what, besides the weights and the knobs, changes borderline
        detections (recorded in every row's labeler; ``core.label.precision``)."""
        import transformers

        from samantics_dagster.core.label.precision import precision_tag

        return precision_tag(self.dtype, torch.__version__, transformers.__version__)


class DeviceUnavailableError(RuntimeError):
    """The configured device is not there. Raised when a run starts, before any model work: a
    production run that asked for ``cuda`` must not label at CPU speed, for days, in silence."""


DEVICE_HELP = ("set the sam3 resource's device (SAMANTICS_DEVICE) to 'auto' to use a GPU only when one is "
               "visible, or 'cpu' to label on the CPU knowingly (tens of times slower)")


def check_device(device: str) -> torch.device:
    """The torch device for ``device`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``), or an error that names the fix.

    ``auto`` takes the first CUDA device if torch sees one, else the CPU: for the demo and laptops.
    ``cuda`` is for production, where a missing GPU is a broken deployment (a container started
    without its GPU, a driver mismatch, a CPU-only torch wheel), not a reason to go slow.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if not torch.cuda.is_available():
        import os

        if torch.version.cuda is None:
            why = f"this torch ({torch.__version__}) is a CPU-only build: install a CUDA build of torch"
        else:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            why = (f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"
                   + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else "")
                   + ": start the run's container with its GPU (docker: `--gpus all` or the compose service's "
                     "`deploy.resources.reservations.devices`; Kubernetes: an `nvidia.com/gpu` limit) and check "
                     "that `nvidia-smi` works inside it")
        raise DeviceUnavailableError(f"device {device!r} asked for, but no CUDA device is visible: {why}; "
                                     f"or {DEVICE_HELP}.")
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise DeviceUnavailableError(f"device {device!r} asked for, but torch sees {count} CUDA device(s) "
                                     f"(cuda:0..cuda:{count - 1}): pick one of those, or {DEVICE_HELP}.")
    return dev


def _resolve_device(device: str) -> torch.device:
    return check_device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        # bf16 on GPU: ~3x faster heads than fp32 and no fp16 overflow risk; CPUs lack fast bf16 matmuls.
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(_DTYPES)}, got {dtype!r}") from None


BF16_COMPILE_BROKEN = ("2.14",)
"""torch minor versions whose inductor cannot compile SAM3 in bf16 on CUDA: transformers' sine position
embedding divides a bf16 ``arange`` with ``rounding_mode="floor"``, for which 2.14's Triton codegen emits
``libdevice.isinf`` on a bf16 temporary and fails with ``KeyError: triton.language.bfloat16``
(pytorch/pytorch#197002, a regression from 2.13; the fix, pytorch/pytorch#197076, came after 2.14.0). Every
2.14.x is refused: no patch release is known to carry the fix."""


class CompileUnsupportedError(ValueError):
    """``compile`` asked for where it is known to fail; raised at run start, not after a long compile."""


def check_compile(device: torch.device, dtype: torch.dtype, torch_version: str = torch.__version__) -> None:
    """Refuse ``compile=True`` with bf16 on CUDA on the torch versions of :data:`BF16_COMPILE_BROKEN`."""
    minor = ".".join(torch_version.split("+")[0].split(".")[:2])
    if device.type == "cuda" and dtype == torch.bfloat16 and minor in BF16_COMPILE_BROKEN:
        raise CompileUnsupportedError(
            f"compile with bf16 on CUDA fails on torch {torch_version} (inductor's Triton codegen calls "
            f"libdevice.isinf on a bf16 value in SAM3's position embedding: pytorch/pytorch#197002). Set the sam3 "
            f"resource's compile to false, or its dtype to fp16, or use a torch outside {', '.join(BF16_COMPILE_BROKEN)}.")


def use_compile_cache(folder: Path) -> None:
    """Point inductor's caches (compiled kernels, FX graphs, autotuning; Triton's under ``triton/``) at
    ``folder``: a run container starts with an empty ``/tmp``, so without this every run compiles again
    (~1-2 min per sub-network on a GPU). Process-wide (an environment variable, as inductor reads it)."""
    import os

    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder.resolve())


def load_sam3(model_dir: Path, device: str = "auto", dtype: str = "auto", attn: str = "sdpa",
              compile: bool = False, compile_cache: Path | None = None) -> LoadedSam3:
    """Load ``Sam3Model`` + ``Sam3Processor`` from a snapshot folder, offline.

    ``Sam3Model`` is named explicitly rather than ``AutoModel``: the ``facebook/sam3`` checkpoint's
    config is a ``sam3_video`` config, which ``AutoModel`` would turn into the video model;
    ``Sam3Model`` takes its ``detector_config`` and ignores the tracker weights. A load that leaves
    weights missing raises :class:`IncompleteWeightsError`.
    ``attn="sdpa"`` measured fastest (eager is 2.5x slower on the heads; flex failed on CPU).
    ``compile=True`` compiles the four sub-networks for static shapes (SAM3 can't compile with dynamic
    ones): callers pad the image batch and the pair chunks (``detect``'s ``pad_images_to``/``pad_chunks``)
    so the last, smaller batch reuses the graphs. bf16 compile is refused where torch is known to break
    (:func:`check_compile`); ``compile_cache`` keeps the compiled kernels there for the next process.
    """
    from transformers import Sam3Model, Sam3Processor

    model_dir = Path(model_dir)
    dev = _resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if compile:
        check_compile(dev, dt)
        if compile_cache is not None:
            use_compile_cache(Path(compile_cache))
    model = _from_pretrained(Sam3Model, model_dir, dt, attn)
    model = model.to(dev).eval()  # type: ignore[arg-type]  # transformers types .to() by its own PreTrainedModel
    processor = Sam3Processor.from_pretrained(model_dir, local_files_only=True)
    if compile:
        for sub in (model.vision_encoder, model.detr_encoder, model.detr_decoder, model.mask_decoder):
            sub.compile(dynamic=False)  # a shape it hasn't seen recompiles statically, never goes dynamic
    return LoadedSam3(model=model, processor=processor, device=dev, dtype=dt,
                      fingerprint=model_fingerprint(model_dir), compiled=compile)


class IncompleteWeightsError(ModelNotFoundError):
    """The snapshot's weights do not cover the model: transformers would fill the gaps with random
    values and go on, so a labelling run would produce noise without a word. Raised instead."""


def _from_pretrained(cls: Any, model_dir: Path, dt: torch.dtype, attn: str) -> Any:
    """``cls.from_pretrained`` offline, refusing a load that leaves weights missing.

    Weight names are transformers' own business: a ``sam3_video`` snapshot (``facebook/sam3``) holds
    ``detector_model.*``, ``tracker_model.*`` and ``tracker_neck.*``, and transformers maps them onto
    ``Sam3Model`` and ``Sam3TrackerModel`` itself (no ``key_mapping`` needed as of 5.23.0). Keys the
    class does not use are fine (the detector ignores the tracker's and the other way round); missing
    ones mean the folder is not the checkpoint it claims to be.
    """
    model, info = cls.from_pretrained(model_dir, dtype=dt, attn_implementation=attn, local_files_only=True,
                                      output_loading_info=True)
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        raise IncompleteWeightsError(
            f"{cls.__name__} from {model_dir}: {len(missing)} weights missing from the checkpoint (e.g. "
            f"{', '.join(missing[:3])}); they would be random. The folder must be a complete facebook/sam3 "
            f"snapshot (a sam3_video checkpoint: detector, tracker and tracker neck). {_how_to_fill(DEFAULT_REPO_ID)}")
    return model


@dataclass
class LoadedTracker:
    """SAM3's point/box model (``Sam3TrackerModel``, SAM2-style: one mask per click or box) and its
    processor, for interactive review tools; loaded from the same snapshot folder as the detector."""

    model: Any  # transformers Sam3TrackerModel, eval mode
    processor: Any  # transformers Sam3TrackerProcessor
    device: torch.device
    dtype: torch.dtype
    fingerprint: str


def load_sam3_tracker(model_dir: Path, device: str = "auto", dtype: str = "auto",
                      attn: str = "sdpa") -> LoadedTracker:
    """Load ``Sam3TrackerModel`` + ``Sam3TrackerProcessor`` from a ``facebook/sam3`` snapshot folder, offline.

    The tracker has no weights of its own for the ViT: transformers reads the detector's backbone
    (``detector_model.vision_encoder.backbone.*``), the tracker's neck (``tracker_neck.*``) and the
    tracker itself (``tracker_model.*``) from the one checkpoint, so both models load from one folder.
    ``device``/``dtype`` as for :func:`load_sam3`.
    """
    from transformers import Sam3TrackerModel, Sam3TrackerProcessor

    model_dir = Path(model_dir)
    dev = _resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    model = _from_pretrained(Sam3TrackerModel, model_dir, dt, attn)
    model = model.to(dev).eval()
    processor = Sam3TrackerProcessor.from_pretrained(model_dir, local_files_only=True)
    return LoadedTracker(model=model, processor=processor, device=dev, dtype=dt,
                         fingerprint=model_fingerprint(model_dir))
