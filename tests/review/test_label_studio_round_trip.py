"""The review round trip through a running Label Studio: send, complete as an annotator, pull, curate, export.

Slow: it starts Label Studio (about a minute) and runs one demo category through the tiny SAM3.
"""

import json
import shutil
import time
import uuid

import pandas as pd
import pytest
from dagster import DagsterInstance, build_sensor_context, materialize

from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.dataset.spec import load_spec
from samantics_dagster.core.dataset.tables import write_table
from samantics_dagster.core.label.candidates import shown_table
from samantics_dagster.core.label.taxonomy import dataset_selection
from samantics_dagster.core.review.client import LabelStudioClient, LabelStudioUnreachable
from samantics_dagster.core.review.convert import ACCEPT_NAME, NEAR_MISS_NAME
from samantics_dagster.core.review.loop import ensure_project, send_frames
from samantics_dagster.core.review.near_miss import RECORDS_KEY, near_misses
from samantics_dagster.core.review.triage import triage_frames
from samantics_dagster.core.workdir.catalog import list_categories
from samantics_dagster.definitions import defs
from samantics_dagster.defs.partitions import category_partitions
from samantics_dagster.defs.review.resources import LabelStudioResource
from samantics_dagster.defs.review.review_sensor import label_studio_review_sensor
from samantics_dagster.defs.review.review_tasks import ReviewTasksConfig
from samantics_dagster.demo.spec import write_demo_spec
from tests.deploy.stack import REPO
from tests.review.label_studio import ready

pytestmark = pytest.mark.slow
SEND_ALL = {"audit_share": 1.0, "max_tasks": 500}  # the audit share alone picks every frame


@pytest.fixture(scope="module")
def labelled(sample, tiny_model_dir, tmp_path_factory):
    """One demo category through category_pipeline once; each test gets a copy."""
    workdir, _ = sample
    root = tmp_path_factory.mktemp("review-built")
    write_demo_spec(root / "dataset")
    (root / "home").mkdir()
    shutil.copyfile(REPO / "dagster.yaml", root / "home" / "dagster.yaml")
    category = list_categories(workdir)[0]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATASET_DIR", str(root / "dataset"))
        mp.setenv("GRABBY_WORKDIR", str(workdir))
        mp.setenv("MODEL_CACHE", str(tiny_model_dir))
        with DagsterInstance.from_config(str(root / "home")) as instance:
            instance.add_dynamic_partitions(category_partitions.name, [category])
            assert defs.resolve_job_def("category_pipeline").execute_in_process(instance=instance, partition_key=category).success
    return root, category


@pytest.fixture
def review(label_studio_server, labelled, sample, tiny_model_dir, tmp_path, monkeypatch):
    root, category = labelled
    ready(label_studio_server)
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    for k, v in {"DATASET_DIR": copy / "dataset", "GRABBY_WORKDIR": sample[0], "MODEL_CACHE": tiny_model_dir}.items():
        monkeypatch.setenv(k, str(v))
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio_server.pat)
    ls = LabelStudioResource(url=label_studio_server.url, api_key=label_studio_server.pat,
                             project_prefix=f"t-{uuid.uuid4().hex[:6]}", document_root=str(label_studio_server.document_root))
    with DagsterInstance.from_config(str(copy / "home")) as instance:
        yield copy / "dataset", category, instance, ls, label_studio_server


def _run(instance, keys, category, ls, run_config=None, raise_on_error=True):
    return materialize(list(defs.assets), selection=keys, instance=instance, partition_key=category,
                       resources={**defs.resources, "label_studio": ls}, run_config=run_config or {},
                       raise_on_error=raise_on_error)


def _meta(result, key):
    return {k: v.value for k, v in result.asset_materializations_for_node(key)[0].metadata.items()}


