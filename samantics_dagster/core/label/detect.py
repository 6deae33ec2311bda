"""Batched N-images x K-prompts SAM3 inference on a loaded model (``core.label.model``).

Why not ``model(**processor(images, text))``: SAM3 pairs row i of the text batch with row i of the
image batch, so K prompts on one image would otherwise mean K full forwards, each re-running the
ViT (5.6 TFLOP/image, against 0.42 TFLOP per (image, prompt) for the heads). Here the vision
encoder runs once per image batch, the text encoder once per prompt list, and only the DETR +
mask heads run per (image, prompt) pair, over fixed-size chunks of pairs built with
``index_select``. This matches per-pair forwards to ~1e-8 on the full-size model (``tests/core/test_sam3_model.py``
compares them on the tiny one).

Post-processing follows HF's ``post_process_instance_segmentation`` except where it is wasteful:
scores are thresholded first and only the kept masks are upsampled; logits are interpolated and
thresholded at 0 (== sigmoid > 0.5, as Meta's own processor does) instead of interpolating
probabilities, and masks stay ``bool`` instead of int64 (8x smaller at full resolution).
On CUDA the kept masks are run-length encoded where they are (``rle_torch``; upsampled in chunks
sized to a memory budget, ``upsample``) and only the run lengths are copied back. ``detect`` only
starts those copies and returns, so that the CPU half (RLE strings, overlap filter, in ``pipeline``)
of one image batch can run while the next batch is on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from samantics_dagster.core.label.model import TEXT_MAX_LENGTH, LoadedSam3
from samantics_dagster.core.label.rle_torch import HostRuns
from samantics_dagster.core.label.upsample import budget_bytes, default_device_rle, upsample_kept


@torch.inference_mode()
def encode_prompts(m: LoadedSam3, prompts: list[str]) -> tuple[Any, torch.Tensor]:
    """Run the text encoder once for all prompts; reuse the result for every image batch.

    Returns ``(text_output, attention_mask)``: the ``BaseModelOutputWithPooling`` whose
    ``pooler_output`` ([K, 32, D]) ``Sam3Model.forward`` reads, and the [K, 32] mask that must go
    with it (without it padding tokens are attended to). Tokenised with truncation because
    ``Sam3Processor`` pads to 32 without truncating, so a prompt over 30 tokens would crash.
    """
    if not prompts:
        raise ValueError("encode_prompts needs at least one prompt")
    tok = m.processor.tokenizer(list(prompts), padding="max_length", max_length=TEXT_MAX_LENGTH,
                                truncation=True, return_tensors="pt").to(m.device)
    out = m.model.get_text_features(input_ids=tok.input_ids, attention_mask=tok.attention_mask)
    return out, tok.attention_mask


@dataclass(eq=False)
class MaskGroup:
    """Kept detections of one image from one pair chunk, by prompt index, then by descending score."""

    prompt_index: np.ndarray  # int64 [M]
    scores: np.ndarray  # float32 [M]
    boxes_xyxy: np.ndarray  # float32 [M, 4], pixels of the original image
    masks: np.ndarray | None  # bool [M, H, W] if asked for (``host_masks``); from CUDA, column-major per mask
    runs: HostRuns | None = None  # COCO run lengths + areas computed on the device (``device_rle``)


class PendingDetections:
    """What ``detect`` launched: per image, host buffers that the CUDA stream may still be filling.

    ``groups()`` waits for the copies (an event recorded after the last one), so a post-processing
    thread can call it while the main thread already feeds the next image batch to the device.
    """

    def __init__(self, per_image: list[list[MaskGroup]], ready: torch.cuda.Event | None) -> None:
        self._per_image = per_image
        self._ready = ready

    def groups(self) -> list[list[MaskGroup]]:
        if self._ready is not None:
            self._ready.synchronize()  # releases the GIL while it waits
        return self._per_image


def _thresholds(score_threshold: float | Sequence[float], k: int) -> torch.Tensor:
    if isinstance(score_threshold, (int, float)):
        return torch.full((k,), float(score_threshold))
    thr = [float(t) for t in score_threshold]
    if len(thr) != k:
        raise ValueError(f"score_threshold has {len(thr)} values for {k} prompts")
    return torch.tensor(thr)


def _collect_kept(per_image: list[list[MaskGroup]], out: Any, rows: torch.Tensor, queries: torch.Tensor,
                  scores: torch.Tensor, pair_image: np.ndarray, pair_prompt: np.ndarray,
                  sizes: list[tuple[int, int]], budget: int, *, device_rle: bool, host_masks: bool) -> None:
    """One chunk's kept queries into ``per_image`` (``rows`` index its pairs; ``pair_*`` start at the chunk)."""
    kept = torch.cat([scores[:, None], out.pred_boxes[rows, queries].float()], 1).cpu().numpy()
    rows_host = rows.cpu().numpy()  # the stream is idle by now: these two copies are a few KB
    kept_image, kept_prompt = pair_image[rows_host], pair_prompt[rows_host]
    bounds = np.flatnonzero(np.diff(kept_image)) + 1  # pairs are image-major: an image's kept queries are one run
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(kept_image)]):
        i = int(kept_image[lo])
        w, h = sizes[i]
        for c in upsample_kept(out.pred_masks, rows, queries, int(lo), int(hi), h, w, budget,
                               device_rle=device_rle, host_masks=host_masks):
            per_image[i].append(MaskGroup(
                prompt_index=kept_prompt[c.start:c.stop], scores=kept[c.start:c.stop, 0],
                boxes_xyxy=kept[c.start:c.stop, 1:] * np.array([w, h, w, h], dtype=np.float32),
                masks=c.masks, runs=c.runs))


