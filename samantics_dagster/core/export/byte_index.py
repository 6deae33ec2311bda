"""Where each image and annotation sits in a per-category COCO file, so the merge copies bytes, not JSON.

Parsing is what made the streamed merge slow (ijson builds a Python object per item: ~7 MB/s, ~8 min at a
million images). The per-category writer knows each item's byte range as it writes it, so it leaves a
sidecar ``.{split}.index.npz`` beside the file: per image (id, offset, length), per annotation (image_id,
id, offset, length), and the JSON file's (size, mtime_ns) it describes. The merge orders those keys with
numpy and copies the ranges with sequential reads: the bytes are the ones ``json.dump`` of the merged dict
writes, because each item was encoded by the same encoder. A sidecar that is missing or describes another
version of the file (someone rewrote the JSON) is not used: the caller falls back to parsing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from samantics_dagster.core.dataset.atomic import write_atomic

_CHUNK = 4096  # items joined per write


def index_path(coco_file: Path) -> Path:
    """The sidecar of a COCO file (hidden, and not ``*.json``: nothing that globs the COCO files sees it)."""
    return coco_file.with_name(f".{coco_file.stem}.index.npz")


@dataclass
class ItemRecorder:
    """Filled by ``write_coco_stream`` as it writes: one entry per image and per annotation."""

    img_id: list[int] = field(default_factory=list)
    img_off: list[int] = field(default_factory=list)
    img_len: list[int] = field(default_factory=list)
    ann_img: list[int] = field(default_factory=list)
    ann_id: list[int] = field(default_factory=list)
    ann_off: list[int] = field(default_factory=list)
    ann_len: list[int] = field(default_factory=list)

    def image(self, item: dict, offset: int, length: int) -> None:
        self.img_id.append(int(item["id"]))
        self.img_off.append(offset)
        self.img_len.append(length)

    def annotation(self, item: dict, offset: int, length: int) -> None:
        self.ann_img.append(int(item["image_id"]))
        self.ann_id.append(int(item["id"]))
        self.ann_off.append(offset)
        self.ann_len.append(length)

    def save(self, coco_file: Path) -> None:
        st = os.stat(coco_file)
        arrays = {k: np.asarray(v, dtype=np.int64) for k, v in vars(self).items()}

        arrays["fingerprint"] = np.asarray([st.st_size, st.st_mtime_ns], dtype=np.int64)

        def write(fh: IO[bytes]) -> None:
            np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds like allow_pickle

        write_atomic(index_path(coco_file), write)


@dataclass(frozen=True)
class ItemIndex:
    path: Path  # the COCO file
    img_id: np.ndarray
    img_off: np.ndarray
    img_len: np.ndarray
    ann_img: np.ndarray
    ann_id: np.ndarray
    ann_off: np.ndarray
    ann_len: np.ndarray


def load_ids(coco_file: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(image ids, annotations' image ids, annotation ids) from the sidecar if it describes this very file:
    what the shard manifest and its checks need, without the byte ranges (half the sidecar's size)."""
    try:
        st = os.stat(coco_file)
        with np.load(index_path(coco_file)) as data:
            if list(data["fingerprint"]) != [st.st_size, st.st_mtime_ns]:
                return None
            return data["img_id"], data["ann_img"], data["ann_id"]
    except (FileNotFoundError, KeyError, ValueError, OSError):
        return None


def load_index(coco_file: Path) -> ItemIndex | None:
    """The sidecar if it describes this very file (size and mtime), else None."""
    sidecar = index_path(coco_file)
    try:
        st = os.stat(coco_file)
        with np.load(sidecar) as data:
            if list(data["fingerprint"]) != [st.st_size, st.st_mtime_ns]:
                return None
            arrays = {k: data[k] for k in ("img_id", "img_off", "img_len", "ann_img", "ann_id", "ann_off", "ann_len")}
    except (FileNotFoundError, KeyError, ValueError, OSError):
        return None
    return ItemIndex(coco_file, **arrays)


@dataclass
class Plan:
    """The merged order: per item, which file and which byte range."""

    img_file: np.ndarray
    img_off: np.ndarray
    img_len: np.ndarray
    ann_file: np.ndarray
    ann_off: np.ndarray
    ann_len: np.ndarray
    shared_images: int
    shared_annotations: int


