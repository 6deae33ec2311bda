"""Run in the FiftyOne venv (.venv-fiftyone): load a COCO export through FiftyOne's own COCO importer.

    python tests/tools/fiftyone_load.py DATASET_DIR coco/train.json [coco/val.json ...]

Prints one JSON line per file: samples, detections, detections with a mask, and how many masks have
exactly the annotation's pixel count (FiftyOne crops each instance mask to its box, so a box that cut
the mask would show here). Set FIFTYONE_DATABASE_DIR to a temp folder: FiftyOne starts its own mongod.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")


def main(argv: list[str]) -> int:
    import fiftyone as fo

    root = Path(argv[0])
    for rel in argv[1:]:
        labels = root / rel
        coco = json.loads(labels.read_text())
        areas: dict[int, list[int]] = {}
        for ann in coco["annotations"]:
            areas.setdefault(ann["image_id"], []).append(int(round(float(ann["area"]))))
        t0 = time.perf_counter()
        ds = fo.Dataset.from_dir(dataset_type=fo.types.COCODetectionDataset, data_path=str(root),
                                 labels_path=str(labels), label_types=["segmentations"],
                                 label_field="gt", include_id=True)
        load_s = time.perf_counter() - t0
        detections = with_mask = exact = 0
        for sample in ds.iter_samples():
            dets = sample["gt_segmentations"].detections if sample["gt_segmentations"] else []
            masks = [d.mask for d in dets if d.mask is not None and d.mask.any()]
            detections += len(dets)
            with_mask += len(masks)
            got = sorted(int(m.sum()) for m in masks)  # per image: FiftyOne keeps no annotation id
            want = sorted(areas.get(sample["gt_coco_id"], []))
            exact += sum(g == w for g, w in zip(got, want)) if len(got) == len(want) else 0
        print(json.dumps({"file": rel, "samples": len(ds), "annotations": len(coco["annotations"]),
                          "detections": detections, "with_mask": with_mask, "mask_area_exact": exact, "load_s": round(load_s, 2),
                          "fiftyone": fo.__version__}))
        ds.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
