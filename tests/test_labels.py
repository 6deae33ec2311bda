"""sam3_labels through Dagster with the tiny random SAM3 loaded from disk like real weights."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from samantics_dagster.core.dataset.tables import table_path
from samantics_dagster.definitions import defs

REPO = Path(__file__).resolve().parent.parent

UPSTREAM = [a for a in defs.assets if a.key.path[-1] in ("ingress_frames", "deduped_images")]
LABELS = [a for a in defs.assets if a.key.path[-1] == "sam3_labels"]
LABELS_JSONL = [a for a in defs.assets if a.key.path[-1] == "labels_jsonl"]
CATEGORY = "gym"


def _label(instance, run_config=None, raise_on_error=True):
    return materialize(LABELS + UPSTREAM, selection=["sam3_labels"], instance=instance, partition_key=CATEGORY,
                       resources=defs.resources, run_config=run_config, raise_on_error=raise_on_error)


def _meta(result):
    return {k: v.value for k, v in result.asset_materializations_for_node("sam3_labels")[0].metadata.items()}


@pytest.fixture
def deduped(dataset_env, instance):
    instance.add_dynamic_partitions("category", [CATEGORY])
    assert materialize(UPSTREAM, instance=instance, partition_key=CATEGORY, resources=defs.resources).success
    dd = pd.read_parquet(table_path(dataset_env, "deduped_images", CATEGORY))
    return dd[dd.status == "accepted"]


def test_labels_every_accepted_image_and_skips_them_next_time(dataset_env, instance, deduped):
    meta = _meta(_label(instance))
    table = pd.read_parquet(table_path(dataset_env, "sam3_labels", CATEGORY))
    assert set(table.dhash) == set(deduped.dhash)
    assert (table.status == "done").all() and meta["labelled_this_run"] == len(deduped)
    instances = [i for blob in table.instances for i in json.loads(blob)]
    assert instances, "the biased tiny model should detect something"
    for inst in instances:
        assert set(inst) == {"category_id", "bbox_xyxy", "score", "rle", "area"}
        assert isinstance(inst["rle"]["counts"], str) and inst["score"] > 0.1  # the default candidate floor
    assert not (dataset_env / "labels.jsonl").exists()  # a dataset-wide file: its own asset, not every label run's
    assert materialize(LABELS_JSONL + LABELS + UPSTREAM, selection=["labels_jsonl"], instance=instance,
                       resources=defs.resources).success
    lines = (dataset_env / "labels.jsonl").read_text().splitlines()
    assert len(lines) == len(deduped)
    rec = json.loads(lines[0])
    assert rec["image"].startswith("images/") and len(rec["boxes"]) == len(rec["masks"]) == len(rec["category_ids"])
    assert meta["queries_fingerprint"] and meta["model_fingerprint"] and "HF_TOKEN" not in repr(meta)
    # `auto` (the default when SAMANTICS_DEVICE is unset) says what it picked: here, no GPU
    assert (meta["device_requested"], meta["device"], meta["dtype"]) == ("auto", "cpu", "float32")
    assert meta["precision"].startswith("fp32-torch") and meta["labeler"].endswith("@" + meta["precision"])
    assert meta["precisions"] == {meta["precision"]: len(deduped)} and meta["mixed_precision"] is False

    again = _meta(_label(instance))
    assert again["labelled_this_run"] == 0 and again["reused"] == len(deduped)
    pd.testing.assert_frame_equal(table, pd.read_parquet(table_path(dataset_env, "sam3_labels", CATEGORY)))

    # a class threshold is a curate-time choice: changing it relabels nothing
    queries = dataset_env / "sam-queries.yaml"
    queries.write_text(queries.read_text() + "_threshold: 0.7\n")
    assert _meta(_label(instance))["labelled_this_run"] == 0
    changed = _meta(_label(instance, {"ops": {"sam3_labels": {"config": {"candidate_floor": 0.7}}}}))
    assert changed["labelled_this_run"] == len(deduped)
    assert "candidate floor changed" in changed["relabelled_because"]


@pytest.mark.slow
def test_a_killed_run_loses_at_most_one_batch(dataset_env, instance, deduped, tmp_path):
    """SIGKILL mid-partition, at a known batch: the part writer of ``tests.label_kill_defs`` blocks after the
    fifth part is written, the test kills the process there, and the next run reuses exactly those parts."""
    home = tmp_path / "cli_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with DagsterInstance.from_config(str(home)) as cli_instance:
        cli_instance.add_dynamic_partitions("category", [CATEGORY])
    parts = table_path(dataset_env, "sam3_labels", CATEGORY).parent / ".parts" / CATEGORY
    marker, block_after, log = tmp_path / "blocked", 5, tmp_path / "materialize.log"
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    proc = subprocess.Popen(
        [dagster, "asset", "materialize", "-m", "tests.label_kill_defs", "--select", "sam3_labels",
         "--partition", CATEGORY, "--config-json", json.dumps({"ops": {"sam3_labels": {"config": {"image_batch": 1}}}})],
        env={**os.environ, "DAGSTER_HOME": str(home), "OMP_NUM_THREADS": "1",
             "KILL_TEST_BLOCK_AFTER_PART": str(block_after), "KILL_TEST_MARKER": str(marker)},
        cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.time() + 300
    while not marker.exists():  # the process stays blocked once it is there: no race
        assert proc.poll() is None, (f"the run exited ({proc.returncode}) before reaching batch {block_after}: "
                                     f"{log.read_text()[-3000:]}")
        assert time.time() < deadline, f"no part {block_after} after 300 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = {d for p in parts.glob("part-*.parquet") for d in pd.read_parquet(p).dhash}
    assert len(saved) == block_after < len(deduped)  # one image per part; nothing after the blocked one
    assert not table_path(dataset_env, "sam3_labels", CATEGORY).exists()

    meta = _meta(_label(instance))
    assert meta["reused"] == len(saved)
    assert meta["labelled_this_run"] == len(deduped) - len(saved)
    table = pd.read_parquet(table_path(dataset_env, "sam3_labels", CATEGORY))
    assert set(table.dhash) == set(deduped.dhash) and (table.status == "done").all()
    assert not list(parts.glob("part-*.parquet"))


def test_a_broken_image_is_a_failed_row_and_retry_failed_labels_it(dataset_env, instance, deduped):
    victim = dataset_env / "images" / f"{deduped.dhash.iloc[0]}.jpg"
    good = victim.read_bytes()
    victim.write_bytes(good[:200])
    meta = _meta(_label(instance))
    table = pd.read_parquet(table_path(dataset_env, "sam3_labels", CATEGORY)).set_index("dhash")
    row = table.loc[deduped.dhash.iloc[0]]
    assert row.status == "failed" and victim.name in row.error and "deduped_images" in row.error
    assert meta["failed"] == 1 and meta["done"] == len(deduped) - 1

    victim.write_bytes(good)
    assert _meta(_label(instance))["labelled_this_run"] == 0  # failures are not retried unless asked
    retried = _meta(_label(instance, {"ops": {"sam3_labels": {"config": {"retry_failed": True}}}}))
    assert retried["labelled_this_run"] == 1 and retried["failed"] == 0


def test_a_run_where_most_images_fail_fails_its_blocking_check_and_nothing_downstream_runs(dataset_env, instance, deduped):
    for dhash in deduped.dhash.iloc[:10]:  # 10 of ~50 images broken: far above the 5% bound
        (dataset_env / "images" / f"{dhash}.jpg").write_bytes(b"not a jpeg")
    curate = [a for a in defs.assets if a.key.path[-1] == "curated_coco"]
    result = materialize(LABELS + UPSTREAM + curate, selection=["sam3_labels", "curated_coco"], instance=instance,
                         partition_key=CATEGORY, resources=defs.resources, raise_on_error=False)
    assert not result.success
    (check,) = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                and e.event_specific_data.check_name == "labels_failure_share"]
    assert not check.passed
    assert check.metadata["failed"].value == 10 and check.metadata["failed_share"].value > 0.05
    assert check.metadata["failed_this_run"].value == 10 and check.metadata["failed_earlier"].value == 0
    assert "retry_failed" in (check.description or "")
    assert not result.asset_materializations_for_node("curated_coco")  # the export never saw the broken run
    assert not (dataset_env / "coco" / CATEGORY).exists()
    # the finished work is kept: the failures are rows, and a retry after the fix labels only them
    table = pd.read_parquet(table_path(dataset_env, "sam3_labels", CATEGORY))
    assert (table.status == "failed").sum() == 10 and (table.status == "done").sum() == len(deduped) - 10


def test_a_run_where_every_image_failed_stays_red_on_its_retry_and_curation_never_runs(dataset_env, instance, deduped):
    """Dagster's retry (run_retries, from the failed step) runs the same selection again. The failed rows are
    kept under the same labeler (an unreadable image would fail the same way), so the retry tries none: the
    check judges the category's rows, not the attempt, and stays red; curated_coco never runs."""
    good = {}
    for dhash in deduped.dhash:  # every stored image of the category unreadable
        path = dataset_env / "images" / f"{dhash}.jpg"
        good[path] = path.read_bytes()
        path.write_bytes(b"not a jpeg")
    curate = [a for a in defs.assets if a.key.path[-1] == "curated_coco"]

    def run(run_config=None):
        result = materialize(LABELS + UPSTREAM + curate, selection=["sam3_labels", "curated_coco"], instance=instance,
                             partition_key=CATEGORY, resources=defs.resources, run_config=run_config,
                             raise_on_error=False)
        (check,) = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                    and e.event_specific_data.check_name == "labels_failure_share"]
        return result, check, {k: v.value for k, v in check.metadata.items()}

    n = len(deduped)
    first, check, meta = run()
    assert not first.success and not check.passed
    assert (meta["attempted"], meta["failed_this_run"], meta["failed"], meta["failed_earlier"]) == (n, n, n, 0)

    retry, check, meta = run()  # what Dagster's retry runs
    assert not retry.success and not check.passed, "the retry turned green although every image is failed"
    assert (meta["attempted"], meta["failed_this_run"], meta["failed"], meta["failed_earlier"]) == (0, 0, n, n)
    assert meta["failed_share"] == 1.0 and meta["accepted"] == n
    assert f"{n} kept from earlier attempts" in check.description and "retry_failed" in check.description
    for result in (first, retry):
        assert not result.asset_materializations_for_node("curated_coco")
        assert "curated_coco" not in {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert not (dataset_env / "coco" / CATEGORY).exists()
    assert not instance.get_latest_materialization_event(AssetKey(["curated_coco"]))

    for path, data in good.items():  # the cause fixed, a run with retry_failed labels them and curation follows
        path.write_bytes(data)
    fixed, check, meta = run({"ops": {"sam3_labels": {"config": {"retry_failed": True}}}})
    assert fixed.success and check.passed and (meta["attempted"], meta["failed"]) == (n, 0)
    assert fixed.asset_materializations_for_node("curated_coco")


def test_missing_model_fails_up_front_saying_how_to_fill_model_cache(dataset_env, instance, deduped, tmp_path, monkeypatch):
    monkeypatch.setenv("MODEL_CACHE", str(tmp_path / "no-models-here"))
    result = _label(instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.to_string()
    assert "no-models-here" in message and "MODEL_CACHE" in message


def test_a_malformed_queries_file_fails_before_loading_the_model(dataset_env, instance, deduped):
    (dataset_env / "sam-queries.yaml").write_text("vehicle:\n  spaceship: rocket\n")
    result = _label(instance, raise_on_error=False)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.to_string()
    assert "sam-queries.yaml" in message and "spaceship" in message


def test_metadata_carries_preview_thumbnails_with_masks(dataset_env, instance, deduped):
    import base64
    import io

    from PIL import Image

    meta = _meta(_label(instance))
    md = meta["previews"]
    assert md.count("data:image/jpeg;base64,") == 3
    b64 = md.split("data:image/jpeg;base64,")[1].split(")")[0]
    thumb = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert thumb.width == 320
    # each preview draws what passes today's thresholds, not every candidate
    import re

    from samantics_dagster.core.dataset.layout import DatasetLayout
    from samantics_dagster.core.label.candidates import select_records
    from samantics_dagster.core.label.taxonomy import dataset_selection

    table = pd.read_parquet(table_path(dataset_env, "sam3_labels", CATEGORY)).set_index("rel_path")
    selection = dataset_selection(DatasetLayout(dataset_env))
    captions = re.findall(r"\*\*(\S+) \((\d+) instances, (\d+) candidates\)\*\*", md)
    assert len(captions) == 3
    for rel, shown, candidates in captions:
        records = json.loads(table.loc[rel, "instances"])
        assert (int(shown), int(candidates)) == (len(select_records(records, selection)), len(records))
    assert any(int(shown) < int(candidates) for _, shown, candidates in captions)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine where torch sees no GPU")
def test_device_cuda_without_a_gpu_fails_at_start_naming_the_fix(dataset_env, instance, deduped):
    """Production asks for cuda: a run container started without its GPU fails when the step's resources
    start, in seconds, before any image or weight is read, instead of labelling at CPU speed for days."""
    from samantics_dagster.defs.resources.sam3 import Sam3Resource

    resources = {**defs.resources, "sam3": Sam3Resource(model_cache=os.environ["MODEL_CACHE"], device="cuda")}
    t0 = time.monotonic()
    result = materialize(LABELS + UPSTREAM, selection=["sam3_labels"], instance=instance, partition_key=CATEGORY,
                         resources=resources, raise_on_error=False)
    seconds = time.monotonic() - t0
    assert not result.success
    assert seconds < 30, f"took {seconds:.1f} s to fail"  # the bar: seconds, not a model load
    kinds = [e.event_type_value for e in result.all_events]
    failure = next(e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE")
    message = failure.event_specific_data.error.to_string()
    assert "no CUDA device is visible" in message and "SAMANTICS_DEVICE" in message and "'cuda'" in message
    assert "STEP_START" not in kinds  # the step never started: no image read, no weight loaded
    from samantics_dagster.core.dataset.layout import parts_dir

    labels = table_path(dataset_env, "sam3_labels", CATEGORY)
    assert not labels.exists() and not parts_dir(labels).exists()


def test_samantics_device_setting_reaches_the_resource(monkeypatch):
    from samantics_dagster.core.settings import Settings

    assert Settings.from_env({}).sam3_device == "auto"
    assert Settings.from_env({"SAMANTICS_DEVICE": "cuda"}).sam3_device == "cuda"
    assert Settings.from_env({"SAMANTICS_DEVICE": "CUDA:1"}).sam3_device == "cuda:1"
    with pytest.raises(ValueError, match="SAMANTICS_DEVICE='gpu'.*use cuda"):
        Settings.from_env({"SAMANTICS_DEVICE": "gpu"})


def test_a_category_of_two_precisions_is_reported_and_one_switch_relabels_the_odd_ones(dataset_env, instance, deduped):
    """Rows a GPU labelled in bf16 (here: rewritten to say so) beside this run's fp32 ones: the metadata says
    mixed, and `relabel: other_precision` labels exactly those again."""
    first = _meta(_label(instance))
    path = table_path(dataset_env, "sam3_labels", CATEGORY)
    table = pd.read_parquet(path)
    gpu = first["labeler"].split("@")[0] + "@bf16-torch2.11-transformers5.23"
    table.loc[table.index[:5], "labeler"] = gpu
    table.to_parquet(path)

    mixed = _meta(_label(instance))
    assert mixed["labelled_this_run"] == 0 and mixed["mixed_precision"] is True
    assert mixed["precisions"] == {first["precision"]: len(deduped) - 5, "bf16-torch2.11-transformers5.23": 5}

    fixed = _meta(_label(instance, {"ops": {"sam3_labels": {"config": {"relabel": "other_precision"}}}}))
    assert fixed["labelled_this_run"] == 5 and fixed["mixed_precision"] is False
    assert "another precision" in fixed["relabelled_because"]
