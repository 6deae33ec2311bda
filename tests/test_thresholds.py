"""Thresholds are a curate-time choice: sam3_labels keeps candidates down to a floor, curated_coco applies
sam-queries.yaml's thresholds, and a threshold change re-curates through Dagster with no model loaded.

The reference for "the export after a threshold change" is a second dataset labelled by the same tiny SAM3
with its floor *at* the new threshold (what labelling at that threshold used to keep), then curated.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, build_sensor_context, materialize

from samantics_dagster.core.dataset.tables import table_path
from samantics_dagster.definitions import defs
from samantics_dagster.defs.curate.thresholds_sensor import thresholds_sensor
from samantics_dagster.demo.spec import write_demo_spec

CATEGORY = "street"
ASSETS = [a for a in defs.assets if a.key.path[-1] in ("ingress_frames", "deduped_images", "sam3_labels",
                                                        "curated_coco")]
LABELS_JSONL = [a for a in defs.assets if a.key.path[-1] == "labels_jsonl"]
NEW_THRESHOLD = 0.55


class CountingLoads:
    """Counts SAM3 loads by wrapping transformers' own ``Sam3Model.from_pretrained`` (no stand-in model)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from transformers import Sam3Model

        import samantics_dagster.defs.resources.sam3 as sam3_resource

        # the resource keeps one loaded model per process: start this test without the ones earlier tests loaded
        monkeypatch.setattr(sam3_resource, "_LOADED", {})
        self.calls = 0
        original = Sam3Model.from_pretrained.__func__  # type: ignore[attr-defined]

        def counted(cls, *args, **kwargs):
            self.calls += 1
            return original(cls, *args, **kwargs)

        monkeypatch.setattr(Sam3Model, "from_pretrained", classmethod(counted))


def _materialize(instance: DagsterInstance, selection: list[str], config: dict | None = None):
    result = materialize(ASSETS, selection=selection, instance=instance, partition_key=CATEGORY,
                         resources=defs.resources, run_config=config or {})
    assert result.success
    return result


def _labels_jsonl(instance: DagsterInstance) -> None:
    assert materialize(LABELS_JSONL + ASSETS, selection=["labels_jsonl"], instance=instance,
                       resources=defs.resources).success


def _annotations(dataset: Path) -> dict[str, list[tuple]]:
    """file name -> its annotations (class, box, area, mask), over every split of the category."""
    out: dict[str, list[tuple]] = {}
    for split in ("train", "val", "test"):
        path = dataset / "coco" / CATEGORY / f"{split}.json"
        if not path.exists():
            continue
        coco = json.loads(path.read_text())
        files = {im["id"]: im["file_name"] for im in coco["images"]}
        for ann in coco["annotations"]:
            out.setdefault(files[ann["image_id"]], []).append(
                (ann["id"], ann["category_id"], ann["bbox"], ann["area"], json.dumps(ann["segmentation"])))
    return {k: sorted(v) for k, v in out.items()}


def _tick(instance: DagsterInstance, cursor: str | None):
    with build_sensor_context(instance=instance, cursor=cursor,
                              resources={"dataset": defs.resources["dataset"]}) as context:
        return thresholds_sensor(context)


def _jsonl(dataset: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "labeler"}
            for line in (dataset / "labels.jsonl").read_text().splitlines()]


@pytest.fixture
def env(tmp_path, sample, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("GRABBY_WORKDIR", str(sample[0]))
    monkeypatch.setenv("MODEL_CACHE", str(tiny_model_dir))
    return tmp_path


def _dataset(env: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    dataset = env / name
    write_demo_spec(dataset)
    monkeypatch.setenv("DATASET_DIR", str(dataset))
    return dataset


def test_a_threshold_change_recurates_without_the_model_to_what_labelling_at_it_gives(env, instance, monkeypatch):
    loads = CountingLoads(monkeypatch)
    instance.add_dynamic_partitions("category", [CATEGORY])

    # the reference: labelled with the floor at the new threshold, i.e. what labelling at it used to keep
    reference = _dataset(env, "reference", monkeypatch)
    (reference / "sam-queries.yaml").write_text((reference / "sam-queries.yaml").read_text()
                                                + f"_threshold: {NEW_THRESHOLD}\n")
    _materialize(instance, ["ingress_frames", "deduped_images", "sam3_labels", "curated_coco"],
                 {"ops": {"sam3_labels": {"config": {"candidate_floor": NEW_THRESHOLD}}}})
    _labels_jsonl(instance)

    # ours: candidates at the default floor, curated at the default threshold (0.5), then the threshold moves
    dataset = _dataset(env, "dataset", monkeypatch)
    _materialize(instance, ["ingress_frames", "deduped_images", "sam3_labels", "curated_coco"])
    candidates = pd.read_parquet(table_path(dataset, "sam3_labels", CATEGORY))
    scores = [i["score"] for blob in candidates.instances for i in json.loads(blob)]
    assert min(scores) < 0.5 < NEW_THRESHOLD < max(scores), "the candidates should span both thresholds"
    before = _annotations(dataset)
    labelled_with = loads.calls
    assert labelled_with >= 1  # the resource keeps a loaded model for the process: one load may serve both

    queries = dataset / "sam-queries.yaml"
    queries.write_text(queries.read_text() + f"_threshold: {NEW_THRESHOLD}\n")
    monkeypatch.setenv("MODEL_CACHE", str(env / "no-model-here"))  # a model load would fail, not only count
    requested = _tick(instance, None)
    assert [r.partition_key for r in requested.run_requests] == [CATEGORY]
    job = defs.resolve_job_def("recurate")
    for request in requested.run_requests:
        assert job.execute_in_process(instance=instance, partition_key=request.partition_key, tags=request.tags).success
    _labels_jsonl(instance)
    assert loads.calls == labelled_with, "re-curating must not load the model"

    after = _annotations(dataset)
    assert 0 < sum(map(len, after.values())) < sum(map(len, before.values()))
    assert after == _annotations(reference)
    assert _jsonl(dataset) == _jsonl(reference)
    # the next tick: every category is curated with today's selection
    again = _tick(instance, requested.cursor)
    assert not again.run_requests


def test_curated_coco_records_the_thresholds_it_applied(env, instance, monkeypatch):
    dataset = _dataset(env, "dataset", monkeypatch)
    instance.add_dynamic_partitions("category", [CATEGORY])
    queries = dataset / "sam-queries.yaml"
    queries.write_text(queries.read_text().replace('car: "car"', "car: {query: car, threshold: 0.55}"))
    result = _materialize(instance, ["ingress_frames", "deduped_images", "sam3_labels", "curated_coco"])
    meta = result.asset_materializations_for_node("curated_coco")[0].metadata
    assert meta["thresholds"].value == {"default": 0.5, "car": 0.55}
    assert meta["selection_fingerprint"].value
    shutil.rmtree(dataset / "coco")
