"""The YOLO-seg export on disk: ``{DATASET_DIR}/export/yolo/`` from the merged COCO files.

    export/yolo/data.yaml              Ultralytics' dataset YAML (train, val, test when there is one)
    export/yolo/classes.json           YOLO index <-> COCO category id, name, supercategory
    export/yolo/images/{split}/{dhash}.jpg   relative symlinks into images/ (no copies)
    export/yolo/labels/{split}/{dhash}.txt   one polygon row per instance (empty file: a background image)

Same splits as the COCO export, because it is built from ``coco/{split}.json``. The tree is built in a
temp folder beside it and swapped in, so a trainer never sees half an export, and a split that is gone
(or Ultralytics' ``labels/*.cache`` of an older export) does not linger. Callers hold the dataset lock
``yolo_dataset``. Images are streamed split by split; nothing holds more than one split's COCO file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from samantics_dagster.core.dataset.atomic import explain_write_error
from samantics_dagster.core.dataset.fingerprint import file_fingerprint
from samantics_dagster.core.dataset.layout import DatasetLayout, YoloLayout
from samantics_dagster.core.export.yolo import (
    MIN_HOLE_AREA,
    MIN_PART_AREA,
    class_indices,
    data_yaml,
    label_line,
    summarise,
    trace_instance,
)


@dataclass
class YoloReport:
    """What was written and everything that was not, by reason (metadata of the asset, the CLI's summary)."""

    out: Path
    images: dict[str, int] = field(default_factory=dict)
    instances: dict[str, int] = field(default_factory=dict)
    ious: list[float] = field(default_factory=list)
    vertices: list[int] = field(default_factory=list)
    dropped_instances: Counter = field(default_factory=Counter)
    dropped_parts: Counter = field(default_factory=Counter)
    dropped_images: Counter = field(default_factory=Counter)
    parts: int = 0
    holes: int = 0
    filled_holes: int = 0
    simplified: int = 0  # polygons simplified to fit Ultralytics' 1000-point resampling
    val_source: str = "val"
    classes: list[dict] = field(default_factory=list)

    def metadata(self) -> dict:
        """Plain JSON-able figures: the fidelity distribution and every drop with its reason."""
        over = sum(v > 1000 for v in self.vertices)
        return {
            "images": dict(self.images), "instances": dict(self.instances),
            "fidelity_iou": summarise(self.ious),
            "dropped_instances": dict(self.dropped_instances), "dropped_parts": dict(self.dropped_parts),
            "dropped_images": dict(self.dropped_images),
            "parts": self.parts, "holes": self.holes, "holes_filled": self.filled_holes,
            "simplified": self.simplified,
            "vertices": {"median": int(sorted(self.vertices)[len(self.vertices) // 2]) if self.vertices else 0,
                         "max": max(self.vertices, default=0), "over_1000": int(over)},
            "val_source": self.val_source, "classes": len(self.classes),
        }


def _link(target: Path, link: Path, final_dir: Path) -> None:
    """A relative symlink, computed from where the link will live after the swap (same depth as now)."""
    link.symlink_to(os.path.relpath(target, final_dir))


def _write_split(split: str, coco: Mapping, layout: DatasetLayout, tmp: Path, out: Path,
                 index_of: Mapping[int, int], report: YoloReport, min_part_area: int, min_hole_area: int) -> None:
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    staged, final = YoloLayout(tmp), YoloLayout(out)
    staged.images(split).mkdir(parents=True)
    staged.labels(split).mkdir(parents=True)
    names: set[str] = set()
    images = instances = 0
    for image in coco["images"]:
        anns = by_image.get(image["id"], [])
        source = layout.root / image["file_name"]
        stem = Path(image["file_name"]).stem
        reason = "image_missing" if not source.is_file() else "duplicate_name" if stem in names else None
        if reason:
            report.dropped_images[reason] += 1
            report.dropped_instances[reason] += len(anns)
            continue
        names.add(stem)
        lines = []
        for ann in anns:
            index = index_of.get(int(ann["category_id"]))
            if index is None:
                report.dropped_instances["unknown_category"] += 1
                continue
            traced = trace_instance(ann["segmentation"], int(image["width"]), int(image["height"]),
                                    min_part_area, min_hole_area)
            report.parts += traced.traced.parts
            report.holes += traced.traced.holes
            report.filled_holes += traced.traced.filled_holes
            report.dropped_parts.update(traced.traced.dropped_parts)
            if traced.polygon is None:
                report.dropped_instances[str(traced.reason)] += 1
                continue
            lines.append(label_line(index, traced.polygon))
            report.ious.append(float(traced.iou or 0.0))
            report.vertices.append(len(traced.polygon))
            report.simplified += traced.traced.epsilon > 0
        _link(source, staged.images(split) / f"{stem}{source.suffix}", final.images(split))
        staged.label(split, stem).write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
        images += 1
        instances += len(lines)
    report.images[split] = images
    report.instances[split] = instances


def _swap(tmp: Path, out: Path) -> None:
    """Put the new tree in place: old aside, new in, old removed (a crash in between leaves one of the two)."""
    old = out.parent / f".{out.name}-old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def yolo_source(coco_files: Mapping[str, Path], categories: list[dict], **settings: int) -> dict:
    """What a YOLO tree is a function of: the COCO files' fingerprints, the taxonomy, the tracing settings."""
    return {"files": {s: file_fingerprint(Path(p)) for s, p in sorted(coco_files.items())},
            "categories": categories, "settings": settings}


def yolo_tree_current(out: Path, source: Mapping) -> bool:
    try:
        return bool(json.loads(YoloLayout(out).source_json.read_text(encoding="utf-8")) == source)
    except (OSError, ValueError):
        return False


def write_yolo_export(layout: DatasetLayout, coco_files: Mapping[str, Path], categories: list[dict],
                      out: Path | None = None, min_part_area: int = MIN_PART_AREA,
                      min_hole_area: int = MIN_HOLE_AREA, source: Mapping | None = None) -> YoloReport:
    """The YOLO-seg tree for ``coco_files`` (split -> merged COCO file) with ``categories`` (the spec's, as
    COCO lists them) mapped to contiguous indices in id order; ``source`` (``yolo_source``) is kept in it."""
    if "train" not in coco_files:
        raise FileNotFoundError(f"no train split among {sorted(coco_files)} in {layout.coco}: "
                                "materialise coco_dataset (or run `samantics export coco`) first")
    out = Path(out or layout.yolo)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}-tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    report = YoloReport(out=out, classes=class_indices(categories))
    index_of = {c["id"]: c["index"] for c in report.classes}
    try:
        for split, path in coco_files.items():
            coco = json.loads(Path(path).read_text(encoding="utf-8"))
            _write_split(split, coco, layout, tmp, out, index_of, report, min_part_area, min_hole_area)
            del coco
        splits = {s: YoloLayout.images_key(s) for s in coco_files}
        if "val" not in splits:  # Ultralytics requires a val key; say so rather than invent a split
            splits["val"] = YoloLayout.images_key("train")
            report.val_source = "train (the COCO export has no val split)"
        YoloLayout(tmp).data_yaml.write_text(data_yaml(splits, [c["name"] for c in report.classes]), encoding="utf-8")
        YoloLayout(tmp).classes_json.write_text(json.dumps({"classes": report.classes}, indent=1), encoding="utf-8")
        if source is not None:
            YoloLayout(tmp).source_json.write_text(json.dumps(source), encoding="utf-8")
        _swap(tmp, out)
    except OSError as exc:  # a full disk or an I/O error: say which file and what to do; the old tree stays
        shutil.rmtree(tmp, ignore_errors=True)
        raise explain_write_error(exc, Path(exc.filename) if exc.filename else out) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report
