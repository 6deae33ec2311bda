"""The `samantics` console script, run as a user runs it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _run(*args, env=None, timeout=600):
    return subprocess.run([str(BIN / "samantics"), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`samantics demo --no-serve` once for the module: the dataset every other command reads."""
    root = tmp_path_factory.mktemp("cli") / "demo"
    proc = _run("demo", "--dir", str(root), "--no-serve")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, proc


def _rows(stdout: str) -> list[dict]:
    lines = stdout.strip().splitlines()
    header = lines[0].split()
    return [dict(zip(header, line.split())) for line in lines[1:]]


@pytest.mark.slow  # `samantics demo` in a subprocess
def test_demo_without_ui_materialises_every_category_and_status_reports_it(demo):
    root, proc = demo
    assert "accepted" in proc.stdout
    dataset = root / "dataset"
    tables = sorted(p.name for p in (dataset / "tables" / "deduped_images").iterdir())
    assert len(tables) >= 3
    status = _run("status", "--dataset-dir", str(dataset))
    assert status.returncode == 0, status.stderr
    assert status.stdout.split()[:4] == ["category", "frames", "pending_dedupe", "accepted"]
    rows = _rows(status.stdout)
    assert len(rows) == len(tables)
    for row in rows:
        assert int(row["labelled"]) == int(row["accepted"]) and row["pending_label"] == "0"
        assert int(row["included"]) + int(row["excluded"]) == int(row["accepted"])
    assert sum(int(r["included"]) for r in rows) > 0
    for split in ("train", "val"):
        assert (dataset / "coco" / f"{split}.json").is_file()
    # with the instance at hand, status also says how each category's last run went
    with_runs = _rows(_run("status", "--dataset-dir", str(dataset), env={"DAGSTER_HOME": str(root / "dagster_home")}).stdout)
    assert [r["last_run"] for r in with_runs] == ["success"] * len(tables)
    # the demo's instance holds the runs the UI will show
    from dagster import AssetKey, DagsterInstance

    with DagsterInstance.from_config(str(root / "dagster_home")) as instance:
        assert instance.get_latest_materialization_event(AssetKey("deduped_images")) is not None
        assert instance.get_latest_materialization_event(AssetKey("coco_dataset")) is not None
        assert len(instance.get_dynamic_partitions("category")) == len(tables)


@pytest.mark.slow  # `samantics demo` in a subprocess
def test_status_failed_and_videos_answer_the_old_questions(demo, tmp_path):
    import pandas as pd

    root, _ = demo
    dataset = tmp_path / "dataset"
    shutil.copytree(root / "dataset", dataset)
    assert _run("status", "--failed", "--dataset-dir", str(dataset)).stdout.strip() == "no failed labelling"
    labels_path = next((dataset / "tables" / "sam3_labels").glob("*.parquet"))
    labels = pd.read_parquet(labels_path)
    labels.loc[0, "status"], labels.loc[0, "error"] = "failed", "OutOfMemoryError: CUDA out of memory"
    labels.to_parquet(labels_path)
    failed = _run("status", "--failed", "--dataset-dir", str(dataset))
    assert failed.returncode == 0 and "CUDA out of memory" in failed.stdout and labels.loc[0, "rel_path"] in failed.stdout
    videos = _run("status", "--videos", "--limit", "3", "--dataset-dir", str(dataset))
    rows = _rows(videos.stdout)
    assert len(rows) == 3 and [int(r["accepted"]) for r in rows] == sorted((int(r["accepted"]) for r in rows), reverse=True)
    deduped = pd.concat(pd.read_parquet(p) for p in (dataset / "tables" / "deduped_images").glob("*.parquet"))
    best = deduped[deduped.status == "accepted"].groupby("video_id").size().max()
    assert int(rows[0]["accepted"]) == best


