"""The three overlapping stages of a labelling run, with the CPU work off the device's path.

A loader thread decodes batch b+1 while the calling thread runs batch b on the device, and
post-processing threads turn batch b-1's masks into rows and write its part as soon as it exists
(``resume.write_part``), so a killed run loses only the batches in flight. Each stage's busy time is
kept (:class:`StageTimes`): they run at the same time, so the slowest one sets the pace. Kept apart
from ``pipeline`` (what to label, the final table) so the threading and the failure fallbacks (a
batch retried image by image) can be read on their own.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from PIL import Image, ImageOps

from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.label.failures import error_text
from samantics_dagster.core.label.masks import Instance
from samantics_dagster.core.label.resume import label_row, write_part

T = TypeVar("T")

Finish = Callable[[], list[list[Instance]]]
Segmenter = Callable[[list[Image.Image]], Finish | list[list[Instance]]]
"""Images -> instances per image. May return the instances, or a ``Finish`` that computes them: the
device half runs in the call, the CPU half (RLE...) in ``Finish``, on a post-processing thread."""
ProgressFn = Callable[[int, int], None]
RowsFn = Callable[[], list[dict]]  # a batch's CPU half: makes its rows
Good = list[tuple[dict, Image.Image]]  # a batch's readable rows with their images
_Loaded = tuple[dict, Image.Image | None, str | None]  # row, its image or None, why it could not be read
_Posted = tuple[list[dict], float]  # a batch's rows, and the seconds its post-processing took


def load_image(path: Path) -> Image.Image:
    """RGB, upright per EXIF: the orientation a viewer (and the COCO width/height) uses."""
    with Image.open(path) as img:
        upright = ImageOps.exif_transpose(img)
        return upright.convert("RGB")


def _load_batch(store: ImageStore, batch: list[dict]) -> list[_Loaded]:
    """The batch's stored images; one that cannot be read is an error of its own row, not of the batch."""
    out: list[_Loaded] = []
    for rec in batch:
        try:
            out.append((rec, load_image(store.path_for(rec["dhash"])), None))
        except Exception as exc:  # noqa: BLE001 - any decode failure is recorded per image
            out.append((rec, None, f"cannot read images/{rec['dhash']}.jpg ({exc}); re-run deduped_images to "
                                   "restore it, then the asset labelling it (sam3_labels, prompt_trials) with "
                                   "retry_failed"))
    return out


@dataclass
class StageTimes:
    """Seconds each stage was busy, summed over batches; ``post_wait`` is the part of ``post`` the
    device had to wait for (the part not hidden behind it)."""

    load: float = 0.0
    device: float = 0.0
    post: float = 0.0
    post_wait: float = 0.0


