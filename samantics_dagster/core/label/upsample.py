"""Kept SAM3 masks to full resolution in chunks sized to a device-memory budget, then RLE or host copy.

Why chunks: upsampling every kept mask of a frame at once is a memory trap. Ultralytics measured 60 GB
for a 12000x6000 frame with 157 instances as one float32 tensor (ultralytics#26194, fixed in ultralytics#26200
with chunks: 17.6 GB, bit-identical). Each mask is upsampled independently (bilinear over its own
logits), so the chunk size cannot change the result; ``tests/core/test_upsample.py`` checks it.

Why RLE here: on CUDA the run lengths are computed where the masks are (``rle_torch``) and only they
are copied back, a few KB per image instead of 0.9 MB per 720p mask, and the host is left with
string compression (~10 us per mask) instead of ``pycocotools.mask.encode`` (~0.5 ms, GIL held).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from samantics_dagster.core.label.rle_torch import HostRuns, mask_runs, upsample_chunk

# Default device-memory budget for one chunk. CUDA: few big launches (2 GiB = 2**28 output pixels, what
# the project used before it had a knob; Ultralytics uses 2 GB chunks too). CPU: small groups are faster
# (100 masks at 720p took ~250 ms in groups of 5, 530 ms in one; measured here), 32 MiB = 2**22 pixels.
DEFAULT_BUDGET_MB = {"cuda": 2048.0, "cpu": 32.0}


def budget_bytes(device: torch.device, budget_mb: float | None) -> int:
    """The chunk budget in bytes: ``budget_mb`` if given, else this device type's default."""
    if budget_mb is None:
        budget_mb = DEFAULT_BUDGET_MB.get(device.type, DEFAULT_BUDGET_MB["cpu"])
    if budget_mb <= 0:
        raise ValueError(f"upsample_budget_mb must be > 0, got {budget_mb}")
    return int(budget_mb * 2**20)


def default_device_rle(device: torch.device) -> bool:
    """RLE on the device by default only on CUDA. On the CPU the "device" is the thread that runs the
    model, and torch's RLE there (transpose, xor, nonzero: ~9 ms per 720p mask, one thread) costs it
    more than pycocotools costs the post-processing thread (~0.5 ms per mask); the benchmark shows both."""
    return device.type == "cuda"


@dataclass(eq=False)
class UpsampledChunk:
    """Masks ``[start, stop)`` of one image's kept detections: host masks and/or their run lengths."""

    start: int
    stop: int
    masks: np.ndarray | None  # bool [M, H, W]; from CUDA, column-major per mask (see masks_to_host)
    runs: HostRuns | None


def masks_to_host(masks: torch.Tensor) -> np.ndarray:
    """Start copying [M, H, W] bool masks to the host; the array is valid once the stream passes the copy.

    From CUDA: into pinned memory with ``non_blocking``. Through pageable memory full-size masks cost
    64 ms/image, more than the model (notes §3.6), and the copy would block this thread. Each mask is
    transposed on the device first, where it is almost free, so that it arrives column-major, the
    order pycocotools encodes in. On the CPU the masks stay as they are: transposing here would cost
    the thread that runs the model more (73 ms, torch) than it saves the RLE thread.
    """
    if masks.device.type != "cuda":
        return masks.numpy()
    m, h, w = masks.shape
    host = torch.empty((m, w, h), dtype=torch.bool, pin_memory=True)
    host.copy_(masks.transpose(1, 2).contiguous(), non_blocking=True)
    return host.numpy().transpose(0, 2, 1)  # the view keeps ``host`` (and its pinned block) alive


def upsample_kept(pred_masks: torch.Tensor, rows: torch.Tensor, queries: torch.Tensor, start: int, stop: int,
                  height: int, width: int, budget: int, *, device_rle: bool,
                  host_masks: bool) -> list[UpsampledChunk]:
    """Upsample the kept masks ``pred_masks[rows[i], queries[i]]`` for i in ``[start, stop)`` (one image)
    to ``height`` x ``width``, thresholded at logit 0 (== sigmoid > 0.5), ``budget`` bytes at a time.

    ``device_rle``: run lengths computed on the device and copied back (non-blocking). ``host_masks``:
    the full-resolution masks copied back too (tests, and the CPU path that encodes with pycocotools).
    """
    step = upsample_chunk(height, width, budget)
    out = []
    for s in range(start, stop, step):
        e = min(stop, s + step)
        logits = pred_masks[rows[s:e], queries[s:e]].float()
        masks = F.interpolate(logits[None], size=(height, width), mode="bilinear", align_corners=False)[0] > 0
        runs = mask_runs(masks).to_host(non_blocking=True) if device_rle else None
        out.append(UpsampledChunk(s, e, masks_to_host(masks) if host_masks else None, runs))
        del masks  # before the next chunk's logits: the budget is per chunk, not per image
    return out
