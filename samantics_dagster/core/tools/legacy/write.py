"""The imported frames into the store and into each category's deduped_images, sam3_labels and curated_coco."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pycocotools import mask as mask_utils

from samantics_dagster.core.curate.filters import INCLUDED
from samantics_dagster.core.curate.filters import to_table as curate_table
from samantics_dagster.core.dataset.schema import IMPORTED_PREFIX, LabelStatus, TableName
from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.dataset.tables import read_table, table_path, write_table
from samantics_dagster.core.dedupe import engine as dedupe
from samantics_dagster.core.dedupe.engine import ACCEPTED, DEDUPE_COLUMNS, IMPORTED_SETTINGS, REJECTED
from samantics_dagster.core.label import pipeline as labeling
from samantics_dagster.core.label.masks import Instance
from samantics_dagster.core.tools import records
from samantics_dagster.core.tools.legacy.model import CategoryReport, Frame, Hashed, ImportReport, Placed
from samantics_dagster.core.workdir.naming import parse_frame_name

Row = dict[str, Any]


@dataclass
class CategoryRows:
    """One category's imported rows, per table."""

    dedupe: list[Row] = field(default_factory=list)
    labels: list[Row] = field(default_factory=list)
    curated: list[Row] = field(default_factory=list)


def _hashed(f: Frame) -> Hashed:
    """An accepted frame without an error was hashed (``hash_accepted`` sets one or the other)."""
    if f.hashed is None:
        raise RuntimeError(f"{f.origin}: accepted but neither hashed nor failed (a bug in the legacy import)")
    return f.hashed


def instances(rec: dict[str, Any], width: int, height: int) -> list[Instance]:
    """The record's detections as instances, masks checked against the stored image; ValueError says why not."""
    masks, cats = rec.get("masks"), rec.get("category_ids")
    if not isinstance(masks, list) or not isinstance(cats, list) or len(masks) != len(cats):
        raise ValueError("needs lists `category_ids` and `masks`, one COCO RLE mask per category id")
    rles = []
    for i, m in enumerate(masks):
        if not isinstance(m, dict) or "size" not in m or "counts" not in m:
            raise ValueError(f"mask {i} is not a COCO RLE dict {{size, counts}}")
        h, w = (int(v) for v in m["size"])
        if (h, w) != (height, width):
            raise ValueError(f"mask {i} is {w}x{h} but the image is {width}x{height}")
        if isinstance(m["counts"], list):  # uncompressed RLE: compress it as COCO files carry it
            m = mask_utils.frPyObjects({"size": [h, w], "counts": m["counts"]}, h, w)
        rles.append({"size": [h, w], "counts": m["counts"]})
    # Areas come from the masks, never from the old record: they are what COCOeval buckets by.
    out = [Instance.from_record(i) for i in records.instances({**rec, "masks": rles, "areas": None})]
    for i, inst in enumerate(out):
        if len(inst.bbox_xyxy) != 4 or not all(math.isfinite(v) for v in inst.bbox_xyxy):
            raise ValueError(f"box {i} is not 4 finite numbers (XYXY)")
    return out


def _dedupe_row(rel_path: str, f: Frame) -> Row:
    """Its deduped_images row: an old rejection keeps its old hash, the file was never read."""
    ts = parse_frame_name(f.name).timestamp_ms
    h = f.hashed
    return {
        "rel_path": rel_path, "source": rel_path.split("/", 1)[0], "video_id": f.video_id, "timestamp_ms": ts,
        "bytes": h.size if h else 0, "mtime_ns": 0, "content_hash": h.digest if h else None, "status": f.status,
        "reason": f.reason, "dup_of": f.dup_of, "detail": f.detail, "dhash": h.dhash if h else f.legacy_dhash,
        "width": h.width if h else None, "height": h.height if h else None,
        "dhash_threshold": None, "settings": IMPORTED_SETTINGS + f.tag,
    }


def _merge(existing: pd.DataFrame | None, new: pd.DataFrame, key: str) -> pd.DataFrame:
    """Existing rows whose key is not imported, then the imported rows (existing extra columns kept)."""
    if existing is None or existing.empty:
        return new
    rest = existing[~existing[key].isin(set(new[key]))]
    return pd.concat([rest, new], ignore_index=True) if len(rest) else new


def store_images(placed: list[Placed], store: ImageStore, dry_run: bool, report: ImportReport) -> None:
    """Copy the accepted frames' exact bytes into the store (claimed first, as dedupe does); count only in a dry run."""
    for rel_path, category, f in placed:
        if f.status != ACCEPTED or f.error is not None:
            continue
        h = _hashed(f)
        rep = report.category(category)
        if store.has(h.dhash):
            rep.images_present += 1
        elif dry_run:
            rep.images_stored += 1
        else:
            data = dedupe.read_if_unchanged(h.path, h.digest)
            if data is None:  # changed or vanished since it was hashed: a row must not name a file that isn't there
                f.error = f"{h.path} changed or vanished during the import; import again"
                continue
            store.claim(category, h.dhash, rel_path)
            if store.put_bytes(data, h.dhash):
                rep.images_stored += 1
            else:
                rep.images_present += 1


