"""``samantics export coco|yolo``: one-off exports from a dataset folder, without Dagster (the old ``to_coco.py``).

``export coco`` merges the per-category COCO files of every category that has a ``curated_coco`` table,
exactly as the ``coco_dataset`` asset does, and validates each file with pycocotools. ``export yolo`` turns
the merged COCO files into the Ultralytics YOLO-seg tree, exactly as the ``yolo_dataset`` asset does. Both
take the same dataset locks as the assets, so they never interleave with a running export.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from samantics_dagster.cli.errors import CliError, report_problems


def _layout(args: argparse.Namespace):
    from samantics_dagster.core.dataset.layout import DatasetLayout

    value = args.dataset_dir or os.environ.get("DATASET_DIR")
    if not value:
        raise CliError("no dataset: pass --dataset-dir or set DATASET_DIR")
    layout = DatasetLayout(value)
    if not layout.spec.is_file():
        raise CliError(f"{layout.spec} is missing: a dataset folder has its coco-spec.json (see the README)")
    return layout


def _spec(layout):
    from samantics_dagster.core.dataset.spec import SpecError, load_spec

    try:
        return load_spec(layout.spec)
    except SpecError as exc:
        raise CliError(str(exc)) from None


def cmd_export_coco(args: argparse.Namespace) -> int:
    from samantics_dagster.core.dataset.schema import TableName
    from samantics_dagster.core.dataset.store import dataset_lock
    from samantics_dagster.core.export.shards import TaxonomyChanged, export_coco
    from samantics_dagster.core.export.stream_check import scan_merged_coco

    layout = _layout(args)
    spec = _spec(layout)
    categories = layout.table_categories(TableName.CURATED_COCO)
    if not categories:
        raise CliError(f"{layout.table_dir(TableName.CURATED_COCO)} has no tables: materialise curated_coco first")
    problems: list[str] = []
    with dataset_lock(layout.root, "coco_dataset"):
        # what coco_dataset does (taxonomy guard, streamed byte-range merge, manifest), at any size
        try:
            export = export_coco(layout, spec, lambda images: True, None, out=Path(args.out) if args.out else None)
        except TaxonomyChanged as exc:
            raise CliError(str(exc)) from None
        for split, merged in (export.merged or {}).items():
            problems += scan_merged_coco(merged.path, spec, (merged.images, merged.annotations)).problems
            print(f"{merged.path}: {merged.images} images, {merged.annotations} annotations "
                  f"from {len(export.shards[split])} categories")
    report_problems(problems, "the export")
    return 0


def cmd_export_yolo(args: argparse.Namespace) -> int:
    from samantics_dagster.core.dataset.store import dataset_lock
    from samantics_dagster.core.export.coco import SPLITS, categories_json
    from samantics_dagster.core.export.yolo_files import write_yolo_export

    layout = _layout(args)
    spec = _spec(layout)
    coco_dir = Path(args.coco) if args.coco else layout.coco
    files = {s: coco_dir / f"{s}.json" for s in SPLITS if (coco_dir / f"{s}.json").is_file()}
    if "train" not in files:
        raise CliError(f"no merged {coco_dir / 'train.json'}: run `samantics export coco` (or materialise coco_dataset) first")
    with dataset_lock(layout.root, "yolo_dataset"):
        report = write_yolo_export(layout, files, categories_json(spec), Path(args.out) if args.out else None,
                                   min_part_area=args.min_part_area, min_hole_area=args.min_hole_area)
    meta = report.metadata()
    fid = meta["fidelity_iou"]
    for split in report.images:
        print(f"{split}: {report.images[split]} images, {report.instances[split]} polygons")
    if fid["count"]:
        print(f"polygon vs RLE IoU: median {fid['median']}, p05 {fid['p05']}, min {fid['min']} over {fid['count']} instances")
    print(f"dropped instances: {meta['dropped_instances'] or 'none'}; dropped parts: {meta['dropped_parts'] or 'none'}; "
          f"holes filled: {meta['holes_filled']} of {meta['holes']}")
    print(f"Ultralytics: {report.out / 'data.yaml'}")
    return 0


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    """``export coco`` and ``export yolo`` under the ``samantics`` parser."""
    from samantics_dagster.core.export.yolo import MIN_HOLE_AREA, MIN_PART_AREA

    p = sub.add_parser("export", help="one-off exports from the dataset folder: merged COCO, or YOLO-seg for Ultralytics")
    kinds = p.add_subparsers(dest="kind", required=True)
    coco = kinds.add_parser("coco", help="merge every curated category's COCO files into coco/{split}.json (validated)")
    coco.add_argument("--dataset-dir", help="overrides DATASET_DIR")
    coco.add_argument("--out", help="folder for train.json, val.json (test.json); default: the dataset's coco/")
    coco.set_defaults(func=cmd_export_coco)
    yolo = kinds.add_parser("yolo", help="the merged COCO files as Ultralytics YOLO-seg (export/yolo/data.yaml)")
    yolo.add_argument("--dataset-dir", help="overrides DATASET_DIR")
    yolo.add_argument("--coco", help="folder of the merged COCO files (default: the dataset's coco/)")
    yolo.add_argument("--out", help="the YOLO tree's folder (default: the dataset's export/yolo/)")
    yolo.add_argument("--min-part-area", type=int, default=MIN_PART_AREA, help="pixels a separate piece of a mask needs")
    yolo.add_argument("--min-hole-area", type=int, default=MIN_HOLE_AREA, help="holes smaller than this are filled")
    yolo.set_defaults(func=cmd_export_yolo)