def _annotate(server, task, spec_ids):
    """As a person in the editor: move the largest instance, delete another, draw a car, tick near miss 1.

    The editor copies every region of the prediction into the annotation (the near misses too) and saves a
    tick of a task-level box as a ``choices`` result of its own (id a fresh guid, origin manual)."""
    regions = json.loads(json.dumps(task["predictions"][0]["result"]))
    parts: dict[str, list[dict]] = {}
    for r in regions:
        if r["from_name"] == "label":
            parts.setdefault(r["id"].split("p")[0], []).append(r)
    keys = sorted(parts, key=lambda k: -sum(len(r["value"]["points"]) for r in parts[k]))
    moved, deleted = keys[0], keys[1]
    result = []
    for k, rs in parts.items():
        if k == deleted:
            continue
        for r in rs:
            if k == moved:
                r["value"]["points"] = [[min(100.0, x + 1.0), y] for x, y in r["value"]["points"]]
            result.append({key: r[key] for key in ("id", "from_name", "to_name", "type", "original_width",
                                                     "original_height", "image_rotation", "value")})
    result.append({"id": "drawn1", "from_name": "label", "to_name": "image", "type": "polygonlabels",
                   "original_width": regions[0]["original_width"], "original_height": regions[0]["original_height"],
                   "image_rotation": 0, "value": {"points": [[60, 60], [90, 60], [90, 90], [60, 90]], "closed": True,
                                                  "polygonlabels": ["car"]}})
    result += [{key: r[key] for key in ("id", "from_name", "to_name", "type", "original_width", "original_height",
                                        "image_rotation", "value")} for r in regions if r["from_name"] == NEAR_MISS_NAME]
    result.append({"id": "Qx7Lm2Pa0k", "type": "choices", "value": {"choices": ["n0"]}, "origin": "manual",
                   "to_name": "image", "from_name": ACCEPT_NAME})
    server.api("POST", f"/api/tasks/{task['id']}/annotations/", json={"result": result, "was_cancelled": False})
    return int(moved[1:]), int(deleted[1:])


