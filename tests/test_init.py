"""A new dataset's first minute: `samantics init` writes a taxonomy the pipeline accepts, and a category run
without a usable one stops in its first step, before dedupe (the workdir sensor's side: test_sensors.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey

from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.label.pipeline import PASSENGER
from samantics_dagster.core.label.taxonomy import load_taxonomy
from samantics_dagster.definitions import defs
from samantics_dagster.defs.partitions import category_partitions
from samantics_dagster.demo.spec import write_demo_spec

BIN = Path(sys.executable).parent


def _samantics(*args):
    return subprocess.run([str(BIN / "samantics"), *args], capture_output=True, text=True, timeout=120)


def test_init_writes_a_taxonomy_the_pipeline_reads_and_never_overwrites(tmp_path):
    dataset = tmp_path / "new" / "dataset"
    proc = _samantics("init", str(dataset))
    assert proc.returncode == 0, proc.stderr
    layout = DatasetLayout(dataset)
    taxonomy = load_taxonomy(layout, (PASSENGER,))  # the parsers sam3_labels, the first step and the sensor use
    names = [c.name for c in taxonomy.spec.categories]
    assert {"person", "car", "passenger"} <= set(names)
    texts = {q.category_name: q.text for q in taxonomy.queries.queries}
    assert "passenger" not in texts and texts["truck"] == "pickup truck" and texts["person"] == "person"
    written = {p: p.read_bytes() for p in (layout.spec, layout.queries)}

    again = _samantics("init", str(dataset))
    assert again.returncode == 2
    assert "already exist" in again.stderr and "never overwrites" in again.stderr and str(layout.spec) in again.stderr
    assert {p: p.read_bytes() for p in written} == written

    only_spec = tmp_path / "half"
    only_spec.mkdir()
    (only_spec / "coco-spec.json").write_text("{}")
    half = _samantics("init", str(only_spec))
    assert half.returncode == 2 and "coco-spec.json already exists" in half.stderr
    assert not (only_spec / "sam-queries.yaml").exists() and (only_spec / "coco-spec.json").read_text() == "{}"


@pytest.fixture
def bare_dataset(tmp_path, sample, tiny_model_dir, monkeypatch):
    """DATASET_DIR with no coco-spec.json yet: a new user's first run."""
    workdir, _ = sample
    dataset = tmp_path / "dataset"
    monkeypatch.setenv("DATASET_DIR", str(dataset))
    monkeypatch.setenv("GRABBY_WORKDIR", str(workdir))
    monkeypatch.setenv("MODEL_CACHE", str(tiny_model_dir))
    return dataset


def _category_run(instance, category="gym", **kwargs):
    instance.add_dynamic_partitions(category_partitions.name, [category])
    return defs.resolve_job_def("category_pipeline").execute_in_process(
        instance=instance, partition_key=category, raise_on_error=False, **kwargs)


def _started_steps(result) -> set[str]:
    return {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}


def test_a_category_run_without_a_spec_fails_in_its_first_step_and_dedupes_nothing(bare_dataset, instance):
    result = _category_run(instance)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert failure.step_key == "ingress_frames" and _started_steps(result) == {"ingress_frames"}
    message = failure.step_failure_data.error.message
    assert f"{bare_dataset / 'coco-spec.json'}: file: not found" in message and "samantics init" in message
    assert not (bare_dataset / "images").exists() and not (bare_dataset / "tables").exists()


def test_a_broken_queries_file_fails_the_first_step_naming_the_entry(bare_dataset, instance):
    write_demo_spec(bare_dataset)
    (bare_dataset / "sam-queries.yaml").write_text('person:\n  passenger: "someone in a car"\n')
    result = _category_run(instance)
    (failure,) = result.get_step_failure_events()
    assert failure.step_key == "ingress_frames" and _started_steps(result) == {"ingress_frames"}
    message = failure.step_failure_data.error.message
    assert "sam-queries.yaml: person.passenger: is a derived category" in message
    assert not (bare_dataset / "images").exists()


def test_ingest_alone_needs_no_spec(bare_dataset, instance):
    instance.add_dynamic_partitions(category_partitions.name, ["gym"])
    result = defs.resolve_job_def("category_pipeline").execute_in_process(
        instance=instance, partition_key="gym", asset_selection=[AssetKey("ingress_frames")])
    assert result.success and not os.path.exists(bare_dataset / "coco-spec.json")


def test_the_first_step_checks_queries_and_thresholds_as_the_later_steps_read_them(bare_dataset, instance):
    """`passenger` is derived by a relation rule (never queried), and the thresholds curation reads live in the
    same file: the first step refuses a query for a derived class, and a bad threshold, before any frame work."""
    write_demo_spec(bare_dataset)
    selection = [AssetKey("ingress_frames"), AssetKey("sam3_labels")]
    (bare_dataset / "sam-queries.yaml").write_text('person:\n  passenger: "someone in a car"\n')
    derived = _category_run(instance, asset_selection=selection)
    (first,) = [e for e in derived.get_step_failure_events() if e.step_key == "ingress_frames"]
    assert "person.passenger: is a derived category" in first.step_failure_data.error.message
    (bare_dataset / "sam-queries.yaml").write_text("vehicle:\n  car: {threshold: 1.5}\n")
    bad = _category_run(instance, asset_selection=selection)
    (first,) = [e for e in bad.get_step_failure_events() if e.step_key == "ingress_frames"]
    assert "vehicle.car.threshold" in first.step_failure_data.error.message