@pytest.mark.slow  # `samantics demo` in a subprocess
def test_status_names_a_category_labelled_at_two_precisions(demo, tmp_path):
    import pandas as pd

    root, _ = demo
    dataset = tmp_path / "dataset"
    shutil.copytree(root / "dataset", dataset)
    clean = _run("status", "--dataset-dir", str(dataset)).stdout
    assert "mixed precision" not in clean and {r["precisions"] for r in _rows(clean)} == {"1"}
    labels_path = sorted((dataset / "tables" / "sam3_labels").glob("*.parquet"))[0]
    labels = pd.read_parquet(labels_path)
    labels.loc[labels.index[:2], "labeler"] = labels.labeler.iloc[0].split("@")[0] + "@bf16-torch2.11-transformers5.23"
    labels.to_parquet(labels_path)
    out = _run("status", "--dataset-dir", str(dataset)).stdout
    lines = out.strip().splitlines()
    notes = [line for line in lines if line.startswith("mixed precision: ")]
    assert len(notes) == 1 and f"mixed precision: {labels_path.stem}: " in notes[0]
    assert "2 at bf16-torch2.11-transformers5.23" in notes[0] and "relabel: other_precision" in notes[0]
    rows = {r["category"]: r["precisions"] for r in _rows("\n".join(line for line in lines if line not in notes))}
    assert rows.pop(labels_path.stem) == "2" and set(rows.values()) == {"1"}


@pytest.mark.slow  # `samantics demo` in a subprocess
def test_split_stats_and_to_coco_on_the_demo_labels(demo, tmp_path):
    import json

    root, _ = demo
    dataset = root / "dataset"
    labels = dataset / "labels.jsonl"
    out = _run("split", str(labels), str(tmp_path / "train.jsonl"), str(tmp_path / "val.jsonl"), "--train", "80", "--seed", "3")
    assert out.returncode == 0, out.stderr
    videos = {}
    for split in ("train", "val"):
        recs = [json.loads(line) for line in (tmp_path / f"{split}.jsonl").read_text().splitlines()]
        videos[split] = {r["source_path"].rsplit("/", 1)[1].rsplit("_", 1)[0] for r in recs}
    assert videos["train"] and videos["val"] and not videos["train"] & videos["val"]
    n_in = len(labels.read_text().splitlines())
    assert sum(len((tmp_path / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "val")) == n_in
    three = _run("split", str(labels), str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), str(tmp_path / "c.jsonl"),
                 "--train", "70", "--val", "15")
    assert three.returncode == 0 and (tmp_path / "c.jsonl").exists(), three.stderr

    stats = _run("stats", str(tmp_path / "train.jsonl"), str(tmp_path / "val.jsonl"), "--spec", str(dataset / "coco-spec.json"), "--keep-empty")
    assert stats.returncode == 0, stats.stderr
    summary = {r["split"]: r for r in _rows(stats.stdout.split("\n\n")[0])}
    assert set(summary) == {"train", "val"}
    assert sum(int(r["images"]) + int(r["skipped"]) for r in summary.values()) == n_in
    default = _run("stats", "--dataset-dir", str(dataset))
    assert default.returncode == 0 and "all" in default.stdout

    coco_out = tmp_path / "labels-coco.json"
    conv = _run("to-coco", str(labels), str(coco_out), "--spec", str(dataset / "coco-spec.json"))
    assert conv.returncode == 0, conv.stderr
    from pycocotools.coco import COCO

    coco = COCO(str(coco_out))
    assert len(coco.getImgIds()) == n_in and len(coco.getAnnIds()) > 0
    bad = _run("to-coco", str(labels), str(tmp_path / "x.json"), env={"DATASET_DIR": ""})
    assert bad.returncode == 2 and "--spec" in bad.stderr