def test_round_trip_sent_completed_pulled_curated_and_exported(review):
    dataset, category, instance, ls, server = review
    assert server.listening_on() == {"0100007F"}  # 127.0.0.1 only
    layout = DatasetLayout(dataset)
    first = _run(instance, ["review_tasks"], category, ls, {"ops": {"review_tasks": {"config": SEND_ALL}}})
    meta = _meta(first, "review_tasks")
    tasks = pd.read_parquet(layout.table("review_tasks", category))
    done = pd.read_parquet(layout.table("sam3_labels", category)).query("status == 'done'")
    assert meta["sent_this_run"] == len(tasks) == meta["triaged"] == len(done) > 6
    assert tasks["task_id"].is_unique and meta["project_created"] and set(tasks["dhash"]) == set(done["dhash"])
    assert ls.api_key not in json.dumps({k: str(v) for k, v in meta.items()})
    # a second send sends nothing
    again = _meta(_run(instance, ["review_tasks"], category, ls, {"ops": {"review_tasks": {"config": SEND_ALL}}}), "review_tasks")
    assert again["sent_this_run"] == 0 and again["adopted"] == 0
    pd.testing.assert_frame_equal(tasks, pd.read_parquet(layout.table("review_tasks", category)))
    project = int(tasks["project_id"][0])
    ls_tasks = server.api("GET", "/api/tasks/", params={"project": project, "page_size": 100, "fields": "all"}).json()["tasks"]
    assert sorted(t["id"] for t in ls_tasks) == sorted(tasks["task_id"])
    # the image is served by Label Studio's local-files storage from the image store
    # sam3_labels holds candidates; the tasks show what passes today's thresholds
    labels = shown_table(pd.read_parquet(layout.table("sam3_labels", category)), dataset_selection(layout)).set_index("dhash")
    full = [server.api("GET", f"/api/tasks/{t['id']}/").json() for t in ls_tasks]
    candidates = pd.read_parquet(layout.table("sam3_labels", category)).set_index("dhash")["instances"]
    settings = ReviewTasksConfig().near_misses()
    for t in full:  # the pre-annotations are what passes; the near misses ride beside them, as chosen
        pre = t["predictions"][0]["result"]
        assert len({r["id"].split("p")[0] for r in pre if r["from_name"] == "label"}) == labels.loc[t["data"]["dhash"], "n_instances"]
        near = near_misses(json.loads(candidates[t["data"]["dhash"]]), dataset_selection(layout), settings)
        assert [m["candidate"] for m in t["data"][RECORDS_KEY]] == [m.candidate for m in near]
        assert len({r["id"].split("p")[0] for r in pre if r["from_name"] == NEAR_MISS_NAME}) == len(near)
    assert meta["near_misses_sent"] == sum(len(t["data"][RECORDS_KEY]) for t in full) > 0
    rich = [t for t in full if labels.loc[t["data"]["dhash"], "n_instances"] >= 2 and len(t["data"][RECORDS_KEY]) >= 2]
    assert rich, "no sent frame has two instances to edit and two near misses"
    task = rich[0]
    ticked, left = task["data"][RECORDS_KEY][:2]
    assert task["data"]["image"].startswith("/data/local-files/?d=")
    assert server.api("GET", task["data"]["image"]).content == layout.image(task["data"]["dhash"]).read_bytes()
    spec = json.loads(layout.spec.read_text())
    ids = {c["name"]: c["id"] for c in spec["categories"]}
    with build_sensor_context(instance=instance, resources={"dataset": defs.resources["dataset"], "label_studio": ls}) as context:
        assert not label_studio_review_sensor(context).run_requests  # nothing completed yet
        moved, deleted = _annotate(server, task, ids)
        # the sensor sees the completed task: one review_pull run for the category, and none on the next tick
        tick = label_studio_review_sensor(context)
        assert [r.partition_key for r in tick.run_requests] == [category]
        context.update_cursor(tick.cursor)
        assert not label_studio_review_sensor(context).run_requests

    pulled = _run(instance, ["reviewed_labels", "curated_coco"], category, ls)
    pmeta = _meta(pulled, "reviewed_labels")
    reviewed = pd.read_parquet(layout.table("reviewed_labels", category))
    assert len(reviewed) == 1 and pmeta["reviewed"] == 1 and pmeta["new_or_changed"] == 1
    assert pmeta["near_misses"] == {"shown": len(task["data"][RECORDS_KEY]), "accepted": 1}
    row = reviewed.iloc[0]
    assert row["dhash"] == task["data"]["dhash"] and row["labeler"] == "human:reviewer@example.com"
    sam = json.loads(labels.loc[row["dhash"], "instances"])
    human = json.loads(row["instances"])
    assert len(human) == len(sam) + 1  # one deleted, one drawn, one near miss accepted
    near = json.loads(candidates[row["dhash"]])
    accepted = {**near[ticked["candidate"]], "category_id": ticked["category_id"]}
    assert accepted in human and accepted["score"] == pytest.approx(ticked["score"], abs=1e-5)  # SAM3's exact candidate
    assert near[left["candidate"]]["rle"] not in [h["rle"] for h in human]  # left alone: rejected
    agreement = pd.read_parquet(layout.table("review_agreement", category))
    by_sam = agreement.set_index("sam_index")
    assert by_sam.loc[deleted, "outcome"] == "deleted"
    assert by_sam.loc[moved, "outcome"] == "matched" and 0.3 < by_sam.loc[moved, "iou"] < 1.0
    added = agreement[agreement["outcome"] == "added"]  # the drawn car, and the near miss SAM3 did not keep
    assert sorted(added["human_class"].astype(int)) == sorted([ids["car"], ticked["category_id"]])
    others = agreement[agreement["sam_index"].notna() & ~agreement["sam_index"].isin([moved, deleted])]
    assert (others["outcome"] == "matched").all() and (others["iou"] == 1.0).all()
    per_class = pmeta["agreement_per_class"]
    assert per_class["car"]["added"] >= 1 and sum(v["deleted"] for v in per_class.values()) == 1

    # curated_coco and the merged export carry the person's version of that frame
    export = defs.resolve_job_def("coco_export").execute_in_process(instance=instance)
    assert export.success
    curated = pd.read_parquet(layout.table("curated_coco", category)).set_index("dhash")
    assert curated.loc[row["dhash"], "status"] == "included"
    split = curated.loc[row["dhash"], "split"]
    for path in (layout.coco_category(category, split), layout.coco_merged(split)):
        coco = json.loads(path.read_text())
        image = [im for im in coco["images"] if row["dhash"] in im["file_name"]]
        assert len(image) == 1, path
        anns = [a for a in coco["annotations"] if a["image_id"] == image[0]["id"]]
        assert len(anns) == len(human), path
        drawn = [a for a in anns if a["category_id"] == ids["car"] and a.get("score", 1.0) == 1.0
                 and a["bbox"][0] >= 0.55 * image[0]["width"]]
        assert drawn, f"{path}: the car the person drew is missing"
        assert [a for a in anns if a["category_id"] == accepted["category_id"] and a["area"] == pytest.approx(accepted["area"])
                and a.get("score") == pytest.approx(accepted["score"], abs=1e-4)], f"{path}: the accepted near miss is missing"
    # pulling again changes nothing
    assert _meta(_run(instance, ["reviewed_labels"], category, ls), "reviewed_labels")["new_or_changed"] == 0


