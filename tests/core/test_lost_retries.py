"""A retry Dagster promised (will_retry) but never launched is found once, and requested again as a fresh run."""

from __future__ import annotations

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, SensorResult, build_sensor_context, job, op

from samantics_dagster.core.dataset.tables import table_path
from samantics_dagster.defs.automation.run_health import run_health_sensor
from samantics_dagster.defs.health.lost_retries import REPLACES, WILL_RETRY, find_lost_retries
from samantics_dagster.defs.resources.dataset import DatasetResource


@op
def boom() -> None:
    raise RuntimeError("a worker that died")


@job(name="category_pipeline")
def failing() -> None:
    boom()


@pytest.fixture
def failed_run(tmp_path):
    with DagsterInstance.ephemeral() as instance:
        result = failing.execute_in_process(instance=instance, raise_on_error=False, tags={
            "dagster/partition": "gym", "dagster/max_retries": "3", "dagster/retry_number": "1", "team": "vision"})
        assert not result.success
        instance.add_run_tags(result.run_id, {WILL_RETRY: "true"})  # what the retry daemon decided, then dropped
        yield instance, result.run_id


def test_a_dropped_retry_is_found_after_the_grace_and_requested_once(failed_run, tmp_path, monkeypatch):
    instance, run_id = failed_run
    assert find_lost_retries(instance, grace_s=3600) == []  # Dagster still has time to retry it itself
    (lost,) = find_lost_retries(instance, grace_s=0)
    assert (lost.run_id, lost.job_name, lost.partition) == (run_id, "category_pipeline", "gym")
    assert lost.tags["team"] == "vision" and lost.tags[REPLACES] == run_id
    assert lost.tags["dagster/max_retries"] == "1"  # 3 allowed, this was retry 1, the replacement is the 2nd
    assert "dagster/retry_number" not in lost.tags and "dagster/parent_run_id" not in lost.tags

    import samantics_dagster.defs.automation.run_health as sensor_module

    # the sensor with no grace (its default, 30 s, gives Dagster's own retry daemon time first)
    monkeypatch.setattr(sensor_module, "find_lost_retries", lambda inst: find_lost_retries(inst, grace_s=0))
    resources = {"dataset": DatasetResource(dataset_dir=str(tmp_path / "dataset"), grabby_workdir=str(tmp_path))}
    with build_sensor_context(instance=instance, resources=resources) as context:
        result = run_health_sensor(context)
    assert isinstance(result, SensorResult)
    (request,) = result.run_requests
    assert request.partition_key == "gym" and request.run_key == f"lost-retry:{run_id}"
    assert request.tags[REPLACES] == run_id
    assert instance.get_run_by_id(run_id).tags[WILL_RETRY] == "false"  # Dagster won't retry it late as well
    assert find_lost_retries(instance, grace_s=0) == []  # claimed: asked for once


# --- the replacement is the run it replaces: run config, tags, selection --------------------------------------

DRY_RUN = {"ops": {"deduped_images": {"config": {"dry_run": True}}}}
CUSTOM_DEDUPE = {"ops": {"deduped_images": {"config": {"dhash_threshold": 6, "use_orb": False, "orb_window": 3}}}}
FULL = {"config": {"single_files": "always"}}
NIGHTLY_EXPORT = {"ops": {"coco_dataset": FULL, "labels_jsonl": FULL}}  # what the nightly_export schedule asks for
NIGHTLY_RETRY = {"ops": {"sam3_labels": {"config": {"retry_failed": True}}}}  # nightly_label_retry's
DEDUPE = [AssetKey("ingress_frames"), AssetKey("deduped_images")]


