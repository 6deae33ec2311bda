"""ingress -> curated_coco -> coco_dataset on the demo sample with the tiny SAM3, through Dagster's jobs.

The COCO files are then read the way trainers read them: pycocotools' COCO and loadRes, COCOeval.
"""

import contextlib
import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey, AssetSelection, DagsterInstance, materialize
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samantics_dagster.core.dataset.tables import table_path
from samantics_dagster.core.workdir.catalog import list_categories
from samantics_dagster.definitions import defs
from samantics_dagster.defs.partitions import category_partitions
from samantics_dagster.demo.spec import write_demo_spec

REPO = Path(__file__).resolve().parent.parent


def _quiet(fn):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def _run_all(instance, categories, run_config=None):
    job = defs.resolve_job_def("category_pipeline")
    for category in categories:
        result = job.execute_in_process(instance=instance, partition_key=category, run_config=run_config or {})
        checks = result.get_asset_check_evaluations()
        assert result.success and all(c.passed for c in checks if c.severity.value == "ERROR"), category
        assert {"curated_coco_valid", "curated_coco_no_video_leak", "split_ratios"} <= {c.check_name for c in checks}
    result = defs.resolve_job_def("coco_export").execute_in_process(instance=instance)
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    return result


@pytest.fixture(scope="module")
def built(sample, tiny_model_dir, tmp_path_factory):
    """The whole pipeline once per module; each test gets its own copy of the dataset and instance."""
    workdir, _ = sample
    root = tmp_path_factory.mktemp("curated")
    write_demo_spec(root / "dataset")
    (root / "home").mkdir()
    shutil.copyfile(REPO / "dagster.yaml", root / "home" / "dagster.yaml")
    categories = list_categories(workdir)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATASET_DIR", str(root / "dataset"))
        mp.setenv("GRABBY_WORKDIR", str(workdir))
        mp.setenv("MODEL_CACHE", str(tiny_model_dir))
        with DagsterInstance.from_config(str(root / "home")) as instance:
            instance.add_dynamic_partitions(category_partitions.name, categories)
            _run_all(instance, categories)
    return root, categories


@pytest.fixture
def curated(built, sample, tiny_model_dir, tmp_path, monkeypatch):
    root, categories = built
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    monkeypatch.setenv("DATASET_DIR", str(copy / "dataset"))
    monkeypatch.setenv("GRABBY_WORKDIR", str(sample[0]))
    monkeypatch.setenv("MODEL_CACHE", str(tiny_model_dir))
    with DagsterInstance.from_config(str(copy / "home")) as instance:
        yield copy / "dataset", categories, instance


def test_merged_export_loads_in_pycocotools_without_leaks(curated):
    dataset, categories, instance = curated
    files = {s: dataset / "coco" / f"{s}.json" for s in ("train", "val")}
    data = {s: json.loads(p.read_text()) for s, p in files.items()}
    for split, path in files.items():
        gt = _quiet(lambda: COCO(str(path)))
        anns = data[split]["annotations"]
        if anns:  # what a trainer's evaluator does with detections: loadRes + COCOeval
            dt = _quiet(lambda: gt.loadRes([{k: a[k] for k in ("image_id", "category_id", "segmentation", "score")} for a in anns]))
            ev = COCOeval(gt, dt, "segm")
            _quiet(lambda: (ev.evaluate(), ev.accumulate(), ev.summarize()))
            assert ev.stats[0] > 0.99
        for image in data[split]["images"]:
            assert (dataset / image["file_name"]).is_file()
    videos = {s: {im["video_id"] for im in d["images"]} for s, d in data.items()}
    assert not videos["train"] & videos["val"]
    ids = [im["id"] for d in data.values() for im in d["images"]]
    assert len(ids) == len(set(ids))

    curated_rows = pd.concat([pd.read_parquet(table_path(dataset, "curated_coco", c)) for c in categories])
    included = curated_rows[curated_rows.status == "included"]
    assert len(ids) == len(included) > 0
    share = (included.split == "val").mean()
    assert 0.05 < share < 0.35, share  # few videos in the sample: the grouped split can only get near 15%
    per_category = sum(len(json.loads((dataset / "coco" / c / "val.json").read_text())["images"]) for c in categories)
    assert per_category == len(data["val"]["images"])
    mat = instance.get_latest_materialization_event(AssetKey("coco_dataset")).asset_materialization
    assert mat.metadata["images"].value == len(ids)