def test_deleted_project_is_a_clear_error_and_recreate_resumes(review):
    dataset, category, instance, ls, server = review
    layout = DatasetLayout(dataset)
    _run(instance, ["review_tasks"], category, ls, {"ops": {"review_tasks": {"config": {**SEND_ALL, "max_tasks": 2}}}})
    before = pd.read_parquet(layout.table("review_tasks", category))
    # a project made before near misses were sent gets their controls on the next send
    config = server.api("GET", f"/api/projects/{int(before['project_id'][0])}/").json()["label_config"]
    older = config.split("  <Header")[0] + "</View>"
    server.api("PATCH", f"/api/projects/{int(before['project_id'][0])}/", json={"label_config": older})
    _run(instance, ["review_tasks"], category, ls, {"ops": {"review_tasks": {"config": {**SEND_ALL, "max_tasks": 0}}}})
    assert server.api("GET", f"/api/projects/{int(before['project_id'][0])}/").json()["label_config"] == config != older
    server.api("DELETE", f"/api/projects/{int(before['project_id'][0])}/")
    failed = _run(instance, ["review_tasks"], category, ls, {"ops": {"review_tasks": {"config": SEND_ALL}}}, raise_on_error=False)
    assert not failed.success
    error = str(failed.get_step_failure_events()[0].event_specific_data.error)
    assert "no longer exists" in error and "recreate_project: true" in error and ls.api_key not in error
    pd.testing.assert_frame_equal(before, pd.read_parquet(layout.table("review_tasks", category)))  # nothing lost
    redo = _meta(_run(instance, ["review_tasks"], category, ls,
                      {"ops": {"review_tasks": {"config": {**SEND_ALL, "recreate_project": True}}}}), "review_tasks")
    assert redo["project_created"] and redo["sent_this_run"] == redo["triaged"] > len(before)


def _kept(task):
    """A person's annotation that keeps SAM3's regions as they were sent."""
    return [{k: r[k] for k in ("id", "from_name", "to_name", "type", "original_width", "original_height",
                               "image_rotation", "value")} for r in task["predictions"][0]["result"]]


