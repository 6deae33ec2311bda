"""The quality loop through Dagster: reviewed frames -> label_quality -> `samantics thresholds --apply` ->
thresholds_sensor -> recurate, on a synthetic reviewed set whose true thresholds are known."""

from __future__ import annotations

import json

import pytest
from dagster import build_sensor_context, materialize

from samantics_dagster.cli.main import main
from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.label.taxonomy import dataset_selection
from samantics_dagster.definitions import defs
from samantics_dagster.defs.curate.thresholds_sensor import thresholds_sensor
from samantics_dagster.demo.reviewed_set import write_reviewed_set
from samantics_dagster.demo.spec import write_demo_spec

CATEGORY = "synthetic"
TRUE = {1: 0.3, 3: 0.7}  # person, car


@pytest.fixture
def reviewed(tmp_path, monkeypatch):
    root = tmp_path / "dataset"
    write_demo_spec(root)
    write_reviewed_set(root, CATEGORY, TRUE, 160, seed=3)
    monkeypatch.setenv("DATASET_DIR", str(root))
    monkeypatch.setenv("GRABBY_WORKDIR", str(tmp_path / "grabby"))
    monkeypatch.setenv("MODEL_CACHE", str(tmp_path / "no-model"))
    return root


def _meta(result, node):
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def test_reviews_suggest_thresholds_that_apply_and_recurate(reviewed, instance, capsys):
    layout = DatasetLayout(reviewed)
    instance.add_dynamic_partitions("category", [CATEGORY])
    assets = list(defs.assets)
    assert materialize(assets, selection=["curated_coco"], instance=instance, partition_key=CATEGORY,
                       resources=defs.resources).success
    result = materialize(assets, selection=["label_quality"], instance=instance, resources=defs.resources)
    assert result.success
    meta = _meta(result, "label_quality")
    assert meta["pr_curves"].count("data:image/png;base64,") == 2 and "person" in meta["per_class"]
    report = json.loads(layout.label_quality.read_text())
    for name, cid in (("person", 1), ("car", 3)):
        c = report["classes"][name]
        assert abs(c["suggested"] - TRUE[cid]) <= 0.08 and c["reviewed"] >= 20, c
        low, high = c["intervals"]["threshold"]
        assert low <= c["suggested"] <= high
    assert report["frames"]["audit"] + report["frames"]["triaged"] == report["frames"]["all"] == 160

    capsys.readouterr()
    assert main(["thresholds", "--dataset-dir", str(reviewed)]) == 0
    shown = capsys.readouterr().out
    assert "person" in shown and "2 thresholds would change" in shown
    before = layout.queries.read_text()
    assert main(["thresholds", "--dataset-dir", str(reviewed), "--apply"]) == 0
    out = capsys.readouterr().out
    assert "+  car: {query: car, threshold:" in out or "threshold:" in out
    backups = list(reviewed.glob("sam-queries.yaml.*.bak"))
    assert len(backups) == 1 and backups[0].read_text() == before
    selection = dataset_selection(layout)
    assert selection.thresholds == {1: report["classes"]["person"]["suggested"], 3: report["classes"]["car"]["suggested"]}

    with build_sensor_context(instance=instance, resources={"dataset": defs.resources["dataset"]}) as context:
        tick = thresholds_sensor(context)
    assert [r.partition_key for r in tick.run_requests] == [CATEGORY]
    run = defs.resolve_job_def("recurate").execute_in_process(instance=instance, partition_key=CATEGORY)
    assert run.success
    recurated = _meta(run, "curated_coco")
    assert recurated["selection_fingerprint"] == selection.fingerprint()
    assert recurated["thresholds"]["car"] == selection.thresholds[3]


def test_thresholds_says_what_to_run_when_there_is_no_report(reviewed, capsys):
    assert main(["thresholds", "--dataset-dir", str(reviewed)]) == 2
    assert "label_quality" in capsys.readouterr().err