def test_reruns_keep_ids_and_splits(curated, sample, guard_workdir):
    dataset, categories, instance = curated
    def outputs() -> tuple[dict, dict]:
        coco = {p: p.read_bytes() for p in (dataset / "coco").rglob("*.json") if p.name != "shards.json"}
        return coco, json.loads((dataset / "coco" / "shards.json").read_text())["splits"]

    before = outputs()
    # another seed: existing videos must keep their split anyway (sticky), so nothing may change
    with guard_workdir(sample[0]):
        _run_all(instance, categories, {"ops": {"curated_coco": {"config": {"seed": 7}}}})
    after = outputs()  # the manifest's record of when the single files were written changes, nothing else
    assert before == after and all(split["current"] for split in after[1].values())


def test_a_broken_file_fails_the_blocking_check_and_stops_the_export(curated):
    dataset, categories, instance = curated
    category = categories[0]
    path = table_path(dataset, "sam3_labels", category)
    labels = pd.read_parquet(path)
    row = labels.index[labels.n_instances > 0][0]
    instances = json.loads(labels.at[row, "instances"])
    instances[0]["rle"]["size"] = [7, 7]  # a mask that does not fit its image
    labels.at[row, "instances"] = json.dumps(instances)
    labels.to_parquet(path)
    before = (dataset / "coco" / "train.json").read_bytes()
    selection = AssetSelection.assets("curated_coco", "coco_dataset") | AssetSelection.checks_for_assets("curated_coco", "coco_dataset")
    result = materialize(list(defs.assets) + list(defs.asset_checks), selection=selection, instance=instance,
                         partition_key=category, resources=defs.resources, raise_on_error=False)
    assert not result.success
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    assert [c.check_name for c in failed] == ["curated_coco_valid"]
    assert "RLE size" in failed[0].metadata["first_problems"].value
    assert not result.asset_materializations_for_node("coco_dataset")
    assert (dataset / "coco" / "train.json").read_bytes() == before


def test_filters_and_a_test_split_are_config(curated):
    dataset, categories, instance = curated
    category = categories[0]
    config = {"ops": {"curated_coco": {"config": {"categories": ["vehicle"], "train": 70, "val": 15, "test": 15,
                                                  "resplit": True}}}}
    result = defs.resolve_job_def("category_pipeline").execute_in_process(
        instance=instance, partition_key=category, run_config=config)
    assert result.success
    folder = dataset / "coco" / category
    assert (folder / "test.json").is_file()
    for split in ("train", "val", "test"):
        anns = json.loads((folder / f"{split}.json").read_text())["annotations"]
        assert {a["category_id"] for a in anns} <= {3, 5}
    table = pd.read_parquet(table_path(dataset, "curated_coco", category))
    assert set(table.reason.dropna()) <= {"not_chosen", "no_detections", "person_only", "unusable", "below_min_score"}
    # back to two splits: the stale test.json goes, so no trainer picks it up
    assert defs.resolve_job_def("category_pipeline").execute_in_process(instance=instance, partition_key=category).success
    assert not (folder / "test.json").exists()