def test_several_people_agreement_consensus_and_low_agreement_sent_back(review):
    """Two people created through the API annotate the audit tasks (completed_by); their agreement, the
    consensus, each person's rows, a disagreement sent back for a third person, and the export carrying the
    consensus of three."""
    dataset, category, instance, ls, server = review
    layout = DatasetLayout(dataset)
    sent = _meta(_run(instance, ["review_tasks"], category, ls,
                      {"ops": {"review_tasks": {"config": {**SEND_ALL, "max_tasks": 3}}}}), "review_tasks")
    tasks = pd.read_parquet(layout.table("review_tasks", category))
    assert sent["overlap_raised"] == 3 and tasks["audit"].all() and (tasks["annotators_wanted"] == 2).all()
    project = int(tasks["project_id"][0])
    assert server.api("GET", f"/api/projects/{project}/").json()["maximum_annotations"] == 1  # the non-audit share
    live = {t["id"]: t for t in server.api("GET", "/api/tasks/", params={"project": project, "page_size": 100}).json()["tasks"]}
    assert {live[int(t)]["overlap"] for t in tasks["task_id"]} == {2}
    # sam3_labels holds candidates; the tasks show what passes today's thresholds
    labels = shown_table(pd.read_parquet(layout.table("sam3_labels", category)), dataset_selection(layout)).set_index("dhash")
    full = [server.api("GET", f"/api/tasks/{int(t)}/").json() for t in tasks["task_id"]]
    rich = [t for t in full if labels.loc[t["data"]["dhash"], "n_instances"] >= 1][:2]
    assert len(rich) == 2, "two sent frames with SAM3 instances are needed"
    agree, differ = rich
    tag = uuid.uuid4().hex[:6]
    users = [server.api("POST", "/api/users/", json={"email": f"p{k}-{tag}@example.com", "username": f"p{k}-{tag}"}).json()
             for k in (1, 2)]
    p1, p2 = (u["id"] for u in users)
    car = {"id": "drawn", "from_name": "label", "to_name": "image", "type": "polygonlabels",
           "original_width": agree["predictions"][0]["result"][0]["original_width"],
           "original_height": agree["predictions"][0]["result"][0]["original_height"], "image_rotation": 0,
           "value": {"points": [[1, 1], [6, 1], [6, 6], [1, 6]], "closed": True, "polygonlabels": ["car"]}}

    def annotate(task, result, who=None, cancelled=False):
        body = {"result": result, "was_cancelled": cancelled, **({"completed_by": who} if who else {})}
        server.api("POST", f"/api/tasks/{task['id']}/annotations/", json=body)

    annotate(agree, _kept(agree), p1)
    annotate(agree, _kept(agree), p2)
    annotate(agree, [], cancelled=True)  # skipped by the admin: left out
    annotate(differ, _kept(differ), p1)
    annotate(differ, [car], p2)  # deletes every SAM3 region, draws a car elsewhere

    pulled = _meta(_run(instance, ["reviewed_labels"], category, ls), "reviewed_labels")
    reviewed = pd.read_parquet(layout.table("reviewed_labels", category)).set_index("task_id")
    people = pd.read_parquet(layout.table("review_annotations", category))
    assert len(reviewed) == 2 and (reviewed["n_annotators"] == 2).all() and len(people) == 4
    assert set(people["annotator"]) == {f"p1-{tag}@example.com", f"p2-{tag}@example.com"}
    a, d = reviewed.loc[agree["id"]], reviewed.loc[differ["id"]]
    first = people[people["annotator"] == f"p1-{tag}@example.com"].set_index("task_id")["instances"]
    assert a["people_agreement"] == 1.0 and a["consensus"] == "best" and a["sam_agreement"] > 0.5
    assert a["instances"] == first.loc[agree["id"]]  # both kept SAM3's regions: either is the consensus
    assert d["people_agreement"] < 0.6 and d["asked_again"] == 3 and pulled["sent_back_this_pull"] == {str(differ["id"]): 3}
    back = server.api("GET", f"/api/tasks/{differ['id']}/").json()
    assert back["overlap"] == 3 and back["is_labeled"] is False  # in the queue again, for a third person
    assert people.set_index("annotation_id")["agreement_people"].loc[
        people[people["task_id"] == agree["id"]]["annotation_id"]].eq(1.0).all()
    per_class = {r["class"]: r for r in pulled["people_vs_sam3_per_class_json"]}
    assert per_class and all(r["frames_several_people"] >= 1 for r in per_class.values() if r["people_agreement"] is not None)
    assert "presence_kappa" in next(iter(per_class.values()))
    assert all(f"p{k}-{tag}@example.com" in pulled["annotators_agreement"] for k in (1, 2))
    assert [c.name for c in pulled["annotations_table_columns"].columns] == list(people.columns)
    # nothing new: nothing pulled twice, nothing asked twice
    again = _meta(_run(instance, ["reviewed_labels"], category, ls), "reviewed_labels")
    assert again["new_or_changed"] == 0 and again["sent_back_this_pull"] == {}

    annotate(differ, _kept(differ))  # the third person (the admin) sides with the first
    _run(instance, ["reviewed_labels", "curated_coco"], category, ls)
    d = pd.read_parquet(layout.table("reviewed_labels", category)).set_index("task_id").loc[differ["id"]]
    kept = json.loads(first.loc[differ["id"]])  # the first person's version, SAM3's regions
    assert kept and d["n_annotators"] == 3 and d["consensus"] == "majority" and json.loads(d["instances"]) == kept
    assert d["asked_again"] == 3  # three people is the cap: not asked again
    assert server.api("GET", f"/api/tasks/{differ['id']}/").json()["overlap"] == 3
    assert defs.resolve_job_def("coco_export").execute_in_process(instance=instance).success
    curated = pd.read_parquet(layout.table("curated_coco", category)).set_index("dhash")
    coco = json.loads(layout.coco_merged(curated.loc[d["dhash"], "split"]).read_text())
    image = [im for im in coco["images"] if d["dhash"] in im["file_name"]][0]
    anns = [x for x in coco["annotations"] if x["image_id"] == image["id"]]
    # the export carries the consensus (the majority's regions), not the second person's car
    assert sorted(round(x["area"]) for x in anns) == sorted(round(i["area"]) for i in kept)


