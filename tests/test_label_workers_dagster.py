"""``sam3_labels`` on Ray through Dagster: dagster-ray's ``LocalRay`` bound as the run's Ray (a local CPU-only
cluster it starts, two stand-in workers) labels the category into the in-process run's very table."""

import pandas as pd
import pytest
from dagster import materialize

from samantics_dagster.core.dataset.tables import table_path
from samantics_dagster.definitions import defs
from tests.test_labels import CATEGORY, LABELS, UPSTREAM, _meta, deduped  # noqa: F401 - the fixture


def test_sam3_labels_on_two_ray_actors_writes_the_in_process_table(dataset_env, instance, deduped):  # noqa: F811
    dagster_ray = pytest.importorskip("dagster_ray")
    path = table_path(dataset_env, "sam3_labels", CATEGORY)
    config = {"ops": {"sam3_labels": {"config": {"image_batch": 2, "ray_share_batches": 2}}}}
    in_process = _meta(materialize(LABELS + UPSTREAM, selection=["sam3_labels"], instance=instance,
                                   partition_key=CATEGORY, resources=defs.resources, run_config=config))
    reference = path.read_bytes()
    path.unlink()

    local_ray = dagster_ray.LocalRay(ray_init_options={
        "num_cpus": 2, "object_store_memory": 100 * 1024**2, "include_dashboard": False, "log_to_driver": False})
    on_ray = _meta(materialize(LABELS + UPSTREAM, selection=["sam3_labels"], instance=instance, partition_key=CATEGORY,
                               resources={**defs.resources, "ray_workers": local_ray}, run_config=config))
    assert path.read_bytes() == reference
    assert on_ray["labeler"] == in_process["labeler"] and on_ray["labelled_this_run"] == len(deduped)
    actors = on_ray["ray_actors"]
    assert set(actors) == {"actor-0", "actor-1"} and sum(a["images"] for a in actors.values()) == len(deduped)
    assert all(a["device"] == "cpu" and a["seconds"] > 0 for a in actors.values())
    assert on_ray["slowest_actor"] in actors and on_ray["relabelled_after_failures"] == 0
    assert (pd.read_parquet(path).status == "done").all()