def test_a_changed_taxonomy_is_refused_until_every_category_is_curated_again(curated):
    dataset, categories, instance = curated
    spec = json.loads((dataset / "coco-spec.json").read_text())
    renamed = next(c for c in spec["categories"] if c["name"] == "car")
    renamed["name"] = "automobile"  # same id, new name: labels stay valid, the taxonomy does not
    (dataset / "coco-spec.json").write_text(json.dumps(spec))
    queries = dataset / "sam-queries.yaml"  # its entries name categories: curation reads its thresholds
    queries.write_text(queries.read_text().replace('car: "car"', 'automobile: "car"'))
    before = (dataset / "coco" / "train.json").read_bytes()
    export = list(defs.assets)
    result = materialize(export, selection=["coco_dataset"], instance=instance, resources=defs.resources,
                         raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.to_string()
    assert "mix two taxonomies" in message and all(c in message for c in categories)
    assert (dataset / "coco" / "train.json").read_bytes() == before  # the old export stays whole
    from samantics_dagster.cli.main import main  # the CLI's export merges as coco_dataset does: refused too
    assert main(["export", "coco", "--dataset-dir", str(dataset)]) == 2  # a CliError naming the fix
    assert (dataset / "coco" / "train.json").read_bytes() == before
    for category in categories[:-1]:
        assert materialize(export, selection=["curated_coco"], instance=instance, partition_key=category,
                           resources=defs.resources).success
    result = materialize(export, selection=["coco_dataset"], instance=instance, resources=defs.resources,
                         raise_on_error=False)
    message = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error.to_string()
    assert "1 categories" in message and categories[-1] in message  # only the one not yet curated again


def test_above_the_limit_the_single_files_wait_for_the_nightly_full_export(curated, sample):
    """At scale a category run updates the shards and segments only; nightly_export rewrites the single files."""
    from datetime import UTC, datetime

    from dagster import RunRequest, SkipReason, build_schedule_context

    from samantics_dagster.defs.automation.schedules import nightly_export
    from samantics_dagster.defs.resources.dataset import DatasetResource

    dataset, categories, instance = curated
    gone = categories[-1]
    singles = [dataset / "coco" / "train.json", dataset / "coco" / "val.json", dataset / "labels.jsonl"]
    before = {p: p.read_bytes() for p in singles}
    assert gone.encode() in before[singles[2]]
    # the category leaves the dataset: its tables and files go (a shard change the single files lag behind)
    for asset in ("sam3_labels", "curated_coco"):
        table_path(dataset, asset, gone).unlink()
    shutil.rmtree(dataset / "coco" / gone)
    deferred = {"config": {"max_images": 0}}
    result = defs.resolve_job_def("coco_export").execute_in_process(
        instance=instance, run_config={"ops": {"coco_dataset": deferred, "labels_jsonl": deferred}})
    assert result.success
    assert {p: p.read_bytes() for p in singles} == before  # nothing dataset-sized was rewritten
    manifest = json.loads((dataset / "coco" / "shards.json").read_text())
    assert all(not split["current"] and gone not in {s["category"] for s in split["shards"]}
               for split in manifest["splits"].values())
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["coco_dataset_valid"].passed and checks["coco_dataset_valid"].metadata["single_files"].value.startswith("stale")
    assert checks["coco_dataset_no_near_duplicates"].metadata["scope"].value.startswith("partitions only")
    assert result.asset_materializations_for_node("labels_jsonl")[0].metadata["labels_jsonl"].value == "stale"
    assert result.asset_materializations_for_node("yolo_dataset")[0].metadata["unchanged"].value is True  # not traced again

    resources = {"dataset": DatasetResource(dataset_dir=str(dataset), grabby_workdir=str(sample[0]))}
    when = datetime(2026, 12, 2, 5, tzinfo=UTC)
    with build_schedule_context(instance=instance, resources=resources, scheduled_execution_time=when) as context:
        request = nightly_export(context)
    assert isinstance(request, RunRequest) and request.run_key == "export:2026-12-02"
    result = defs.resolve_job_def("coco_export").execute_in_process(instance=instance, run_config=request.run_config)
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    train = json.loads((dataset / "coco" / "train.json").read_text())
    kept = {im["id"] for c in categories[:-1] for im in json.loads((dataset / "coco" / c / "train.json").read_text())["images"]}
    assert {im["id"] for im in train["images"]} == kept and train != json.loads(before[singles[0]])
    assert gone not in (dataset / "labels.jsonl").read_text()
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["coco_dataset_valid"].metadata["single_files"].value.startswith("parsed")
    assert checks["coco_dataset_no_near_duplicates"].metadata["scope"].value == "all pairs"
    assert "unchanged" not in result.asset_materializations_for_node("yolo_dataset")[0].metadata  # traced from the new files
    with build_schedule_context(instance=instance, resources=resources, scheduled_execution_time=when) as context:
        assert isinstance(nightly_export(context), SkipReason)  # current: nothing to do
