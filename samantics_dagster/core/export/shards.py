"""``coco/shards.json``: the per-category files a trainer reads one by one, and whether the single files
(``coco/{split}.json``) hold exactly them.

At a million images each merged file is gigabytes; rewriting it after every category is what made adding
one category cost the whole dataset (benchmarks/bench_scale.py measures both). The per-category files are the export's unit of change:
this manifest is rebuilt from their byte indexes (counts and ids, no parsing) in O(categories), and the
single files are rewritten only when :func:`single_files_due` says so: every time for a dataset of at most
``max_images`` images (small datasets keep current single files after each category, as before), otherwise
by the full export (``nightly_export``, ``samantics export coco``, or a run with ``single_files: always``).
The manifest records which shards the single files were merged from, so anyone can tell whether they are
current without reading them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import numpy as np

from samantics_dagster.core.dataset.atomic import write_json_atomic
from samantics_dagster.core.dataset.fingerprint import file_fingerprint
from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.dataset.schema import TableName
from samantics_dagster.core.dataset.spec import Spec
from samantics_dagster.core.export.byte_index import load_ids
from samantics_dagster.core.export.coco import SPLITS
from samantics_dagster.core.export.stream import MergeResult, ijson_backend, merge_coco_files
from samantics_dagster.core.export.taxonomy import stale_files, taxonomy_error


class SingleFilesMode(StrEnum):
    AUTO = "auto"  # rewrite the single files when the dataset is small enough
    ALWAYS = "always"  # the full export: rewrite them at any size


def single_files_due(mode: str, images: int, max_images: int) -> bool:
    """Whether a run in ``mode`` rewrites the single files of a dataset of ``images`` images."""
    return mode == SingleFilesMode.ALWAYS or images <= max_images


@dataclass(frozen=True)
class Shard:
    """One category's file of one split, as its byte index (or, for a file without one, a parse) has it."""

    category: str
    path: Path
    img_id: np.ndarray
    ann_img: np.ndarray
    ann_id: np.ndarray
    annotations: int  # len(ann_id) when loaded; kept when the id arrays are dropped

    @classmethod
    def of(cls, category: str, path: Path, img_id: np.ndarray, ann_img: np.ndarray, ann_id: np.ndarray) -> Shard:
        return cls(category, path, img_id, ann_img, ann_id, int(ann_id.size))

    @property
    def fingerprint(self) -> list[int] | None:
        return file_fingerprint(self.path)

    @property
    def images(self) -> int:
        return int(self.img_id.size)

    def without_annotation_ids(self) -> Shard:
        """The shard with its annotation id arrays dropped (~160 MB at 10 M annotations), still counted, for a
        caller that only lists it while the merge needs the memory."""
        empty = np.empty(0, np.int64)
        return replace(self, ann_img=empty, ann_id=empty)


def _parsed(category: str, path: Path) -> Shard:
    """Ids of a file without a current byte index (another tool wrote it): one streamed pass, O(its size)."""
    img, ann_img, ann_id = [], [], []
    with open(path, "rb") as fh:
        for prefix, event, value in ijson_backend().parse(fh):
            if event == "number" and prefix == "images.item.id":
                img.append(int(value))
            elif event == "number" and prefix == "annotations.item.image_id":
                ann_img.append(int(value))
            elif event == "number" and prefix == "annotations.item.id":
                ann_id.append(int(value))
    return Shard.of(category, path, np.asarray(img, np.int64), np.asarray(ann_img, np.int64), np.asarray(ann_id, np.int64))


def load_shards(layout: DatasetLayout) -> dict[str, list[Shard]]:
    """split -> every curated category's file of that split, in category order."""
    out: dict[str, list[Shard]] = {s: [] for s in SPLITS}
    for category in layout.table_categories(TableName.CURATED_COCO):
        for split in SPLITS:
            path = layout.coco_category(category, split)
            if not path.is_file():
                continue
            ids = load_ids(path)
            out[split].append(_parsed(category, path) if ids is None else Shard.of(category, path, *ids))
    return out


def _shared_image_annotations(shards: Sequence[Shard]) -> np.ndarray:
    """(id, image id) rows of the annotations on images that are in more than one file (rare: a frame is in
    one category; an imported dataset can repeat one)."""
    ids, counts = np.unique(np.concatenate([s.img_id for s in shards]), return_counts=True)
    shared = ids[counts > 1]
    if not shared.size:
        return np.empty((0, 2), np.int64)
    rows = [np.stack([s.ann_id, s.ann_img], axis=1)[np.isin(s.ann_img, shared)] for s in shards]
    return np.concatenate(rows)


def split_totals(shards: Sequence[Shard]) -> tuple[int, int]:
    """(images, annotations) the merge of ``shards`` holds: an image or annotation in two files counts once
    (an annotation can only repeat on a repeated image). Sorting the image ids is the cost: ~0.1 s at 1 M."""
    if not shards:
        return 0, 0
    images = int(np.unique(np.concatenate([s.img_id for s in shards])).size)
    annotations = sum(len(s.ann_id) for s in shards)
    shared = _shared_image_annotations(shards)
    if len(shared):
        annotations -= len(shared) - len(np.unique(shared, axis=0))
    return images, annotations


