"""The labelling path seen one detection at a time, for tests: what the package no longer needs.

The pipeline keeps detections grouped per pair chunk (``MaskGroup``) and encodes run lengths on the device;
tests compare against transformers' per-(image, prompt) path and pycocotools one detection, one mask at a
time. These views build that from the production ``detect`` / ``mask_runs`` calls, so what is tested is the
code that runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from samantics_dagster.core.label.detect import PendingDetections, detect
from samantics_dagster.core.label.model import LoadedSam3
from samantics_dagster.core.label.rle_torch import mask_runs


@dataclass(eq=False)  # eq would compare masks elementwise and raise
class Detection:
    prompt_index: int  # index into the prompt list given to encode_prompts
    score: float  # sigmoid(query logit) * sigmoid(presence logit)
    box_xyxy: tuple[float, float, float, float]  # pixels of the original image; not clipped to it
    mask: np.ndarray  # bool, (H, W) of the original image


def detections(pending: PendingDetections) -> list[list[Detection]]:
    """Per image, one ``Detection`` per kept query (masks are views into the group buffers); needs
    ``detect(..., host_masks=True)``."""
    groups = pending.groups()
    if any(g.masks is None for per in groups for g in per):
        raise ValueError("detections() needs full-resolution masks: call detect with host_masks=True")
    return [[Detection(prompt_index=int(g.prompt_index[j]), score=float(g.scores[j]),
                       box_xyxy=tuple(g.boxes_xyxy[j].tolist()), mask=g.masks[j])  # type: ignore[index]
             for g in per for j in range(len(g.scores))]
            for per in groups]


def segment_batch(m: LoadedSam3, images: list[Image.Image], text: Any, text_mask: torch.Tensor, *,
                  score_threshold: float | Sequence[float], pair_chunk: int = 32,
                  max_detections_per_pair: int | None = None, pad_chunks: bool = False,
                  pad_images_to: int | None = None, upsample_budget_mb: float | None = None) -> list[list[Detection]]:
    """``detect`` with full-resolution host masks, waited for: per image, detections ordered by prompt index,
    then by descending score (kept if strictly above the prompt's threshold, as transformers does)."""
    return detections(detect(m, images, text, text_mask, score_threshold=score_threshold, pair_chunk=pair_chunk,
                             max_detections_per_pair=max_detections_per_pair, pad_chunks=pad_chunks,
                             pad_images_to=pad_images_to, upsample_budget_mb=upsample_budget_mb,
                             device_rle=False, host_masks=True))


def encode_masks_torch(masks: torch.Tensor) -> tuple[list[dict], np.ndarray]:
    """RLE dicts and areas of [M, H, W] masks through the device path (runs where the masks are, strings on
    the host), waited for."""
    host = mask_runs(masks).to_host()
    return host.rles(), host.area.astype(np.float64)
