"""A retry Dagster promised (will_retry) but never launched is found once, and requested again as a fresh run."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance, SensorResult, build_sensor_context, job, op

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
