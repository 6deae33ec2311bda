"""One SAM3 tracker mask for a click prompt, with the image embedding computed once per image.

``Sam3TrackerModel`` splits like SAM2: the ViT and neck (``get_image_embeddings``, the whole cost of a
first click) and the prompt encoder + mask decoder (``forward(image_embeddings=...)``, milliseconds). The
embedding is kept in an :class:`EmbeddingCache`, so a person refining a mask with more clicks pays only
for the decoder. ``forward`` with ``image_embeddings`` gives the same masks as with ``pixel_values``
(tested), because ``forward`` runs exactly ``get_image_embeddings``' code on the pixels.

Multimask: one positive point is ambiguous (a wheel, the car, the street), so the decoder's three masks
are asked for and the one with the best predicted IoU is kept; with more points or a box the single-mask
output is used, as SAM's own predictor does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from samantics_dagster.core.label.model import LoadedTracker
from samantics_dagster.core.review_backend.cache import Embedding, EmbeddingCache
from samantics_dagster.core.review_backend.prompts import Prompt


@dataclass
class ClickMask:
    mask: np.ndarray  # bool (H, W), the image's own pixels
    score: float  # the decoder's predicted IoU of the kept mask
    cached: bool  # the image embedding came from the cache


class ClickSegmenter:
    def __init__(self, tracker: LoadedTracker, cache: EmbeddingCache) -> None:
        self.tracker = tracker
        self.cache = cache
        self._lock = threading.Lock()  # one model call at a time: the device is shared

    @torch.inference_mode()
    def _embed(self, image: Image.Image) -> Embedding:
        t = self.tracker
        pixels = t.processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"]
        tensors = t.model.get_image_embeddings(pixels.to(t.device, t.dtype))
        return Embedding([x.detach() for x in tensors], height=image.height, width=image.width)

    def embedding(self, key: str, load: Callable[[], Image.Image]) -> tuple[Embedding, bool]:
        """The image's embedding (from the cache if there) and whether it was cached; ``load`` reads the
        image only on a miss."""
        emb = self.cache.get(key)
        if emb is not None:
            return emb, True
        image = load()
        with self._lock:
            emb = self._embed(image)
        self.cache.put(key, emb)
        return emb, False

    @torch.inference_mode()
    def decode(self, emb: Embedding, prompt: Prompt) -> tuple[np.ndarray, float]:
        """The mask (bool, the image's pixels) and its predicted IoU for ``prompt`` on ``emb``."""
        t = self.tracker
        kwargs: dict = {}
        if prompt.points:
            kwargs["input_points"] = [[[list(p) for p in prompt.points]]]
            kwargs["input_labels"] = [[list(prompt.point_labels)]]
        if prompt.box is not None:
            kwargs["input_boxes"] = [[list(prompt.box)]]
        sizes = [[emb.height, emb.width]]
        inputs = t.processor(images=None, original_sizes=sizes, return_tensors="pt", **kwargs)
        multimask = len(prompt.points) == 1 and prompt.box is None
        model_inputs = {k: inputs[k].to(t.device, t.dtype if k != "input_labels" else inputs[k].dtype)
                        for k in ("input_points", "input_labels", "input_boxes") if k in inputs}
        with self._lock:
            out = t.model(image_embeddings=emb.tensors, multimask_output=multimask, **model_inputs)
        scores = out.iou_scores[0, 0].float()  # (masks,)
        best = int(torch.argmax(scores)) if multimask else 0
        logits = out.pred_masks[:, :, best:best + 1].float()
        mask = t.processor.post_process_masks(logits.cpu(), sizes)[0][0, 0]
        return mask.numpy().astype(bool), float(scores[best])

    def segment(self, key: str, load: Callable[[], Image.Image], prompt: Prompt) -> ClickMask:
        emb, cached = self.embedding(key, load)
        mask, score = self.decode(emb, prompt)
        return ClickMask(mask, score, cached)