def test_label_studio_stopped_mid_send_is_a_clear_error_and_the_next_run_resumes(review):
    """Last in the module: it stops the session's Label Studio and starts it again."""
    dataset, category, instance, ls, server = review
    layout = DatasetLayout(dataset)
    selection = dataset_selection(layout)
    labels = shown_table(pd.read_parquet(layout.table("sam3_labels", category)), selection)  # as review_tasks sends
    spec = json.loads(layout.spec.read_text())
    names = {c["id"]: c["name"] for c in spec["categories"]}
    chosen = triage_frames(labels, ReviewTasksConfig(**SEND_ALL).settings(load_spec(layout.spec), selection))[:4]
    path = layout.table("review_tasks", category)
    writes = []

    def write_then_stop(df):
        write_table(df, path)
        writes.append(len(df))
        if len(writes) == 1:
            server.stop()  # Label Studio goes away after the first batch is recorded

    with LabelStudioClient(ls.url, ls.api_key) as client:
        project, _, rows = ensure_project(client, ls.project_title(category), list(names.values()), None,
                                          ls.storage_path(dataset), False)
        with pytest.raises(LabelStudioUnreachable) as err:
            send_frames(client, project, category, chosen, labels, rows, names,
                        lambda d: ls.image_url(dataset, d), set(), 4, write_then_stop, batch=2)
    message = str(err.value)
    assert "unreachable" in message and "LABEL_STUDIO_URL" in message and ls.api_key not in message
    assert len(pd.read_parquet(path)) == 2  # the batch Label Studio accepted is recorded
    # through Dagster while it is down: the same clear error, the table untouched
    down = _run(instance, ["review_tasks"], category, ls, {"ops": {"review_tasks": {"config": {**SEND_ALL, "max_tasks": 4}}}},
                raise_on_error=False)
    assert not down.success and "unreachable" in str(down.get_step_failure_events()[0].event_specific_data.error)
    assert len(pd.read_parquet(path)) == 2
    t0 = time.monotonic()
    server.start()
    print(f"label studio restart: {time.monotonic() - t0:.1f}s")
    resumed = _meta(_run(instance, ["review_tasks"], category, ls,
                         {"ops": {"review_tasks": {"config": {**SEND_ALL, "max_tasks": 2}}}}), "review_tasks")
    table = pd.read_parquet(path)
    assert resumed["sent_this_run"] == 2 and len(table) == 4 and table["dhash"].is_unique
    assert set(table["dhash"]) == {t.dhash for t in chosen}  # the two left over, nothing twice
    with LabelStudioClient(ls.url, ls.api_key) as client:
        assert sorted(t["data"]["dhash"] for t in client.iter_tasks(project)) == sorted(table["dhash"])