def id_problems(split: str, shards: Sequence[Shard], limit: int = 20) -> list[str]:
    """What would make the merge fail, from the ids alone: an annotation id on two images (in two files).
    One sort of the annotation ids (~1 s at 10 M)."""
    if not shards:
        return []
    ids = np.concatenate([s.ann_id for s in shards])
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if not dup.size:
        return []
    imgs = np.concatenate([s.ann_img for s in shards])
    owner = np.concatenate([np.full(len(s.ann_id), k) for k, s in enumerate(shards)])
    problems: list[str] = []
    for ann_id in np.unique(sorted_ids[dup]):
        rows = order[sorted_ids == ann_id]
        if len(set(imgs[rows].tolist())) < 2:
            continue  # the same annotation in two files (a repeated image): written once
        files = ", ".join(sorted({str(shards[owner[r]].path) for r in rows}))
        problems.append(f"{split}: annotation id {ann_id} is on {len(set(imgs[rows].tolist()))} images ({files}); "
                        "re-run curated_coco for the categories involved")
        if len(problems) >= limit:
            break
    return problems


def load_manifest(layout: DatasetLayout) -> dict:
    try:
        return json.loads(layout.coco_shards.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _rel(layout: DatasetLayout, path: Path) -> str:
    return path.relative_to(layout.root).as_posix()


def single_files_current(layout: DatasetLayout, manifest: Mapping, shards: Mapping[str, Sequence[Shard]]) -> bool:
    """Whether coco/{split}.json are the merge of today's shards (each file unchanged since it was written)."""
    recorded = manifest.get("single_files", {}).get("splits", {})
    for split in SPLITS:
        entry = recorded.get(split)
        if not shards.get(split):
            if entry is not None or layout.coco_merged(split).exists():
                return False
            continue
        if entry is None or entry.get("fingerprint") != file_fingerprint(layout.coco_merged(split)):
            return False
        if entry.get("shards") != {s.category: s.fingerprint for s in shards[split]}:
            return False
    return True


def build_manifest(layout: DatasetLayout, shards: Mapping[str, Sequence[Shard]], previous: Mapping,
                   merged: Mapping[str, MergeResult] | None, run_id: str | None,
                   totals: Mapping[str, tuple[int, int]] | None = None) -> dict:
    """The manifest after a coco_dataset run: ``merged`` holds the single files this run wrote (None: none);
    ``totals`` (split -> images, annotations) if the caller has them."""
    splits = {}
    for split in SPLITS:
        if not shards.get(split):
            continue
        images, annotations = totals[split] if totals is not None else split_totals(shards[split])
        splits[split] = {
            "file": _rel(layout, layout.coco_merged(split)), "images": images, "annotations": annotations,
            "shards": [{"category": s.category, "file": _rel(layout, s.path), "images": s.images,
                        "annotations": s.annotations} for s in shards[split]]}
    if merged is not None:
        single = {"run_id": run_id, "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
                  "splits": {split: {"fingerprint": file_fingerprint(result.path), "images": result.images,
                                     "annotations": result.annotations,
                                     "shards": {s.category: s.fingerprint for s in shards[split]}}
                             for split, result in merged.items()}}
    else:
        single = dict(previous.get("single_files", {}))
    manifest = {"splits": splits, "single_files": single}
    current = single_files_current(layout, manifest, shards)
    for entry in splits.values():
        entry["current"] = current
    return manifest


def write_manifest(layout: DatasetLayout, manifest: Mapping) -> None:
    write_json_atomic(dict(manifest), layout.coco_shards)


def written_in_run(manifest: Mapping, run_id: str) -> bool:
    """Whether the run ``run_id`` rewrote the single files (its checks then read them)."""
    return bool(manifest.get("single_files", {}).get("run_id") == run_id)


class TaxonomyChanged(ValueError):
    """Some categories' files were curated with another coco-spec.json (``core.export.taxonomy``)."""

    def __init__(self, message: str, categories: list[str]) -> None:
        super().__init__(message)
        self.categories = categories


@dataclass
class CocoExport:
    shards: dict[str, list[Shard]]
    manifest: dict
    images: int
    merged: dict[str, MergeResult] | None  # the single files this export rewrote (None: they wait)


def export_coco(layout: DatasetLayout, spec: Spec, due: Callable[[int], bool], run_id: str | None,
                out: Path | None = None) -> CocoExport:
    """What coco_dataset (and ``samantics export coco``) does, under its lock: the shards checked against the
    taxonomy, the single files merged if ``due(images)``, and the manifest written. O(categories) when they
    wait. ``out``: merge into that folder instead; the dataset's own files and manifest are left alone."""
    shards = load_shards(layout)
    by_category: dict[str, list[Path]] = {}
    for per_split in shards.values():
        for shard in per_split:
            by_category.setdefault(shard.category, []).append(shard.path)
    stale = stale_files(by_category, spec)
    if stale:  # never an export that mixes two taxonomies
        raise TaxonomyChanged(taxonomy_error(stale, layout.spec), sorted(stale))
    totals = {split: split_totals(shards[split]) for split in SPLITS}
    images = sum(t[0] for t in totals.values())
    shards = {split: [s.without_annotation_ids() for s in per_split] for split, per_split in shards.items()}
    merged: dict[str, MergeResult] | None = None
    if due(images):
        merged = {}
        for split in SPLITS:
            path = layout.coco_merged(split) if out is None else Path(out) / f"{split}.json"
            if not shards[split]:
                if out is None:  # a split no category has any more must not linger for a trainer to find
                    path.unlink(missing_ok=True)
                continue
            # byte ranges copied from the per-category files: bounded memory at any dataset size
            merged[split] = merge_coco_files([s.path for s in shards[split]], spec, path)
    if out is not None:
        return CocoExport(shards, load_manifest(layout), images, merged)
    manifest = build_manifest(layout, shards, load_manifest(layout), merged, run_id, totals)
    write_manifest(layout, manifest)
    return CocoExport(shards, manifest, images, merged)


def shard_problems(shards: Mapping[str, Sequence[Shard]]) -> list[str]:
    return [p for split, per_split in shards.items() for p in id_problems(split, per_split)]
