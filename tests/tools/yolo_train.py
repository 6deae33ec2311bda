"""Run in the Ultralytics venv (.venv-yolo): check a YOLO-seg export the way Ultralytics does, train one epoch.

    python tests/tools/yolo_train.py DATA_YAML RUN_DIR [--imgsz 160] [--batch 8]

Prints one JSON line: Ultralytics' dataset check (class count, split folders), its label scan per split
(found, missing, empty, corrupt, instances), the epoch's losses and validation mask mAP, and the times.
Needs YOLO_OFFLINE=1 (set below): nothing may be downloaded, the model is built from its YAML.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")


def label_scan(data: dict, split: str) -> dict:
    """Ultralytics' own per-image label verification (verify_image_label via the dataset's cache_labels)."""
    from ultralytics.data.dataset import YOLODataset

    ds = YOLODataset(img_path=str(data[split]), data=data, task="segment", imgsz=64, augment=False,
                     cache=False, prefix=f"{split}: ")
    cache_path = Path(ds.label_files[0]).parent.with_suffix(".cache")
    from ultralytics.data.utils import load_dataset_cache_file

    nf, nm, ne, nc, n = load_dataset_cache_file(cache_path)["results"]
    segments = sum(len(lb["segments"]) for lb in ds.labels)
    return {"images": n, "found": nf, "missing": nm, "empty": ne, "corrupt": nc, "instances": segments}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("run_dir")
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    import torch
    from ultralytics import YOLO
    from ultralytics.data.utils import check_det_dataset

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = check_det_dataset(args.data, autodownload=False)
    scans = {s: label_scan(data, s) for s in ("train", "val", "test") if data.get(s)}
    t1 = time.perf_counter()
    model = YOLO("yolo11n-seg.yaml")
    model.train(data=args.data, epochs=1, imgsz=args.imgsz, batch=args.batch, device="cpu", workers=0,
                plots=False, amp=False, project=args.run_dir, name="train", exist_ok=True, verbose=False,
                seed=0, deterministic=True)
    t2 = time.perf_counter()
    with open(Path(model.trainer.save_dir) / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))  # one row per epoch, as Ultralytics logged it
    last = {k.strip(): float(v) for k, v in rows[-1].items()}
    losses = [v for k, v in last.items() if k.startswith("train/") and not k.endswith("sem_loss")]
    metrics = {k: v for k, v in last.items() if k.startswith(("metrics/", "val/"))}
    print(json.dumps({
        "nc": data["nc"], "names": data["names"], "splits": {s: str(data[s]) for s in scans},
        "scan": scans, "losses": losses, "losses_finite": bool(losses) and all(math.isfinite(x) for x in losses),
        "metrics": metrics, "check_s": round(t1 - t0, 2), "train_s": round(t2 - t1, 2),
        "epochs_done": len(rows),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
