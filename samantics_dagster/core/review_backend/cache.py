"""A bounded LRU cache of image embeddings, sized in bytes.

Why bytes and not a count: one image's embedding is three feature maps whose size depends on the model
(about 10.6 MB in bf16 for ``facebook/sam3``'s tracker at 1008 px, 32 KB for the tiny test model) and
they sit in GPU memory next to the model, so the budget is the memory an operator can spare, and the
count follows from it. The least recently clicked image goes first. Thread-safe: the HTTP server answers
requests on several threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch


@dataclass
class Embedding:
    """What ``Sam3TrackerModel.get_image_embeddings`` returned for one image, and that image's (h, w)."""

    tensors: list[torch.Tensor]
    height: int
    width: int

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors)


@dataclass
class CacheStats:
    items: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int


class EmbeddingCache:
    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"the embedding cache's budget must be >= 0 bytes, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, Embedding] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0

    def get(self, key: str) -> Embedding | None:
        with self._lock:
            emb = self._items.get(key)
            if emb is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return emb

    def put(self, key: str, emb: Embedding) -> None:
        """Keep ``emb`` (unless it alone exceeds the budget), evicting the least recently used first."""
        size = emb.nbytes
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            if size > self.max_bytes:
                return
            while self._items and self._bytes + size > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes
                self.evictions += 1
            self._items[key] = emb
            self._bytes += size

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(len(self._items), self._bytes, self.max_bytes, self.hits, self.misses, self.evictions)
