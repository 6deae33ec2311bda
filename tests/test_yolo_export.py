"""``yolo_dataset`` on a labelled demo dataset (tiny SAM3), read by the tools users run on it.

One category goes through ``category_pipeline`` and ``coco_export`` (which now ends with ``yolo_dataset``)
once per module, as in test_curate.py. The export is then checked by Ultralytics itself (its dataset check,
its label scan, one CPU epoch from ``yolo11n-seg.yaml``) and the COCO export by FiftyOne's COCO importer.
Both run in their own venvs (``scripts/trainer-venvs.sh``, made by ``make test``): see the README.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from dagster import AssetKey, DagsterInstance
from pycocotools import mask as mask_utils

from samantics_dagster.cli.main import main
from samantics_dagster.core.export.yolo import rasterise
from samantics_dagster.core.workdir.catalog import list_categories
from samantics_dagster.definitions import defs
from samantics_dagster.defs.partitions import category_partitions
from samantics_dagster.demo.spec import write_demo_spec

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "tests" / "tools"


@pytest.fixture(scope="module")
def exported(sample, tiny_model_dir, tmp_path_factory):
    """A demo dataset with its COCO and YOLO exports, built by the jobs the sensors launch."""
    workdir, _ = sample
    root = tmp_path_factory.mktemp("yolo")
    dataset = root / "dataset"
    write_demo_spec(dataset)
    (root / "home").mkdir()
    shutil.copyfile(REPO / "dagster.yaml", root / "home" / "dagster.yaml")
    category = list_categories(workdir)[-1]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATASET_DIR", str(dataset))
        mp.setenv("GRABBY_WORKDIR", str(workdir))
        mp.setenv("MODEL_CACHE", str(tiny_model_dir))
        with DagsterInstance.from_config(str(root / "home")) as instance:
            instance.add_dynamic_partitions(category_partitions.name, [category])
            assert defs.resolve_job_def("category_pipeline").execute_in_process(
                instance=instance, partition_key=category).success
            assert defs.resolve_job_def("coco_export").execute_in_process(instance=instance).success
            event = instance.get_latest_materialization_event(AssetKey("yolo_dataset"))
    metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    return dataset, metadata


def _rows(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_export_mirrors_the_coco_splits_with_linked_images_and_faithful_polygons(exported):
    dataset, metadata = exported
    yolo = dataset / "export" / "yolo"
    classes = json.loads((yolo / "classes.json").read_text())["classes"]
    spec_ids = sorted(c["id"] for c in json.loads((dataset / "coco-spec.json").read_text())["categories"])
    assert [c["id"] for c in classes] == spec_ids and [c["index"] for c in classes] == list(range(len(spec_ids)))
    index_of = {c["id"]: c["index"] for c in classes}
    ious, written = [], 0
    for split in ("train", "val"):
        coco = json.loads((dataset / "coco" / f"{split}.json").read_text())
        by_image = {im["id"]: [] for im in coco["images"]}
        for ann in coco["annotations"]:
            by_image[ann["image_id"]].append(ann)
        stems = {Path(im["file_name"]).stem for im in coco["images"]}
        assert {p.stem for p in (yolo / "images" / split).iterdir()} == stems
        assert {p.stem for p in (yolo / "labels" / split).iterdir()} == stems
        for image in coco["images"]:
            link = yolo / "images" / split / Path(image["file_name"]).name
            assert link.is_symlink() and not os.path.isabs(os.readlink(link))  # a relative link, no copy
            assert link.resolve() == (dataset / image["file_name"]).resolve()
            rows = _rows(yolo / "labels" / split / f"{link.stem}.txt")
            anns = by_image[image["id"]]
            assert len(rows) == len(anns)  # nothing dropped on the demo (the metadata says so too)
            for row, ann in zip(rows, anns):  # written in the COCO file's order
                assert len(row) > 6 and int(row[0]) == index_of[ann["category_id"]]
                polygon = np.array(row[1:], dtype=np.float64).reshape(-1, 2)
                assert polygon.min() >= 0 and polygon.max() <= 1
                rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
                truth = mask_utils.decode(rle).astype(bool)
                back = rasterise(polygon, image["width"], image["height"]).astype(bool)
                ious.append((truth & back).sum() / (truth | back).sum())
                written += 1
    assert written == sum(metadata[f"{s}_instances"] for s in ("train", "val")) > 0
    assert metadata["dropped_instances"] == {} and metadata["dropped_images"] == {}
    assert np.median(ious) >= 0.95  # the bar, recomputed from the files rather than read from the metadata
    assert metadata["fidelity_iou"]["median"] == pytest.approx(np.median(ious), abs=1e-4)
    assert metadata["fidelity_iou"]["count"] == written


def test_cli_export_matches_the_assets_and_replaces_a_stale_tree(exported, tmp_path):
    dataset, _ = exported
    copy = tmp_path / "dataset"
    shutil.copytree(dataset, copy, symlinks=True)
    stale = copy / "export" / "yolo"
    (stale / "labels" / "train.cache").write_text("stale")  # what Ultralytics leaves behind
    (stale / "images" / "test").mkdir()
    assert main(["export", "coco", "--dataset-dir", str(copy)]) == 0
    assert (copy / "coco" / "train.json").read_bytes() == (dataset / "coco" / "train.json").read_bytes()
    assert main(["export", "yolo", "--dataset-dir", str(copy)]) == 0
    assert not (stale / "labels" / "train.cache").exists() and not (stale / "images" / "test").exists()
    for split in ("train", "val"):
        for label in (dataset / "export" / "yolo" / "labels" / split).iterdir():
            assert (stale / "labels" / split / label.name).read_text() == label.read_text()
    (copy / "coco" / "train.json").unlink()
    assert main(["export", "yolo", "--dataset-dir", str(copy)]) == 2  # says to export COCO first


def _tool_python(name: str) -> Path:
    python = REPO / f".venv-{name}" / "bin" / "python"
    if not python.exists():
        message = f"{python.parent.parent} is missing: `scripts/trainer-venvs.sh {name}` (make test) makes it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return python


def _last_json(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow  # trains in a subprocess
def test_ultralytics_checks_the_export_and_trains_one_epoch(exported, tmp_path):
    dataset, metadata = exported
    python = _tool_python("yolo")
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(tmp_path / "cfg"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(python), str(TOOLS / "yolo_train.py"), str(dataset / "export" / "yolo" / "data.yaml"),
                           str(tmp_path / "runs"), "--imgsz", "160", "--batch", "8"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = _last_json(proc.stdout)[-1]
    assert result["nc"] == len(metadata["classes"]) and set(result["scan"]) == {"train", "val"}
    for split, scan in result["scan"].items():
        assert scan["corrupt"] == 0 and scan["missing"] == 0
        assert scan["found"] == scan["images"] == metadata[f"{split}_images"]
        assert scan["instances"] == metadata[f"{split}_instances"]
    assert result["epochs_done"] == 1 and result["losses_finite"]
    assert "download" not in (proc.stdout + proc.stderr).lower()  # built from its YAML, offline


@pytest.mark.slow  # FiftyOne starts its own mongod
def test_fiftyone_loads_the_coco_export_with_every_mask(exported, tmp_path):
    dataset, _ = exported
    python = _tool_python("fiftyone")
    env = {**os.environ, "FIFTYONE_DATABASE_DIR": str(tmp_path / "db"), "FIFTYONE_DO_NOT_TRACK": "true"}
    proc = subprocess.run([str(python), str(TOOLS / "fiftyone_load.py"), str(dataset), "coco/train.json",
                           "coco/val.json"], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = _last_json(proc.stdout)
    assert [r["file"] for r in results] == ["coco/train.json", "coco/val.json"]
    for r in results:
        coco = json.loads((dataset / r["file"]).read_text())
        assert r["samples"] == len(coco["images"]) and r["annotations"] == len(coco["annotations"]) > 0
        assert r["detections"] == r["with_mask"] == r["annotations"]  # every mask loaded
        assert r["mask_area_exact"] == r["annotations"]  # and none cut by its box


def test_the_automation_rebuilds_the_yolo_export_with_the_coco_one(instance):
    """Same condition as coco_dataset: one tick after a category is curated requests both, in one run."""
    from dagster import AssetMaterialization, evaluate_automation_conditions

    instance.add_dynamic_partitions(category_partitions.name, ["gym"])
    first = evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.get_num_requested(AssetKey("yolo_dataset")) == 0
    instance.report_runless_asset_event(AssetMaterialization(AssetKey("curated_coco"), partition="gym"))
    second = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert second.get_num_requested(AssetKey("coco_dataset")) == 1
    assert second.get_num_requested(AssetKey("yolo_dataset")) == 1
    job = defs.resolve_job_def("coco_export")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} >= {"coco_dataset", "yolo_dataset"}
