"""ingress_frames -> deduped_images through Dagster's own APIs on a real instance."""

import os
import subprocess
import sys

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from samantics_dagster.core.dataset.tables import table_path
from samantics_dagster.core.workdir.catalog import list_categories
from samantics_dagster.definitions import defs
from samantics_dagster.defs.partitions import category_partitions
from samantics_dagster.demo.sample import score_dedupe

# The ingest stage and its checks; labelling and curation have their own test files.
_BY_KEY = {a.key.path[-1]: a for a in defs.assets}
ASSETS = [_BY_KEY["ingress_frames"], _BY_KEY["deduped_images"]] + [
    c for c in defs.asset_checks if {k.name for k in c.check_keys} & {"accepted_frames_in_store", "no_near_duplicates_accepted"}]


def _materialize(instance, category, run_config=None):
    return materialize(ASSETS, instance=instance, partition_key=category, resources=defs.resources,
                       run_config=run_config)


def _snapshot(root):
    return sorted((p, os.lstat(p).st_mtime_ns, os.lstat(p).st_size) for p in root.rglob("*"))


def test_every_category_materialises_and_dedupes_globally(sample, dataset_env, instance, guard_workdir):
    workdir, truth = sample
    categories = list_categories(workdir)
    assert len(categories) >= 3
    instance.add_dynamic_partitions(category_partitions.name, categories)
    before = _snapshot(workdir)
    with guard_workdir(workdir):
        for category in categories:
            result = _materialize(instance, category)
            assert result.success
            checks = result.get_asset_check_evaluations()
            assert checks and all(c.passed for c in checks), [(c.check_name, c.metadata) for c in checks]
    assert _snapshot(workdir) == before

    accepted, all_rows = [], []
    for category in categories:
        table = pd.read_parquet(table_path(dataset_env, "deduped_images", category))
        all_rows.append(table)
        accepted += table.loc[table.status == "accepted", "rel_path"].tolist()
        ingress = pd.read_parquet(table_path(dataset_env, "ingress_frames", category))
        assert set(table.rel_path) == set(ingress.rel_path)
    score = score_dedupe(truth, accepted)
    assert score.scene_recall == 1.0, score
    assert score.removed_fraction >= 0.9, score
    rows = pd.concat(all_rows)
    for rel in truth.bad_files:
        hit = rows[rows.rel_path == rel.replace("\udcff", "\\xff")]
        if len(hit):
            assert hit.iloc[0].status == "rejected" and hit.iloc[0].reason in ("decode_error", "unparsed"), rel
    stored = {p.stem for p in (dataset_env / "images").iterdir()}
    assert stored == set(rows.loc[rows.status == "accepted", "dhash"])

    mat = instance.get_latest_materialization_event(AssetKey("deduped_images"))
    assert mat is not None and "accepted" in mat.asset_materialization.metadata


def test_rerun_is_idempotent(sample, dataset_env, instance):
    workdir, _ = sample
    category = list_categories(workdir)[0]
    instance.add_dynamic_partitions(category_partitions.name, [category])
    _materialize(instance, category)
    path = table_path(dataset_env, "deduped_images", category)
    first = pd.read_parquet(path)
    store_before = _snapshot(dataset_env / "images")
    result = _materialize(instance, category)
    meta = result.asset_materializations_for_node("deduped_images")[0].metadata
    assert meta["decided"].value == 0 and meta["copied"].value == 0
    pd.testing.assert_frame_equal(first, pd.read_parquet(path))
    assert _snapshot(dataset_env / "images") == store_before


def test_dry_run_counts_without_writing_the_store(sample, dataset_env, instance):
    workdir, _ = sample
    category = list_categories(workdir)[0]
    instance.add_dynamic_partitions(category_partitions.name, [category])
    result = materialize(ASSETS[:2], instance=instance, partition_key=category, resources=defs.resources,
                         run_config={"ops": {"deduped_images": {"config": {"dry_run": True}}}})
    assert result.success
    meta = result.asset_materializations_for_node("deduped_images")[0].metadata
    assert meta["accepted"].value > 0 and meta["copied"].value == 0
    assert not (dataset_env / "images").exists() or not any((dataset_env / "images").iterdir())


@pytest.mark.slow
def test_dagster_cli_materialises_a_partition(sample, dataset_env, tmp_path):
    workdir, _ = sample
    category = list_categories(workdir)[0]
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((__import__("pathlib").Path(__file__).parent.parent / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    DagsterInstance.from_config(str(home)).add_dynamic_partitions("category", [category])
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    proc = subprocess.run(
        [dagster, "asset", "materialize", "-m", "samantics_dagster.definitions",
         "--select", "ingress_frames,deduped_images", "--partition", category],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = pd.read_parquet(table_path(dataset_env, "deduped_images", category))
    assert (table.status == "accepted").sum() > 0
    with DagsterInstance.from_config(str(home)) as inst:
        assert inst.get_latest_materialization_event(AssetKey("deduped_images")) is not None


def test_a_missing_workdir_fails_with_a_clear_error(sample, dataset_env, instance, tmp_path, monkeypatch):
    monkeypatch.setenv("GRABBY_WORKDIR", str(tmp_path / "not-mounted"))
    instance.add_dynamic_partitions(category_partitions.name, ["gym"])
    result = materialize(ASSETS[:1], instance=instance, partition_key="gym", resources=defs.resources,
                         raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = failure.event_specific_data.error.to_string()
    assert "not-mounted" in text and "GRABBY_WORKDIR" in text