@pytest.mark.slow  # the console script in subprocesses
def test_import_legacy_brings_an_old_dataset_in_and_adds_partitions(tmp_path):
    from dagster import DagsterInstance

    from tests.legacy_fixtures import build_db_layout

    build_db_layout(tmp_path / "old")
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {"DAGSTER_HOME": str(home), "DATASET_DIR": str(tmp_path / "dataset")}
    dry = _run("import-legacy", "--data-root", str(tmp_path / "old"), "--dry-run", "--quiet", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout and not (tmp_path / "dataset" / "tables").exists()
    real = _run("import-legacy", "--data-root", str(tmp_path / "old"), "--quiet", env=env)
    assert real.returncode == 0, real.stderr
    assert (tmp_path / "dataset" / "tables" / "sam3_labels" / "gym.parquet").is_file()
    with DagsterInstance.from_config(str(home)) as instance:
        assert sorted(instance.get_dynamic_partitions("category")) == ["gym", "kitchen"]
    status = _rows(_run("status", env=env).stdout)
    assert {r["category"] for r in status} == {"gym", "kitchen"}
    missing = _run("import-legacy", "--data-root", str(tmp_path / "nowhere"), env=env)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "nowhere" in missing.stderr


@pytest.mark.slow  # the console script in subprocesses
def test_errors_are_one_line_with_a_non_zero_exit(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATASET_DIR"}
    proc = subprocess.run([str(BIN / "samantics"), "status"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "DATASET_DIR" in proc.stderr
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    proc = _run("make-sample", str(tmp_path / "busy"))
    assert proc.returncode == 2 and "not empty" in proc.stderr


@pytest.mark.slow  # the console script in subprocesses
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


def test_add_partitions_refuses_what_the_sensor_refuses_naming_folder_and_reason(tmp_path, monkeypatch, capsys):
    """In-process (no subprocess): the same listing rule as the sensor's scan, refusals on stderr, exit 1."""
    from dagster import DagsterInstance

    from samantics_dagster.cli.main import main
    from samantics_dagster.core.workdir.scan import scan_workdir

    workdir = tmp_path / "grabby"
    for folder in ("youtube/gym", "youtube/bad,name", "youtube/.cache", "vimeo/gym", "vimeo/a...b"):
        (workdir / folder).mkdir(parents=True)
        (workdir / folder / "vid_1000.jpg").write_bytes(b"")
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert main(["add-partitions", "--workdir", str(workdir)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("added 1 categories: gym")
    sensor_skips = scan_workdir(workdir, None, quiet_seconds=0).skipped
    assert set(sensor_skips) == {"youtube/bad,name", "youtube/.cache", "vimeo/a...b"}
    for folder, reason in sensor_skips.items():
        assert f"refused {reason}" in err and folder in reason
    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions("category") == ["gym"]


def test_import_legacy_records_a_runless_materialisation_per_table_and_category(tmp_path, monkeypatch, capsys):
    """In-process, on a real instance: Dagster sees the imported partitions as materialised, with no run."""
    import pyarrow.parquet as pq
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

    from samantics_dagster.cli.main import main
    from tests.legacy_fixtures import build_db_layout

    build_db_layout(tmp_path / "old")
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    dataset = tmp_path / "dataset"
    assert main(["import-legacy", "--data-root", str(tmp_path / "old"), "--dataset-dir", str(dataset), "--quiet"]) == 0
    written = {(p.parent.name, p.stem) for p in (dataset / "tables").glob("*/*.parquet")}
    assert {a for a, _ in written} == {"deduped_images", "sam3_labels", "curated_coco"}
    with DagsterInstance.from_config(str(home)) as instance:
        for asset, category in sorted(written):
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[category]), limit=5).records
            assert len(records) == 1, f"{len(records)} materialisations of {asset} {category}"
            mat = records[0].asset_materialization
            assert mat.partition == category
            rows = pq.read_metadata(dataset / "tables" / asset / f"{category}.parquet").num_rows
            assert mat.metadata["dagster/row_count"].value == rows > 0
            assert mat.metadata["imported_rows"].value > 0
        assert not instance.get_runs()  # runless: nothing pretends a run happened
    assert f"recorded {len(written)} materialisations" in capsys.readouterr().out