@torch.inference_mode()
def detect(m: LoadedSam3, images: list[Image.Image], text: Any, text_mask: torch.Tensor, *,
           score_threshold: float | Sequence[float], pair_chunk: int = 32,
           max_detections_per_pair: int | None = None, pad_chunks: bool = False,
           pad_images_to: int | None = None, upsample_budget_mb: float | None = None,
           device_rle: bool | None = None, host_masks: bool | None = None) -> PendingDetections:
    """Run the model on ``images`` x all prompts and start copying the kept detections to the host.

    ``pad_images_to`` fills a smaller batch (the last one, or one image retried alone) up to that many with
    copies of its last image, and ``pad_chunks`` the last pair chunk up to ``pair_chunk``: a compiled model
    then sees one shape throughout; the copies' outputs are never read. ``upsample_budget_mb`` bounds the
    device memory of one upsampling chunk (None: per-device default,
    ``upsample.DEFAULT_BUDGET_MB``). ``device_rle`` computes COCO run lengths and areas on the device
    (None: on CUDA only); ``host_masks`` copies full-resolution masks back too (None: only without
    ``device_rle``), so in the CUDA default path no full-resolution mask reaches the host.

    ``text``/``text_mask`` come from ``encode_prompts``. ``score_threshold`` is one value or one per
    prompt; a detection is kept if its score is strictly greater (as HF does). Pairs run through the
    heads ``pair_chunk`` at a time (GPU memory: ~225 MiB per pair in bf16 at full size);
    ``max_detections_per_pair`` keeps only the top-scoring few per (image, prompt). Per chunk of pairs, the kept queries are chosen on the device
    for the whole chunk at once (threshold, then the per-pair cap, on score-sorted queries) and the
    host waits for the device once, to learn how many were kept. Only kept masks are upsampled, one
    image at a time (each has its own size), and copied back without blocking; nothing about a
    discarded query ever reaches full resolution or the host. Returns before the copies finish.
    """
    if pair_chunk < 1:
        raise ValueError(f"pair_chunk must be >= 1, got {pair_chunk}")
    from transformers.modeling_outputs import BaseModelOutputWithPooling
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    model, dev = m.model, m.device
    text_feats = text.pooler_output if hasattr(text, "pooler_output") else text
    text_feats, text_mask = text_feats.to(dev), text_mask.to(dev)
    n, k = len(images), text_feats.shape[0]
    if text_mask.shape[0] != k:
        raise ValueError(f"text_mask has {text_mask.shape[0]} rows for {k} prompts")
    thresholds = _thresholds(score_threshold, k).to(dev)
    device_rle = default_device_rle(dev) if device_rle is None else device_rle
    host_masks = not device_rle if host_masks is None else host_masks
    budget = budget_bytes(dev, upsample_budget_mb)
    per_image: list[list[MaskGroup]] = [[] for _ in range(n)]
    if not images:
        return PendingDetections(per_image, None)
    sizes = [im.size for im in images]  # (w, h), as PIL reports it

    # Resizing on the GPU is ~4x faster than on the CPU for 720p frames.
    extra = {"device": dev} if dev.type == "cuda" else {}
    pixels = m.processor.image_processor(images, return_tensors="pt", **extra).pixel_values
    if pad_images_to is not None and n < pad_images_to:  # pairs index only the real images below
        pixels = torch.cat([pixels, pixels[-1:].expand(pad_images_to - n, *pixels.shape[1:])])
    vis = model.get_vision_features(pixel_values=pixels.to(dev, m.dtype))

    pair_image = np.arange(n).repeat(k)  # pair r = (image r // k, prompt r % k)
    pair_prompt = np.tile(np.arange(k), n)
    pair_image_dev, pair_prompt_dev = torch.from_numpy(pair_image).to(dev), torch.from_numpy(pair_prompt).to(dev)
    for start in range(0, n * k, pair_chunk):
        ii, kk = pair_image_dev[start:start + pair_chunk], pair_prompt_dev[start:start + pair_chunk]
        real = ii.shape[0]
        if pad_chunks and real < pair_chunk:  # repeat the last pair; its outputs are dropped below
            ii = torch.cat([ii, ii[-1:].expand(pair_chunk - real)])
            kk = torch.cat([kk, kk[-1:].expand(pair_chunk - real)])
        out = model(
            vision_embeds=Sam3VisionEncoderOutput(
                fpn_hidden_states=tuple(x.index_select(0, ii) for x in vis.fpn_hidden_states),
                fpn_position_encoding=tuple(x.index_select(0, ii) for x in vis.fpn_position_encoding)),
            text_embeds=BaseModelOutputWithPooling(pooler_output=text_feats.index_select(0, kk)),
            attention_mask=text_mask.index_select(0, kk))
        scores = out.pred_logits[:real].float().sigmoid() * out.presence_logits[:real].float().sigmoid()
        order = scores.argsort(dim=1, descending=True, stable=True)  # ties keep query order
        ranked = scores.gather(1, order)
        keep = ranked > thresholds.index_select(0, kk[:real])[:, None]
        if max_detections_per_pair is not None:
            keep &= keep.cumsum(1) <= max_detections_per_pair
        rows, ranks = keep.nonzero(as_tuple=True)  # by pair, then by descending score; waits for the device
        if rows.numel() == 0:
            continue
        _collect_kept(per_image, out, rows, order[rows, ranks], ranked[rows, ranks], pair_image[start:],
                      pair_prompt[start:], sizes, budget, device_rle=device_rle, host_masks=host_masks)
    ready = None
    if dev.type == "cuda":
        ready = torch.cuda.Event()
        ready.record()
    return PendingDetections(per_image, ready)
