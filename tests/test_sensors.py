"""The workdir sensor, the schedules and the export's automation condition, on real Dagster instances."""

import os
import shutil
import time
from datetime import UTC, datetime

import pandas as pd
import pytest
from dagster import (
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    evaluate_automation_conditions,
)

from samantics_dagster.core.dataset.tables import table_path, write_table
from samantics_dagster.core.settings import Settings
from samantics_dagster.definitions import defs
from samantics_dagster.defs.automation.schedules import nightly_label_retry
from samantics_dagster.defs.automation.workdir_sensor import build_workdir_sensor, grabby_workdir_sensor
from samantics_dagster.defs.resources.dataset import DatasetResource
from samantics_dagster.demo.spec import write_demo_spec

OLD = time.time() - 3600


def _age(path, when=OLD):
    """Make a folder (and what is in it) look long finished, as grabby's older output does."""
    for p in [path, *path.rglob("*")]:
        os.utime(p, (when, when))


@pytest.fixture
def workdir(tmp_path, sample):
    """A workdir of our own (tests add frames to it): two sources, three categories of sample frames."""
    src, _ = sample
    root = tmp_path / "grabby"
    for rel in ("youtube/gym", "youtube/kitchen", "vimeo/kitchen", "vimeo/street"):
        frames = sorted((src / rel).glob("*.jpg"))[:4]
        (root / rel).mkdir(parents=True)
        for f in frames:
            shutil.copy(f, root / rel / f.name)
    _age(root)
    return root


def _tick(instance, workdir, dataset_dir, cursor=None, sensor=grabby_workdir_sensor, taxonomy=True):
    if taxonomy:  # the sensor requests runs only for a dataset whose coco-spec.json a run would accept
        write_demo_spec(dataset_dir)
    resources = {"dataset": DatasetResource(dataset_dir=str(dataset_dir), grabby_workdir=str(workdir))}
    with build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        result = sensor(context)
    assert isinstance(result, SensorResult)
    return result


def _apply(instance, result):
    """What the daemon does with a tick's result: add the requested partitions."""
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions("category", list(request.partition_keys))


def test_first_tick_adds_partitions_and_requests_a_run_each_then_repeats_are_no_ops(instance, workdir, tmp_path, guard_workdir):
    with guard_workdir(workdir):
        first = _tick(instance, workdir, tmp_path / "dataset")
    (request,) = first.dynamic_partitions_requests
    assert sorted(request.partition_keys) == ["gym", "kitchen", "street"]
    assert sorted(r.partition_key for r in first.run_requests) == ["gym", "kitchen", "street"]
    assert len({r.run_key for r in first.run_requests}) == 3
    _apply(instance, first)
    second = _tick(instance, workdir, tmp_path / "dataset", first.cursor)
    assert not second.run_requests and not second.dynamic_partitions_requests
    assert isinstance(second.skip_reason, SkipReason)
    # a lost cursor rescans, and asks for the same run keys: Dagster drops those, nothing runs twice
    again = _tick(instance, workdir, tmp_path / "dataset", None)
    assert {r.run_key for r in again.run_requests} == {r.run_key for r in first.run_requests}
    assert not again.dynamic_partitions_requests


def test_a_new_frame_waits_for_quiet_then_requests_one_run(instance, workdir, tmp_path):
    sensor = build_workdir_sensor(Settings(sensor_quiet_s=60.0))
    first = _tick(instance, workdir, tmp_path / "dataset", sensor=sensor)
    _apply(instance, first)
    keys = {r.partition_key: r.run_key for r in first.run_requests}
    frame = next((workdir / "youtube" / "gym").glob("*.jpg"))
    shutil.copy(frame, workdir / "youtube" / "gym" / "zz9newvideo_100.jpg")  # grabby is writing right now
    busy = _tick(instance, workdir, tmp_path / "dataset", first.cursor, sensor=sensor)
    assert not busy.run_requests
    _age(workdir / "youtube" / "gym")  # ... and has finished
    quiet = _tick(instance, workdir, tmp_path / "dataset", busy.cursor, sensor=sensor)
    (run,) = quiet.run_requests
    assert run.partition_key == "gym" and run.run_key != keys["gym"]
    assert not _tick(instance, workdir, tmp_path / "dataset", quiet.cursor, sensor=sensor).run_requests


def test_new_and_odd_folders(instance, workdir, tmp_path):
    first = _tick(instance, workdir, tmp_path / "dataset")
    _apply(instance, first)
    for name in ("bikes", ".partial", "bad,name"):
        (workdir / "youtube" / name).mkdir()
        shutil.copy(next((workdir / "youtube" / "gym").glob("*.jpg")), workdir / "youtube" / name / "v1_5.jpg")
        _age(workdir / "youtube" / name, OLD + 60)
    os.utime(workdir / "youtube", (OLD + 60, OLD + 60))  # the source folder changed when they appeared
    result = _tick(instance, workdir, tmp_path / "dataset", first.cursor)
    (request,) = result.dynamic_partitions_requests
    assert list(request.partition_keys) == ["bikes"]
    assert [r.partition_key for r in result.run_requests] == ["bikes"]


