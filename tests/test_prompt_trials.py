"""Prompt trials through Dagster with the tiny random SAM3: the job labels only the reviewed frames with each
phrasing, resumes at the (frame, phrasing) pair, and label_quality ranks the phrasings (`samantics prompts`)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from dagster import materialize

import samantics_dagster.core.label.detect as detect_module
import samantics_dagster.core.label.model as model
from samantics_dagster.cli.main import main
from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.dataset.schema import REVIEWED_LABELS, TableName
from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.dataset.tables import read_table, write_table
from samantics_dagster.core.label.masks import Instance
from samantics_dagster.core.label.pipeline import LabelSettings, make_segmenter
from samantics_dagster.core.label.taxonomy import RULES, dataset_selection, load_taxonomy
from samantics_dagster.core.label.trials import label_trials, phrasing_labeler, trial_prompts
from samantics_dagster.core.quality.matching import evaluation_candidates
from samantics_dagster.definitions import defs

CATEGORY = "gym"
REVIEWED = 3
CAR = 3  # the demo spec's id
UPSTREAM = [a for a in defs.assets if a.key.path[-1] in ("ingress_frames", "deduped_images")]
QUERIES = """\
vehicle:
  car: {query: "car", alternatives: ["automobile", "red car"]}
  bicycle: "bicycle"