class BatchStages:
    """One run's batches through the three stages; :meth:`run` returns the new rows.

    ``post_workers`` threads post-process (at most that many batches wait for them, which bounds host
    memory); ``0`` runs everything in the calling thread, one batch after the other. ``after_part(n)``
    is called on the post-processing thread once the n-th part of this run is on disk. ``part_tag`` goes
    into every part's name (``resume.write_part``): a Ray worker's share of a category. ``part_writer``
    replaces ``resume.write_part`` for a table of another shape built from the same rows (the prompt trials
    split each image's row into one row per phrasing, ``core.label.trials``).
    """

    def __init__(self, store: ImageStore, segment: Segmenter, labeler: str, parts_dir: Path, *,
                 post_workers: int = 1, total: int = 0, progress: ProgressFn | None = None,
                 after_part: Callable[[int], None] | None = None, part_tag: str = "",
                 part_writer: Callable[[Path, list[dict], str], None] | None = None) -> None:
        self.store, self.segment, self.labeler, self.parts_dir = store, segment, labeler, parts_dir
        self.part_tag, self.part_writer = part_tag, part_writer
        self.post_workers, self.total, self.progress, self.after_part = post_workers, total, progress, after_part
        self.times = StageTimes()
        self.rows: list[dict] = []
        self._parts_written = 0  # only the post-processing thread(s) count these
        self._n_done = 0

    def run(self, batches: list[list[dict]]) -> list[dict]:
        """Decode, run on the device and post-process ``batches``, overlapped; the rows, in batch order."""
        if not batches:
            return self.rows
        pool: ThreadPoolExecutor | _Inline = (ThreadPoolExecutor(max_workers=self.post_workers)
                                              if self.post_workers > 0 else _Inline())
        in_flight: deque[tuple[Good, list[dict], Future[_Posted]]] = deque()
        with ThreadPoolExecutor(max_workers=1) as loader, pool:
            pending = loader.submit(self._load, batches[0])
            for b in range(len(batches)):
                loaded = pending.result()
                if b + 1 < len(batches):
                    pending = loader.submit(self._load, batches[b + 1])
                unreadable = [label_row(r["dhash"], r["rel_path"], self.labeler, error=e)
                              for r, im, e in loaded if im is None]
                good = [(r, im) for r, im, _ in loaded if im is not None]
                t0 = time.perf_counter()
                finish = _start(self.segment, good, self.labeler)  # the device half, in this thread
                self.times.device += time.perf_counter() - t0
                in_flight.append((good, unreadable, pool.submit(self._post, finish, unreadable)))
                while len(in_flight) > self.post_workers:
                    self._collect(*in_flight.popleft())
            while in_flight:
                self._collect(*in_flight.popleft())
        return self.rows

    def _load(self, batch: list[dict]) -> list[_Loaded]:
        t0 = time.perf_counter()
        out = _load_batch(self.store, batch)
        self.times.load += time.perf_counter() - t0  # one loader thread: no race
        return out

    def _post(self, finish: RowsFn, unreadable: list[dict]) -> _Posted:
        """The CPU half of a batch, then its part: written as soon as it exists, not when collected."""
        t0 = time.perf_counter()
        rows = unreadable + finish()
        (self.part_writer or write_part)(self.parts_dir, rows, self.part_tag)
        self._parts_written += 1
        if self.after_part:
            self.after_part(self._parts_written)
        return rows, time.perf_counter() - t0

    def _collect(self, good: Good, unreadable: list[dict], future: Future[_Posted]) -> None:
        t0 = time.perf_counter()
        posted: _Posted | None = None
        # The CPU half failed (e.g. a CUDA error surfacing late): image by image, below, once the exception
        # (and the batch's tensors its traceback holds) is let go.
        with suppress(Exception):
            posted = future.result()
        if posted is None:
            del future  # it keeps the exception, and through its traceback the batch's tensors
            _free_gpu_memory()
            posted = self._post(lambda: _one_by_one(self.segment, good, self.labeler), unreadable)
        rows, secs = posted
        # Inline, the whole post-processing held up the device; pipelined, only the wait for it did.
        self.times.post_wait += secs if self.post_workers == 0 else time.perf_counter() - t0
        self.times.post += secs
        self.rows.extend(rows)
        self._n_done += len(good) + len(unreadable)
        if self.progress:
            self.progress(self._n_done, self.total)


def _start(segment: Segmenter, good: Good, labeler: str) -> RowsFn:
    """Run the device half of a batch now; return the CPU half, which makes the rows.

    A batch whose device half fails (e.g. CUDA OOM on a huge frame) is retried one image at a time,
    here, before the next batch goes to the device. The retry runs outside the ``except`` block: inside
    it the exception's traceback still holds the failed batch's tensors, so the memory the images need
    would still be taken.
    """
    if not good:
        return lambda: []
    out: Finish | list[list[Instance]] | None = None
    with suppress(Exception):  # retried alone below; a lone image's error is recorded there
        out = segment([im for _, im in good])
    if out is None:
        _free_gpu_memory()
        rows = _one_by_one(segment, good, labeler)
        return lambda: rows
    finish: Finish = out if callable(out) else (lambda: out)
    return lambda: [label_row(r["dhash"], r["rel_path"], labeler, instances=inst, size=im.size)
                    for (r, im), inst in zip(good, finish())]


class _Inline:
    """An executor for ``post_workers=0``: runs the task at once, in the calling thread."""

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - handed over like a worker's error
            future.set_exception(exc)
        return future

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None


def _one_by_one(segment: Segmenter, good: Good, labeler: str) -> list[dict]:
    """Each image alone, both halves at once; an image that still fails becomes a ``failed`` row."""
    rows = []
    for r, im in good:
        try:
            rows.append(label_row(r["dhash"], r["rel_path"], labeler, instances=_alone(segment, im), size=im.size))
        except Exception as exc:  # noqa: BLE001 - recorded, the partition goes on
            rows.append(label_row(r["dhash"], r["rel_path"], labeler, error=error_text(exc)))
        _free_gpu_memory()
    return rows


def _alone(segment: Segmenter, image: Image.Image) -> list[Instance]:
    """One image's instances, both halves; its tensors go with this frame."""
    out = segment([image])
    return (out() if callable(out) else out)[0]


def _free_gpu_memory() -> None:
    """Give a failed batch's device memory back before the retry: the objects it left (a reference cycle
    through a traceback keeps tensors until the collector runs), then the cache (CUDA only)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
