"""Old samantics datasets for the legacy import tests, built from real photos (scikit-image), a real
SQLite ``pipeline.db`` and real COCO RLE masks (pycocotools).

Both layouts of ``core/tools/legacy/`` (``docs/legacy-import.md``): ``build_db_layout`` (``pipeline.db`` + ``images/`` +
``labels.jsonl``) and ``build_selection_layout`` (``01-selection/ 02-labels/ 03-curation/``). Each returns
the truth the tests check the import against.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from benchmarks.dedupe_reference import dhash_full_decode
from tests.images import jpeg_bytes, photo, shifted

W, H = 320, 180


@dataclass
class OldFrame:
    rel_path: str                 # {source}/{category}/{video_id}_{timestamp_ms}.jpg, as the workdir had it
    data: bytes
    status: str                   # accepted | rejected
    reason: str | None = None     # the old select_reason
    label: dict | None = None     # its labels.jsonl record, if labelled
    label_status: str | None = None
    label_error: str | None = None
    curate: str | None = None     # included | excluded
    split: str | None = None
    image_name: str | None = None  # its file in the old images folder

    @property
    def category(self) -> str:
        return self.rel_path.split("/")[1]

    @property
    def name(self) -> str:
        return self.rel_path.split("/")[-1]


@dataclass
class OldDataset:
    root: Path
    frames: list[OldFrame] = field(default_factory=list)

    def frame(self, rel_path: str) -> OldFrame:
        return next(f for f in self.frames if f.rel_path == rel_path)

    @property
    def accepted(self) -> list[OldFrame]:
        return [f for f in self.frames if f.status == "accepted"]


def frame_bytes(photo_name: str, box: tuple[int, int, int, int] | None = None) -> bytes:
    return jpeg_bytes(photo(photo_name, (W, H), box))


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def label_record(image: str, n: int, seed: int, **extra) -> dict:
    """A record in the seed's labels.jsonl format: ``n`` instances (rectangles and an ellipse), XYXY boxes."""
    rng = np.random.default_rng(seed)
    boxes, cats, scores, masks = [], [], [], []
    yy, xx = np.mgrid[:H, :W]
    for i in range(n):
        x0, y0 = int(rng.integers(0, W // 2)), int(rng.integers(0, H // 2))
        x1, y1 = x0 + int(rng.integers(20, W // 2)), y0 + int(rng.integers(20, H // 2))
        if i % 2:
            cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
            mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        else:
            mask = np.zeros((H, W), bool)
            mask[y0:y1, x0:x1] = True
        ys, xs = np.nonzero(mask)
        boxes.append([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
        cats.append([1, 3, 7][i % 3])
        scores.append(round(0.6 + 0.1 * (i % 4), 2))
        masks.append(_rle(mask))
    return {"image": image, "boxes": boxes, "category_ids": cats, "scores": scores, "masks": masks,
            "width": W, "height": H, **extra}


def old_dhash(data: bytes) -> str:
    """The hash the old scripts named images by (imagehash on a full decode): not always this project's."""
    return f"{dhash_full_decode(data):016x}"


def _write_jsonl(path: Path, records: list[dict], extra_lines: list[str] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


DB_COLUMNS = ["source_path", "video_id", "dhash", "select_status", "select_reason", "label_status", "label_error",
              "curate_status", "curate_reason", "split", "created_at"]


def build_db_layout(root: Path) -> OldDataset:
    """``pipeline.db`` + ``images/`` (some named by old dhash, some by name) + ``labels.jsonl``.

    gym: vidA_1000 (accepted, 3 instances, train; image by dhash), vidA_1200 (rejected near-duplicate),
    vidB_500 (accepted, no dhash in the db, image by name, 2 instances, val), vidC_100 (label failed).
    kitchen: k1_100 (accepted, 0 instances, excluded), k1_900 (accepted, label pending), k2_50 (rejected, orb).
    """
    base = photo("astronaut", (W, H))
    ds = OldDataset(root)
    ds.frames = [
        OldFrame("youtube/gym/vidA_1000.jpg", jpeg_bytes(base), "accepted", label_status="done",
                 curate="included", split="train"),
        OldFrame("youtube/gym/vidA_1200.jpg", jpeg_bytes(shifted(base, 2), 85), "rejected",
                 reason="near-duplicate (hamming 2)"),
        OldFrame("youtube/gym/vidB_500.jpg", frame_bytes("coffee"), "accepted", label_status="done",
                 curate="included", split="val"),
        OldFrame("vimeo/gym/vidC_100.jpg", frame_bytes("rocket"), "accepted", label_status="failed",
                 label_error="CUDA out of memory"),
        OldFrame("youtube/kitchen/k1_100.jpg", frame_bytes("chelsea"), "accepted", label_status="done",
                 curate="excluded"),
        OldFrame("youtube/kitchen/k1_900.jpg", frame_bytes("camera"), "accepted", label_status="pending"),
        OldFrame("youtube/kitchen/k2_50.jpg", frame_bytes("coins"), "rejected", reason="orb"),
    ]
    images = root / "images"
    images.mkdir(parents=True)
    records = []
    con = sqlite3.connect(root / "pipeline.db")
    con.execute(f"CREATE TABLE frames (id INTEGER PRIMARY KEY, {', '.join(c + ' TEXT' for c in DB_COLUMNS)})")
    for i, f in enumerate(ds.frames):
        h = old_dhash(f.data)
        by_hash = f.name != "vidB_500.jpg"
        if f.status == "accepted":
            f.image_name = f"{h}.jpg" if by_hash else f.name
            (images / f.image_name).write_bytes(f.data)
        n_inst = {"vidA_1000.jpg": 3, "vidB_500.jpg": 2, "k1_100.jpg": 0}.get(f.name)
        if n_inst is not None:
            extra = {"source_path": f.rel_path} if f.category == "kitchen" else {}
            f.label = label_record(f"images/{f.image_name}", n_inst, seed=i, **extra)
            records.append(f.label)
        con.execute(f"INSERT INTO frames ({', '.join(DB_COLUMNS)}) VALUES ({', '.join('?' * len(DB_COLUMNS))})", (
            f.rel_path, f.name.rsplit("_", 1)[0], h if by_hash else None, f.status, f.reason, f.label_status,
            f.label_error, f.curate, "no detections" if f.curate == "excluded" else None, f.split,
            "2024-05-01T10:00:00"))
    con.commit()
    con.close()
    _write_jsonl(root / "labels.jsonl", records)
    return ds


def build_selection_layout(root: Path, curation: str = "jsonl") -> OldDataset:
    """``01-selection/{category}/`` (plus one flat frame), ``02-labels/labels.jsonl``, ``03-curation/``
    as ``train.jsonl``/``val.jsonl`` or COCO ``train.json``/``val.json`` (``curation``).

    gym: vidA_1000 (train), vidB_500 (val; its record names youtube/gym/vidB_500.jpg); kitchen: k1_100
    (train), k3_70 (labelled, in no split: excluded); street: s1_10, flat in 01-selection, placed by its
    record's source_path.
    """
    ds = OldDataset(root)
    ds.frames = [
        OldFrame("legacy/gym/vidA_1000.jpg", frame_bytes("astronaut"), "accepted", curate="included", split="train"),
        OldFrame("youtube/gym/vidB_500.jpg", frame_bytes("coffee"), "accepted", curate="included", split="val"),
        OldFrame("legacy/kitchen/k1_100.jpg", frame_bytes("chelsea"), "accepted", curate="included", split="train"),
        OldFrame("legacy/kitchen/k3_70.jpg", frame_bytes("clock"), "accepted", curate="excluded"),
        OldFrame("youtube/street/s1_10.jpg", frame_bytes("moon"), "accepted", curate="included", split="val"),
    ]
    sel = root / "01-selection"
    records = []
    for i, f in enumerate(ds.frames):
        rel = f.name if f.category == "street" else f"{f.category}/{f.name}"
        f.image_name = rel
        (sel / rel).parent.mkdir(parents=True, exist_ok=True)
        (sel / rel).write_bytes(f.data)
        extra = {"source_path": f.rel_path} if f.rel_path.startswith("youtube/") else {}
        f.label = label_record(f"01-selection/{rel}", 1 + i % 3, seed=10 + i, **extra)
        f.label_status = "done"
        records.append(f.label)
    _write_jsonl(root / "02-labels" / "labels.jsonl", records)
    cur = root / "03-curation"
    cur.mkdir()
    for split in ("train", "val"):
        members = [f for f in ds.frames if f.split == split]
        if curation == "jsonl":
            _write_jsonl(cur / f"{split}.jsonl", [f.label for f in members])
        else:
            images = [{"id": k + 1, "file_name": f.label["image"], "width": W, "height": H}
                      for k, f in enumerate(members)]
            anns = [{"id": 100 * (k + 1) + j, "image_id": k + 1, "category_id": c, "iscrowd": 0}
                    for k, f in enumerate(members) for j, c in enumerate(f.label["category_ids"])]
            (cur / f"{split}.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": []}))
    return ds
