"""The `samantics` console script, run as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def _run(*args, env=None, timeout=600):
    return subprocess.run([str(BIN / "samantics"), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_demo_without_ui_materialises_every_category_and_status_reports_it(tmp_path):
    proc = _run("demo", "--dir", str(tmp_path / "demo"), "--no-serve")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "accepted" in proc.stdout
    dataset = tmp_path / "demo" / "dataset"
    tables = sorted(p.name for p in (dataset / "tables" / "deduped_images").iterdir())
    assert len(tables) >= 3
    status = _run("status", "--dataset-dir", str(dataset))
    assert status.returncode == 0, status.stderr
    lines = status.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["category", "frames", "pending_dedupe", "accepted"]
    assert len(lines) == 1 + len(tables)
    header = lines[0].split()
    for line in lines[1:]:
        row = dict(zip(header, line.split()))
        assert int(row["labelled"]) == int(row["accepted"]) and row["pending_label"] == "0"
    # the demo's instance holds the runs the UI will show
    from dagster import AssetKey, DagsterInstance

    with DagsterInstance.from_config(str(tmp_path / "demo" / "dagster_home")) as instance:
        assert instance.get_latest_materialization_event(AssetKey("deduped_images")) is not None
        assert len(instance.get_dynamic_partitions("category")) == len(tables)


def test_errors_are_one_line_with_a_non_zero_exit(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATASET_DIR"}
    proc = subprocess.run([str(BIN / "samantics"), "status"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "DATASET_DIR" in proc.stderr
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    proc = _run("make-sample", str(tmp_path / "busy"))
    assert proc.returncode == 2 and "not empty" in proc.stderr


def test_add_partitions_adds_each_category_folder_once(tmp_path, sample):
    from dagster import DagsterInstance

    workdir, _ = sample
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {"DAGSTER_HOME": str(home), "GRABBY_WORKDIR": str(workdir)}
    first = _run("add-partitions", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("added 3 categories")
    second = _run("add-partitions", env=env)
    assert second.stdout.startswith("added 0 categories")
    with DagsterInstance.from_config(str(home)) as instance:
        assert sorted(instance.get_dynamic_partitions("category")) == ["gym", "kitchen", "street"]
    missing = _run("add-partitions", env={**env, "GRABBY_WORKDIR": str(tmp_path / "nope")})
    assert missing.returncode == 2 and "GRABBY_WORKDIR" in missing.stderr