class Readers:
    """One buffered reader per file. Each file's items are consumed in file order (every file is sorted by
    the merge key), so reads are sequential; ``pread``-style seeks happen only around a skipped duplicate.
    Plain reads, not ``mmap``: mapped pages of GB-sized inputs would count as the merge's memory."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._files = [open(p, "rb", buffering=1 << 20) for p in paths]  # noqa: SIM115 (closed in close())
        self._pos = [0] * len(self._files)

    def read(self, k: int, off: int, length: int) -> bytes:
        fh = self._files[k]
        if self._pos[k] != off:
            fh.seek(off)
        data = fh.read(length)
        self._pos[k] = off + length
        return data

    def item(self, k: int, off: int, length: int) -> dict:
        import json

        data = self.read(k, off, length)
        self._pos[k] = -1  # force a seek next time: this read may be out of order
        return json.loads(data)

    def close(self) -> None:
        for fh in self._files:
            fh.close()


def _concat(indexes: Sequence[ItemIndex], name: str, dtype: type) -> np.ndarray:
    return np.concatenate([getattr(ix, name).astype(dtype, copy=False) for ix in indexes]) if indexes else np.zeros(0, dtype)


def _files(indexes: Sequence[ItemIndex], name: str) -> np.ndarray:
    return (np.concatenate([np.full(len(getattr(ix, name)), k, dtype=np.int32) for k, ix in enumerate(indexes)])
            if indexes else np.zeros(0, np.int32))


def _images(indexes: Sequence[ItemIndex], readers: Readers) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Images by id, stable by file order; a repeated id written once if its file_name agrees."""
    ids, files = _concat(indexes, "img_id", np.int64), _files(indexes, "img_id")
    order = np.lexsort((files, ids))
    ids, files = ids[order], files[order]
    offs, lens = _concat(indexes, "img_off", np.int64)[order], _concat(indexes, "img_len", np.int32)[order]
    del order
    dup = np.flatnonzero(ids[1:] == ids[:-1]) + 1
    for i in dup.tolist():  # rare (dedupe is global): compare what merge_coco compares
        first = i - 1
        while first > 0 and ids[first - 1] == ids[i]:
            first -= 1
        a = readers.item(int(files[first]), int(offs[first]), int(lens[first]))
        b = readers.item(int(files[i]), int(offs[i]), int(lens[i]))
        if a["file_name"] != b["file_name"]:
            raise ValueError(f"image id {a['id']} is both {a['file_name']} and {b['file_name']}")
    keep = np.ones(len(ids), dtype=bool)
    keep[dup] = False
    return files[keep], offs[keep], lens[keep], int(len(dup))


def _annotations(indexes: Sequence[ItemIndex]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Annotations by (image_id, id), stable by file order; the same annotation in two files written once;
    one id on two images is an error. Arrays are reordered one at a time to keep the peak low."""
    img, ids, files = _concat(indexes, "ann_img", np.int64), _concat(indexes, "ann_id", np.int64), _files(indexes, "ann_id")
    order = np.lexsort((files, ids, img))
    img, ids, files = img[order], ids[order], files[order]
    same = np.flatnonzero((img[1:] == img[:-1]) & (ids[1:] == ids[:-1])) + 1
    keep = np.ones(len(ids), dtype=bool)
    keep[same] = False
    kept_ids, kept_img = ids[keep], img[keep]
    del img, ids
    by_id = np.argsort(kept_ids, kind="stable")
    clash = np.flatnonzero(kept_ids[by_id][1:] == kept_ids[by_id][:-1])
    if clash.size:
        i, j = by_id[clash[0]], by_id[clash[0] + 1]
        raise ValueError(f"annotation id {int(kept_ids[i])} belongs to images {int(kept_img[i])} and {int(kept_img[j])}")
    del kept_ids, kept_img, by_id
    offs = _concat(indexes, "ann_off", np.int64)[order][keep]
    lens = _concat(indexes, "ann_len", np.int32)[order][keep]
    return files[keep], offs, lens, int(len(same))


def plan_merge(indexes: Sequence[ItemIndex], readers: Readers) -> Plan:
    """``merge_coco``'s order and its refusals (one image id with two file names, one annotation id on two
    images), from the indexes alone (the few duplicated images are read to compare their file names)."""
    img_file, img_off, img_len, shared_images = _images(indexes, readers)
    ann_file, ann_off, ann_len, shared_annotations = _annotations(indexes)
    return Plan(img_file, img_off, img_len, ann_file, ann_off, ann_len, shared_images, shared_annotations)


def copy_items(fh: IO[bytes], readers: Readers, files: np.ndarray, offs: np.ndarray, lens: np.ndarray) -> int:
    """Write the items comma-separated, in order, a chunk at a time; returns how many."""
    n = len(files)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        chunk = [readers.read(f, o, ln) for f, o, ln in zip(files[start:stop].tolist(), offs[start:stop].tolist(),
                                                           lens[start:stop].tolist())]
        fh.write((b"," if start else b"") + b",".join(chunk))
    return n