def _dropped(instance, job_name, run_config, partition=None, asset_selection=None, trigger="test"):
    """A run of the real job as Dagster records it, failed (its worker killed), marked to be retried, not retried."""
    from samantics_dagster.definitions import defs

    tags = {"samantics/trigger": trigger, "dagster/max_retries": "1", **({"dagster/partition": partition} if partition else {})}
    run = instance.create_run_for_job(defs.resolve_job_def(job_name), run_config=run_config, tags=tags,
                                      asset_selection=frozenset(asset_selection) if asset_selection else None)
    instance.report_run_failed(run, message="worker killed")
    instance.add_run_tags(run.run_id, {WILL_RETRY: "true"})
    return run


def _replacements(instance, tmp_path, monkeypatch):
    import samantics_dagster.defs.automation.run_health as sensor_module

    monkeypatch.setattr(sensor_module, "find_lost_retries", lambda inst: find_lost_retries(inst, grace_s=0))
    resources = {"dataset": DatasetResource(dataset_dir=str(tmp_path / "dataset"), grabby_workdir=str(tmp_path))}
    with build_sensor_context(instance=instance, resources=resources) as context:
        result = run_health_sensor(context)
    assert isinstance(result, SensorResult)
    return {r.tags[REPLACES]: r for r in result.run_requests}


def test_a_dry_run_dedupe_comes_back_dry_with_its_selection(dataset_env, instance, tmp_path, monkeypatch):
    from samantics_dagster.definitions import defs

    instance.add_dynamic_partitions("category", ["gym"])
    run = _dropped(instance, "category_pipeline", DRY_RUN, partition="gym", asset_selection=DEDUPE)
    request = _replacements(instance, tmp_path, monkeypatch)[run.run_id]
    assert request.run_config == DRY_RUN and request.partition_key == "gym"
    assert sorted(request.asset_selection, key=str) == sorted(DEDUPE, key=str)
    assert request.tags["samantics/trigger"] == "test"

    # run it as Dagster would: only the two selected steps, and the store stays empty (a dry run; its
    # accepted_frames_in_store check is red by design, "re-run without dry_run to copy them")
    job = defs.resolve_job_def(request.job_name)
    result = job.execute_in_process(run_config=request.run_config, partition_key=request.partition_key,
                                    asset_selection=request.asset_selection, tags=request.tags, instance=instance,
                                    raise_on_error=False)
    assert result.asset_materializations_for_node("deduped_images")
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert {"ingress_frames", "deduped_images"} <= started and not started & {"sam3_labels", "curated_coco"}
    table = pd.read_parquet(table_path(dataset_env, "deduped_images", "gym"))
    assert (table.status == "accepted").sum() > 0 and table.settings.str.endswith("+dry").all()  # decided...
    assert not list((dataset_env / "images").glob("*.jpg"))  # ...and copied nothing


@pytest.mark.parametrize(("job_name", "run_config", "partition", "trigger"), [
    ("category_pipeline", CUSTOM_DEDUPE, "gym", "manual"),
    ("coco_export", NIGHTLY_EXPORT, None, "nightly_export"),
    ("category_pipeline", NIGHTLY_RETRY, "gym", "nightly_label_retry"),
], ids=["custom-dedupe-config", "nightly-export-single-files", "nightly-label-retry"])
def test_a_replacement_carries_the_run_config_tags_and_whole_job_selection(dataset_env, instance, tmp_path, monkeypatch,
                                                                           job_name, run_config, partition, trigger):
    from dagster import validate_run_config

    from samantics_dagster.definitions import defs

    if partition:
        instance.add_dynamic_partitions("category", [partition])
    run = _dropped(instance, job_name, run_config, partition=partition, trigger=trigger)
    request = _replacements(instance, tmp_path, monkeypatch)[run.run_id]
    assert request.job_name == job_name and request.partition_key == partition
    assert request.run_config == run_config and request.tags["samantics/trigger"] == trigger
    # the whole job, as the run it replaces (asset_selection None runs every asset of the job)
    assert request.asset_selection is None or set(request.asset_selection) == set(run.asset_selection or ())
    validate_run_config(defs.resolve_job_def(job_name), request.run_config)  # Dagster accepts it as it stands