def _label_row(rel_path: str, f: Frame, h: Hashed, rep: CategoryReport) -> Row | None:
    """The sam3_labels row of an accepted frame: its old record, or its old failure; None to label it again."""
    labeler = IMPORTED_PREFIX + f.tag
    if f.label is not None:
        try:
            return labeling.label_row(h.dhash, rel_path, labeler, instances=instances(f.label, h.width, h.height),
                                      size=(h.width, h.height))
        except (ValueError, TypeError) as exc:
            rep.problems.append(f"{f.label_origin} ({rel_path}): unusable label record ({exc}); the image "
                                "stays accepted and sam3_labels labels it")
    elif f.label_status == LabelStatus.FAILED:
        error = f.label_error or "failed in the legacy pipeline (no error recorded)"
        return labeling.label_row(h.dhash, rel_path, labeler, error=f"legacy: {error}", size=(h.width, h.height))
    elif f.label_status == LabelStatus.DONE:
        rep.problems.append(f"{f.origin}: label_status is done but labels.jsonl has no record for it; "
                            "sam3_labels labels it")
    return None


def _accepted_rows(rel_path: str, f: Frame, out: CategoryRows, rep: CategoryReport) -> None:
    """An accepted frame's sam3_labels and curated_coco rows, where the old dataset had them."""
    h = _hashed(f)
    label_row = _label_row(rel_path, f, h, rep)
    n_annotations = f.curate_count  # the old count, unless the old labels are imported: then theirs
    if label_row is not None:
        done = label_row["status"] == labeling.DONE
        out.labels.append(label_row)
        rep.labels += done
        rep.label_failed += not done
        if done:
            n_annotations = label_row["n_instances"]
    if f.curate is not None:
        status, reason, split = f.curate
        out.curated.append({"dhash": h.dhash, "rel_path": rel_path, "video_id": f.video_id, "status": status,
                            "reason": reason, "split": split, "n_annotations": n_annotations})
        rep.curated += 1


def _report_split_leaks(by_cat: dict[str, CategoryRows], report: ImportReport) -> None:
    """A video in two splits of the old curation is a problem (curated_coco keeps one split per video)."""
    for category, out in by_cat.items():
        splits: dict[str, set[str]] = defaultdict(set)
        for row in out.curated:
            if row["status"] == INCLUDED and row["video_id"] and row["split"]:
                splits[row["video_id"]].add(row["split"])
        leaks = sorted(v for v, s in splits.items() if len(s) > 1)
        if leaks:
            report.category(category).problems.append(
                f"the legacy curation put videos in two splits ({', '.join(leaks[:5])}); curated_coco keeps one split "
                "per video: materialise it with `resplit: true` to split this category again")


def rows(placed: list[Placed], report: ImportReport) -> dict[str, CategoryRows]:
    """Per category, the rows of deduped_images, sam3_labels and curated_coco; counts into the report."""
    by_cat: dict[str, CategoryRows] = defaultdict(CategoryRows)
    for rel_path, category, f in placed:
        rep = report.category(category)
        out = by_cat[category]
        if f.status == ACCEPTED and f.error is not None:
            rep.problems.append(f"{f.origin}: {f.error}")
            rep.skipped += 1
            continue
        out.dedupe.append(_dedupe_row(rel_path, f))
        rep.frames += 1
        if f.status == REJECTED:
            rep.rejected += 1
            continue
        rep.accepted += 1
        _accepted_rows(rel_path, f, out, rep)
    _report_split_leaks(by_cat, report)
    return by_cat


def write_tables(by_cat: dict[str, CategoryRows], dataset: Path) -> None:
    """Merge into each category's tables: imported rows replace only rows with the same key."""
    for category, out in sorted(by_cat.items()):
        if out.dedupe:
            path = table_path(dataset, TableName.DEDUPED_IMAGES, category)
            merged = _merge(read_table(path), dedupe.to_table(out.dedupe), "rel_path")
            write_table(dedupe.to_table(merged.reindex(columns=DEDUPE_COLUMNS).to_dict("records")), path)
        if out.labels:
            path = table_path(dataset, TableName.SAM3_LABELS, category)
            merged = _merge(read_table(path), labeling.to_table(out.labels), "dhash")
            write_table(labeling.to_table(merged.reindex(columns=labeling.LABEL_COLUMNS).to_dict("records")), path)
        if out.curated:
            path = table_path(dataset, TableName.CURATED_COCO, category)
            merged = _merge(read_table(path), curate_table(out.curated), "dhash")
            write_table(merged.sort_values("dhash", ignore_index=True), path)