"""


class PairCount:
    """(image, phrasing) pairs through SAM3: wraps the production ``detect`` (the real tiny model runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pairs = 0
        original = detect_module.detect

        def counted(m, images, text, text_mask, **kwargs):
            self.pairs += len(images) * int(text_mask.shape[0])
            return original(m, images, text, text_mask, **kwargs)

        monkeypatch.setattr(detect_module, "detect", counted)


def _reviewed_rows(frames: pd.DataFrame, instances: dict[str, list[dict]] | None = None) -> pd.DataFrame:
    return REVIEWED_LABELS.frame([
        {"dhash": r.dhash, "rel_path": r.rel_path, "status": "reviewed", "task_id": k + 1, "annotator": "a@x",
         "labeler": "human:a@x", "n_instances": len((instances or {}).get(r.dhash, [])),
         "instances": json.dumps((instances or {}).get(r.dhash, [])), "width": r.width, "height": r.height,
         "n_annotators": 1, "consensus": "single"}
        for k, r in enumerate(frames.itertuples())])


@pytest.fixture(scope="module")
def deduped(tmp_path_factory, sample, tiny_model_dir):
    """The category ingested and deduped through Dagster once for the module (the tests copy it)."""
    from dagster import instance_for_test

    from samantics_dagster.demo.spec import write_demo_spec

    root = tmp_path_factory.mktemp("trials") / "dataset"
    write_demo_spec(root)
    with pytest.MonkeyPatch.context() as mp, instance_for_test() as instance:
        mp.setenv("DATASET_DIR", str(root))
        mp.setenv("GRABBY_WORKDIR", str(sample[0]))
        mp.setenv("MODEL_CACHE", str(tiny_model_dir))
        instance.add_dynamic_partitions("category", [CATEGORY])
        assert materialize(UPSTREAM, instance=instance, partition_key=CATEGORY, resources=defs.resources).success
    shutil.rmtree(DatasetLayout(root).locks, ignore_errors=True)
    return root


@pytest.fixture
def reviewed(deduped, dataset_env, instance):
    """A copy of the deduped category with three of its accepted frames reviewed (the rest not)."""
    shutil.rmtree(dataset_env)
    shutil.copytree(deduped, dataset_env)
    layout = DatasetLayout(dataset_env)
    layout.queries.write_text(QUERIES)
    instance.add_dynamic_partitions("category", [CATEGORY])
    deduped_table = read_table(layout.table(TableName.DEDUPED_IMAGES, CATEGORY))
    accepted = deduped_table[deduped_table.status == "accepted"].sort_values("dhash")
    assert len(accepted) > REVIEWED, "some accepted frames must stay unreviewed"
    frames = accepted.head(REVIEWED)
    write_table(_reviewed_rows(frames), layout.table(TableName.REVIEWED_LABELS, CATEGORY))
    return layout, frames


def _trials(instance):
    result = defs.resolve_job_def("prompt_trials_job").execute_in_process(instance=instance, partition_key=CATEGORY)
    assert result.success
    return {k: v.value for k, v in result.asset_materializations_for_node("prompt_trials")[0].metadata.items()}


def test_the_job_labels_only_reviewed_frames_with_each_phrasing_and_resumes_by_pair(reviewed, instance, monkeypatch):
    layout, frames = reviewed
    count = PairCount(monkeypatch)
    meta = _trials(instance)
    assert count.pairs == REVIEWED * 3 == meta["labelled_pairs"]  # car, automobile, red car; bicycle lists none
    table = read_table(layout.table(TableName.PROMPT_TRIALS, CATEGORY))
    assert set(table.dhash) == set(frames.dhash) and len(table) == REVIEWED * 3
    assert set(zip(table.category_id, table.prompt)) == {(CAR, "car"), (CAR, "automobile"), (CAR, "red car")}
    assert (table.status == "done").all() and table.n_instances.sum() > 0
    assert table.labeler.nunique() == 3, "the phrasing is part of the labeler"
    assert meta["phrasings"] == {"car": ["car", "automobile", "red car"]} and meta["reviewed_frames"] == REVIEWED

    meta = _trials(instance)  # nothing new: nothing through the model
    assert count.pairs == REVIEWED * 3 and meta["labelled_pairs"] == 0 and meta["reused_pairs"] == REVIEWED * 3
    assert read_table(layout.table(TableName.PROMPT_TRIALS, CATEGORY)).equals(table)

    layout.queries.write_text(QUERIES.replace('"red car"]', '"red car", "sedan"]'))  # one more phrasing
    meta = _trials(instance)
    assert count.pairs == REVIEWED * 4 and meta["labelled_pairs"] == REVIEWED
    assert len(read_table(layout.table(TableName.PROMPT_TRIALS, CATEGORY))) == REVIEWED * 4


class Killed(BaseException):
    """Not an ``Exception``: the stages' fallbacks (a failed batch retried image by image) must not catch it,
    as nothing in a killed process runs on."""


def test_a_run_stopped_after_its_first_part_resumes_with_the_pairs_it_lacks(reviewed, tiny_model_dir, monkeypatch):
    """The labelling stops dead once its first batch's part is on disk (as the SIGKILL test of sam3_labels
    stops it); the next run keeps that part and labels the other frames only."""
    import torch

    torch.set_num_threads(1)
    layout, frames = reviewed
    taxonomy = load_taxonomy(layout, RULES)
    prompts, _ = trial_prompts(taxonomy.queries, {"car": ["automobile", "red car"]})
    loaded = model.load_sam3(tiny_model_dir, device="cpu")
    settings = LabelSettings(image_batch=1)
    count = PairCount(monkeypatch)
    path = layout.table(TableName.PROMPT_TRIALS, CATEGORY)

    def run(after_part=None, frames=frames):
        return label_trials(frames, prompts, ImageStore(layout.root),
                            lambda q: make_segmenter(loaded, q, taxonomy.spec, settings), phrasing_labeler(settings, loaded.fingerprint, loaded.precision),
                            table_path=path, image_batch=1, post_workers=0, after_part=after_part)

    def stop(n: int) -> None:
        raise Killed(n)

    with pytest.raises(Killed):
        run(stop)
    assert not path.exists() and len(list(layout.trial_parts(CATEGORY).glob("part-*.parquet"))) >= 1
    assert count.pairs == 3  # one frame, three phrasings
    result = run()
    assert count.pairs == 3 + (REVIEWED - 1) * 3 and result.labelled_pairs == (REVIEWED - 1) * 3
    assert result.reused_pairs == 3 and len(result.table) == REVIEWED * 3
    assert not list(layout.trial_parts(CATEGORY).glob("part-*.parquet"))

    # a reviewed frame whose image is gone: its pairs fail with the file named, the others stand, no model call
    ghost = pd.DataFrame([{"dhash": "f" * 16, "rel_path": "youtube/gym/ghost_0.jpg"}])
    result = run(frames=pd.concat([frames[["dhash", "rel_path"]], ghost]))
    failed = result.table[result.table.status == "failed"]
    assert list(failed.dhash) == ["f" * 16] * 3 and failed.error.str.contains(f"images/{'f' * 16}.jpg").all()
    assert result.labelled_pairs == 3 and result.reused_pairs == REVIEWED * 3 and count.pairs == REVIEWED * 3


def test_label_quality_ranks_the_phrasing_the_reviews_agree_with_first(reviewed, instance, capsys):
    """Reviewed labels equal to what "automobile" finds: it ranks first for car with F1 1.0, above the query.

    The tiny random model's masks barely depend on the words (its phrasings' boxes overlap by more than 0.5), so
    a reviewed object counts as found only by the very mask (``iou_min`` 0.99): the phrasings then differ."""
    layout, frames = reviewed
    _trials(instance)
    trials = read_table(layout.table(TableName.PROMPT_TRIALS, CATEGORY))
    selection = dataset_selection(layout)
    truth = {}
    for row in trials[trials.prompt == "automobile"].itertuples():
        found = evaluation_candidates([Instance.from_record(r) for r in json.loads(row.instances)], selection)
        truth[row.dhash] = [i.to_record() for i in found if i.area > 0]
    assert sum(map(len, truth.values())) > 0
    write_table(_reviewed_rows(frames, truth), layout.table(TableName.REVIEWED_LABELS, CATEGORY))

    result = materialize(list(defs.assets), selection=["label_quality"], instance=instance, resources=defs.resources,
                         run_config={"ops": {"label_quality": {"config": {"suggest_from": "all", "resamples": 50, "iou_min": 0.99}}}})
    assert result.success
    meta = result.asset_materializations_for_node("label_quality")[0].metadata
    ranking = meta["prompt_ranking"].value
    assert [c.name for c in ranking.schema.columns][:3] == ["class", "rank", "prompt"]
    rows = [r.data for r in ranking.records]
    assert [(r["rank"], r["prompt"]) for r in rows] == [(1, "automobile"), (2, rows[1]["prompt"]), (3, rows[2]["prompt"])]
    top = rows[0]
    assert top["f1"] == 1.0 and top["frames"] == REVIEWED and top["reviewed"] == sum(map(len, truth.values()))
    assert top["best_threshold"] < min(i["score"] for found in truth.values() for i in found) and not top["current"]
    assert all(r["f1"] < 1.0 for r in rows[1:]) and any(r["current"] for r in rows[1:]), rows
    report = json.loads(layout.label_quality.read_text())
    assert report["prompts"][0]["prompt"] == "automobile" and report["prompts"][0]["f1_interval"] == [1.0, 1.0]

    capsys.readouterr()
    assert main(["prompts", "--dataset-dir", str(layout.root)]) == 0
    out = capsys.readouterr().out
    assert "automobile" in out and "car (query)" in out and "'automobile' beats the query 'car'" in out
