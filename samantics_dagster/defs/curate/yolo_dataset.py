"""``yolo_dataset``: the merged COCO export as Ultralytics YOLO-seg (export/yolo/), with its polygon fidelity.

Built from ``coco/{split}.json`` (so the same images and splits as the COCO export), after every
``coco_dataset`` materialisation by the same automation condition. The polygon logic is in
``core.export.yolo``; the tree on disk in ``core.export.yolo_files``.
"""

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from samantics_dagster.core.dataset.layout import YoloLayout
from samantics_dagster.core.dataset.spec import load_spec
from samantics_dagster.core.export.coco import SPLITS, categories_json
from samantics_dagster.core.export.yolo import MIN_HOLE_AREA, MIN_PART_AREA
from samantics_dagster.core.export.yolo_files import write_yolo_export, yolo_source, yolo_tree_current
from samantics_dagster.defs.automation.conditions import EXPORT_CONDITION
from samantics_dagster.defs.curate.coco_dataset import coco_dataset
from samantics_dagster.defs.resources.dataset import DatasetResource


class YoloConfig(Config):
    """How small a piece of a mask may be and still be traced (the automation runs with these defaults)."""

    min_part_area: int = Field(MIN_PART_AREA, ge=1, description="Pixels a separate piece of a mask needs to be kept.")
    min_hole_area: int = Field(MIN_HOLE_AREA, ge=1, description="Holes smaller than this (pixels) are filled.")


@asset(
    deps=[coco_dataset],
    group_name="curate",
    automation_condition=EXPORT_CONDITION,
    kinds={"python", "yaml"},
    description="The merged COCO export as Ultralytics YOLO-seg: export/yolo/data.yaml, images/{split}/ as "
                "symlinks into the store, labels/{split}/{dhash}.txt polygons; fidelity (polygon vs RLE IoU) in metadata.",
)
def yolo_dataset(context: AssetExecutionContext, config: YoloConfig, dataset: DatasetResource) -> MaterializeResult:
    layout = dataset.layout
    spec = load_spec(layout.spec)
    files = {s: layout.coco_merged(s) for s in SPLITS if layout.coco_merged(s).is_file()}
    source = yolo_source(files, categories_json(spec), min_part_area=config.min_part_area,
                         min_hole_area=config.min_hole_area)
    with dataset.lock("yolo_dataset"):
        if yolo_tree_current(layout.yolo, source):  # the merged files wait for the full export: nothing to trace
            context.log.info("yolo_dataset: coco/*.json and the settings are unchanged since the tree was built")
            return MaterializeResult(metadata={"path": str(layout.yolo), "unchanged": True})
        report = write_yolo_export(layout, files, categories_json(spec), min_part_area=config.min_part_area,
                                   min_hole_area=config.min_hole_area, source=source)
    meta = report.metadata()
    fidelity = meta["fidelity_iou"]
    context.log.info(f"yolo_dataset: {sum(report.images.values())} images, {sum(report.instances.values())} "
                     f"polygons, median IoU {fidelity.get('median')}; dropped {meta['dropped_instances'] or 'none'}")
    return MaterializeResult(metadata={
        "path": str(report.out),
        "data_yaml": str(YoloLayout(report.out).data_yaml),
        **{f"{s}_images": n for s, n in report.images.items()},
        **{f"{s}_instances": n for s, n in report.instances.items()},
        "fidelity_iou_median": float(fidelity.get("median", 0.0)),
        "fidelity_iou": MetadataValue.json(fidelity),
        "dropped_instances": MetadataValue.json(meta["dropped_instances"]),
        "dropped_parts": MetadataValue.json(meta["dropped_parts"]),
        "dropped_images": MetadataValue.json(meta["dropped_images"]),
        "holes": MetadataValue.json({"total": meta["holes"], "filled": meta["holes_filled"]}),
        "vertices": MetadataValue.json({**meta["vertices"], "simplified_polygons": meta["simplified"]}),
        "val_source": meta["val_source"],
        "classes": MetadataValue.json([{k: c[k] for k in ("index", "id", "name")} for c in report.classes]),
    })
