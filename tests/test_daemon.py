"""The pipeline running itself: a real ``dagster-daemon`` over a temp instance and workdir.

A new category folder appears -> the sensor adds the partition and launches its run -> the automation
sensor re-merges ``coco_dataset``; then a backfill of three categories from the CLI makes three runs.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

from samantics_dagster.demo.spec import write_demo_spec

pytestmark = pytest.mark.slow  # starts dagster-daemon and the CLI

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OLD = time.time() - 3600


def _copy_category(src: Path, dst: Path, n: int = 5) -> None:
    dst.mkdir(parents=True)
    for f in sorted(src.glob("*.jpg"))[:n]:
        shutil.copy(f, dst / f.name)
    for p in [dst, *dst.iterdir()]:
        os.utime(p, (OLD, OLD))


def _wait(what: str, predicate, timeout: float, daemon: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert daemon.poll() is None, f"dagster-daemon exited: {log.read_text()[-3000:]}"
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; daemon log: {log.read_text()[-3000:]}")


def _runs(instance, job, statuses=None, tags=None):
    return instance.get_runs(RunsFilter(job_name=job, statuses=statuses or [], tags=tags or {}))


def _failures(instance):
    failed = _runs(instance, "category_pipeline", [DagsterRunStatus.FAILURE])
    return [instance.all_logs(r.run_id)[-1].message for r in failed]


def test_new_folder_to_merged_export_and_a_cli_backfill(tmp_path, sample, tiny_model_dir):
    src, _ = sample
    workdir, dataset, home = tmp_path / "grabby", tmp_path / "dataset", tmp_path / "home"
    _copy_category(src / "youtube" / "gym", workdir / "youtube" / "gym")
    _copy_category(next(src.glob("*/kitchen")), workdir / "vimeo" / "kitchen")
    write_demo_spec(dataset)
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "DATASET_DIR": str(dataset), "GRABBY_WORKDIR": str(workdir),
           "MODEL_CACHE": str(tiny_model_dir), "OMP_NUM_THREADS": "1",
           "SAMANTICS_SENSOR_INTERVAL_SECONDS": "3", "SAMANTICS_SENSOR_QUIET_SECONDS": "2",
           "SAMANTICS_AUTOMATION_INTERVAL_SECONDS": "5"}
    log = tmp_path / "daemon.log"
    with open(log, "w") as out:
        daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
                                  cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with DagsterInstance.from_config(str(home)) as instance:
            def succeeded(partitions):
                done = {r.tags.get("dagster/partition") for r in _runs(instance, "category_pipeline", [DagsterRunStatus.SUCCESS])}
                assert not _failures(instance), _failures(instance)
                return set(partitions) <= done

            _wait("the sensor's first runs", lambda: succeeded({"gym", "kitchen"}), 420, daemon, log)
            assert sorted(instance.get_dynamic_partitions("category")) == ["gym", "kitchen"]
            _wait("coco_dataset after the first runs", lambda: instance.get_latest_materialization_event(AssetKey("coco_dataset")),
                  180, daemon, log)

            # a new category folder appears while everything runs itself
            exported = instance.get_latest_materialization_event(AssetKey("coco_dataset")).timestamp
            _copy_category(next(src.glob("*/street")), workdir / "youtube" / "street")
            _wait("the new category's run", lambda: succeeded({"street"}), 420, daemon, log)
            assert sorted(instance.get_dynamic_partitions("category")) == ["gym", "kitchen", "street"]

            def re_exported():
                event = instance.get_latest_materialization_event(AssetKey("coco_dataset"))
                return event is not None and event.timestamp > exported
            _wait("coco_dataset to follow the new category", re_exported, 180, daemon, log)
            assert (dataset / "coco" / "street" / "train.json").is_file()
            latest = instance.get_latest_materialization_event(AssetKey("coco_dataset")).asset_materialization
            assert "street" in latest.metadata["train_categories"].value  # merged, even if it kept no frame
            # the sensor launched one run per category: repeat ticks launched nothing more
            by_sensor = _runs(instance, "category_pipeline", tags={"samantics/trigger": "grabby_workdir_sensor"})
            assert sorted(r.tags["dagster/partition"] for r in by_sensor) == ["gym", "kitchen", "street"]

            # a per-category backfill from the CLI: one run per partition, all through the queue
            proc = subprocess.run([str(BIN / "dagster"), "job", "backfill", "-w", str(REPO / "workspace.yaml"),
                                   "-j", "category_pipeline", "--partitions", "gym,kitchen,street", "--noprompt"],
                                  cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

            def backfilled():
                runs = [r for r in _runs(instance, "category_pipeline") if r.tags.get("dagster/backfill")]
                assert not any(r.status == DagsterRunStatus.FAILURE for r in runs), _failures(instance)
                return len(runs) == 3 and all(r.status == DagsterRunStatus.SUCCESS for r in runs) and runs
            runs = _wait("the backfill's three runs", backfilled, 420, daemon, log)
            assert sorted(r.tags["dagster/partition"] for r in runs) == ["gym", "kitchen", "street"]

            # a run that fails is retried once by the daemon, from the failed step only (dagster.yaml run_retries)
            bad = json.dumps({"ops": {"curated_coco": {"config": {"categories": ["no-such-class"]}}}})
            proc = subprocess.run([str(BIN / "dagster"), "job", "launch", "-w", str(REPO / "workspace.yaml"),
                                   "-j", "category_pipeline", "--config-json", bad,
                                   "--tags", json.dumps({"dagster/partition": "gym", "samantics/test": "retry"})],
                                  cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

            def retried():
                runs = instance.get_runs(RunsFilter(tags={"samantics/test": "retry"}))
                return len(runs) == 2 and all(r.status == DagsterRunStatus.FAILURE for r in runs) and runs
            retry, first = _wait("the failed run and its retry", retried, 300, daemon, log)
            assert retry.tags.get("dagster/retry_number") == "1" and retry.parent_run_id == first.run_id
            started = {e.step_key for e in instance.all_logs(retry.run_id) if e.dagster_event
                       and e.dagster_event.event_type_value == "STEP_START"}
            assert started == {"curated_coco"}, started  # ingress, dedupe and labels were not redone
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