def test_no_run_is_requested_while_the_taxonomy_is_missing_or_broken(instance, workdir, tmp_path):
    dataset = tmp_path / "dataset"
    missing = _tick(instance, workdir, dataset, taxonomy=False)
    assert not missing.run_requests
    assert "coco-spec.json" in missing.skip_reason.skip_message and "samantics init" in missing.skip_reason.skip_message
    (request,) = missing.dynamic_partitions_requests  # the categories still show up as partitions
    assert sorted(request.partition_keys) == ["gym", "kitchen", "street"]
    assert missing.cursor is None  # nothing consumed: the changes wait for the fix
    _apply(instance, missing)
    write_demo_spec(dataset)
    (dataset / "sam-queries.yaml").write_text("vehicles:\n  car: car\n")  # a supercategory the spec lacks
    broken = _tick(instance, workdir, dataset, missing.cursor, taxonomy=False)
    assert not broken.run_requests and not broken.dynamic_partitions_requests
    assert "sam-queries.yaml" in broken.skip_reason.skip_message and "'vehicle'" in broken.skip_reason.skip_message
    (dataset / "sam-queries.yaml").write_text("vehicle:\n  car: car\n")
    fixed = _tick(instance, workdir, dataset, broken.cursor, taxonomy=False)
    assert sorted(r.partition_key for r in fixed.run_requests) == ["gym", "kitchen", "street"]


def test_a_missing_workdir_is_an_error_tick(instance, tmp_path):
    with pytest.raises(Exception, match="nowhere"):
        _tick(instance, tmp_path / "nowhere", tmp_path / "dataset")


def test_nightly_retry_asks_for_the_categories_with_failed_labels(instance, tmp_path):
    dataset = tmp_path / "dataset"
    resources = {"dataset": DatasetResource(dataset_dir=str(dataset), grabby_workdir=str(tmp_path))}
    with build_schedule_context(instance=instance, resources=resources,
                                scheduled_execution_time=datetime(2026, 11, 22, 2, tzinfo=UTC)) as context:
        assert isinstance(nightly_label_retry(context), SkipReason)
    rows = pd.DataFrame({"dhash": ["a" * 16, "b" * 16], "rel_path": ["y/gym/v_1.jpg", "y/gym/v_2.jpg"],
                         "status": ["failed", "done"], "error": ["CUDA out of memory", None]})
    write_table(rows, table_path(dataset, "sam3_labels", "gym"))
    write_table(rows.assign(status="done"), table_path(dataset, "sam3_labels", "kitchen"))
    with build_schedule_context(instance=instance, resources=resources,
                                scheduled_execution_time=datetime(2026, 11, 23, 2, tzinfo=UTC)) as context:
        requests = nightly_label_retry(context)
    (request,) = requests
    assert request.partition_key == "gym" and request.run_key == "retry:gym:2026-11-23"
    assert request.run_config["ops"]["sam3_labels"]["config"]["retry_failed"] is True


def test_export_automation_fires_after_a_category_is_curated(instance):
    from dagster import AssetKey, AssetMaterialization

    instance.add_dynamic_partitions("category", ["gym", "kitchen"])
    first = evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.total_requested == 0  # nothing curated yet: nothing to merge
    instance.report_runless_asset_event(AssetMaterialization(AssetKey("curated_coco"), partition="gym"))
    second = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert second.get_num_requested(AssetKey("coco_dataset")) == 1
    third = evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
    assert third.get_num_requested(AssetKey("coco_dataset")) == 0  # requested once, not every tick


def test_the_definitions_name_what_the_ui_shows():
    repo = defs.get_repository_def()
    assert {s.name for s in repo.sensor_defs} == {"grabby_workdir_sensor", "coco_export_automation", "run_health_sensor",
                                                  "label_studio_review_sensor", "thresholds_sensor"}
    assert repo.get_sensor_def("thresholds_sensor").default_status.value == "RUNNING"  # with the automation
    assert repo.get_sensor_def("label_studio_review_sensor").default_status.value == ("RUNNING" if os.environ.get("LABEL_STUDIO_URL") else "STOPPED")
    assert {s.name for s in repo.schedule_defs} == {"nightly_label_retry", "nightly_export"}
    assert repo.get_sensor_def("grabby_workdir_sensor").default_status.value == "RUNNING"
    # the label retry spends GPU time: off; the full export only runs when single files wait: on
    assert {s.name: s.default_status.value for s in repo.schedule_defs} == {"nightly_label_retry": "STOPPED",
                                                                            "nightly_export": "RUNNING"}
