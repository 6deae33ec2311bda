"""The click-to-mask ML backend (``samantics ml-backend``) against a real Label Studio and the tiny SAM3.

The backend runs as the CLI starts it (a process on a free port); Label Studio connects it through
``POST /api/ml`` (its own health and setup calls), and the clicks go through Label Studio's
``/api/ml/{id}/interactive-annotating``, the call its editor makes for a smart-tool click. Masks are
compared with ``Sam3TrackerModel`` run directly on the same prompt (pixels in, no cache).
"""

from __future__ import annotations

import os
import uuid

import httpx
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.label.masks import coco_rle
from samantics_dagster.core.review.client import LabelStudioClient
from samantics_dagster.core.review.convert import labeling_config, polygon_rle
from samantics_dagster.core.review_backend.connect import connect_backend
from tests.review.label_studio import ready
from tests.review.ml_backend import NAMES, NO_NEAR_MISS, H, W, start_backend, stop, wait_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(label_studio_server, ml_store, ml_backend):
    """A review-style project (the review loop's own labeling config), its tasks, and the backend connected."""
    server = ready(label_studio_server)
    dataset, images = ml_store
    client = LabelStudioClient(server.url, server.pat)
    p = client.create_project(f"mlb-{uuid.uuid4().hex[:6]}", labeling_config(NAMES))
    client.add_local_storage(int(p["id"]), str(DatasetLayout(dataset).images), "image store")
    rel = {d: os.path.relpath(DatasetLayout(dataset).image(d), server.document_root) for d in images}
    ids = client.import_tasks(int(p["id"]), [{"data": {"image": f"/data/local-files/?d={rel[d]}", "dhash": d,
                                                       **NO_NEAR_MISS}} for d in images])
    missing = client.import_tasks(int(p["id"]), [{"data": {"image": "/data/local-files/?d=nowhere/x.jpg",
                                                           "dhash": "ffffffffffffffff", **NO_NEAR_MISS}}])
    wait_model(ml_backend[0])
    yield client, int(p["id"]), dict(zip(images, ids)), missing[0], server
    client.close()


def _interactive(server, backend_id: int, task_id: int, context) -> dict:
    return server.api("POST", f"/api/ml/{backend_id}/interactive-annotating",
                      json={"task": task_id, "context": context}).json()


def _point(x: float, y: float, label: str = "car", positive: bool = True) -> dict:
    return {"id": uuid.uuid4().hex[:8], "type": "keypointlabels", "from_name": "smart_point", "to_name": "image",
            "original_width": W, "original_height": H, "image_rotation": 0, "is_positive": positive,
            "value": {"x": x, "y": y, "width": 0.6, "keypointlabels": [label]}}


def _box(x: float, y: float, w: float, h: float, label: str = "person") -> dict:
    return {"id": uuid.uuid4().hex[:8], "type": "rectanglelabels", "from_name": "smart_box", "to_name": "image",
            "original_width": W, "original_height": H, "image_rotation": 0,
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]}}


def _direct(model_dir, image, **prompt) -> np.ndarray:
    """What Sam3TrackerModel gives for the prompt with no backend and no cache: pixels in, masks out."""
    from transformers import Sam3TrackerModel, Sam3TrackerProcessor

    model = Sam3TrackerModel.from_pretrained(model_dir, local_files_only=True).eval()
    processor = Sam3TrackerProcessor.from_pretrained(model_dir, local_files_only=True)
    inputs = processor(images=image, return_tensors="pt", **prompt)
    multimask = "input_boxes" not in prompt and len(prompt["input_points"][0][0]) == 1
    with torch.inference_mode():
        out = model(**inputs, multimask_output=multimask)
    best = int(torch.argmax(out.iou_scores[0, 0])) if multimask else 0
    return processor.post_process_masks(out.pred_masks[:, :, best:best + 1], inputs["original_sizes"])[0][0, 0].numpy()


def _mask(data: dict) -> np.ndarray:
    return mask_utils.decode(coco_rle(data["rle"])).astype(bool)


def test_connected_through_label_studio_and_a_click_returns_the_trackers_mask_as_a_polygon(project, ml_backend,
                                                                                          tiny_model_dir, ml_store):
    client, project_id, tasks, _, server = project
    before = client.project(project_id).get("model_version") or ""
    conn = connect_backend(client, project_id, ml_backend[0])
    assert conn.status == "connected", conn
    ml = server.api("GET", f"/api/ml/{conn.backend_id}").json()  # Label Studio re-runs health + setup here
    assert ml["is_interactive"] and ml["readable_state"] == "Connected", ml
    assert (client.project(project_id).get("model_version") or "") == before  # SAM3's predictions stay shown
    assert connect_backend(client, project_id, ml_backend[0]).status == "present"

    dhash, image = next(iter(ml_store[1].items()))
    cache0 = httpx.get(f"{ml_backend[0]}/health").json()["cache"]  # the session's backend: other tests click too
    click = _interactive(server, conn.backend_id, tasks[dhash], {"result": [_point(40.0, 35.0)]})
    assert "errors" not in click, click
    data = click["data"]
    (region,) = data["result"]
    assert region["type"] == "polygonlabels" and region["from_name"] == "label" and region["to_name"] == "image"
    assert region["value"]["polygonlabels"] == ["car"] and len(region["value"]["points"]) >= 3
    assert not data["cached_embedding"]
    expected = _direct(tiny_model_dir, image, input_points=[[[[0.40 * W, 0.35 * H]]]], input_labels=[[[1]]])
    assert expected.any() and np.array_equal(_mask(data), expected)
    # the polygon is the mask, as the review loop rasterises it when the reviewer keeps it
    back = mask_utils.decode(coco_rle(polygon_rle([region["value"]["points"]], W, H))).astype(bool)
    # (the tiny random model's masks are scattered blobs, so the tracer drops pieces: the fidelity on real
    # shapes is tested in test_ml_backend_core)
    assert (back & expected).sum() / (back | expected).sum() == pytest.approx(data["polygon_iou"], abs=1e-3)

    # the same click again: the embedding comes from the cache, the mask is the same
    again = _interactive(server, conn.backend_id, tasks[dhash], {"result": [_point(40.0, 35.0)]})["data"]
    assert again["cached_embedding"] and np.array_equal(_mask(again), expected)

    # a positive and a negative point make one mask of one object (single-mask output)
    two = _interactive(server, conn.backend_id, tasks[dhash],
                       {"result": [_point(40.0, 35.0), _point(70.0, 60.0, positive=False)]})["data"]
    expected_two = _direct(tiny_model_dir, image, input_points=[[[[0.40 * W, 0.35 * H], [0.70 * W, 0.60 * H]]]],
                           input_labels=[[[1, 0]]])
    assert two["cached_embedding"] and np.array_equal(_mask(two), expected_two)

    # a smart box
    box = _interactive(server, conn.backend_id, tasks[dhash], {"result": [_box(10.0, 20.0, 50.0, 60.0)]})["data"]
    expected_box = _direct(tiny_model_dir, image, input_boxes=[[[0.10 * W, 0.20 * H, 0.60 * W, 0.80 * H]]])
    assert np.array_equal(_mask(box), expected_box) and box["cached_embedding"]
    assert [r["value"]["polygonlabels"] for r in box["result"]] in ([["person"]], [])
    cache = httpx.get(f"{ml_backend[0]}/health").json()["cache"]
    assert cache["images"] - cache0["images"] == 1 and cache["misses"] - cache0["misses"] == 1
    assert cache["hits"] - cache0["hits"] >= 3 and cache["evictions"] == cache0["evictions"]


def test_bad_input_gets_a_clear_answer_and_the_backend_keeps_serving(project, ml_backend):
    client, project_id, tasks, missing_task, server = project
    conn = connect_backend(client, project_id, ml_backend[0])
    dhash = next(iter(tasks))
    cases = {
        "outside the image": {"result": [_point(130.0, 20.0)]},
        "empty context": {"result": []},
        "mixes labels": {"result": [_point(10.0, 10.0, "car"), _point(20.0, 20.0, "dog")]},
        "no keypointlabels or rectanglelabels": {"result": [{"type": "choices", "value": {"choices": ["x"]}}]},
        "not one of": {"result": [_point(10.0, 10.0, "zebra")]},
    }
    for words, context in cases.items():
        answer = _interactive(server, conn.backend_id, tasks[dhash], context)
        assert "data" not in answer and words in " ".join(answer["errors"]), (words, answer)
    # a task whose image is in neither the store nor Label Studio
    answer = _interactive(server, conn.backend_id, missing_task, {"result": [_point(10.0, 10.0)]})
    assert "404" in answer["errors"][0] and "nowhere/x.jpg" in answer["errors"][0], answer
    # straight to the backend: the JSON body says it too, and Label Studio's batch predictions get empty results
    r = httpx.post(f"{ml_backend[0]}/predict", json={"tasks": [{"id": 1, "data": {}}], "label_config": "<View/>",
                                                  "params": {"context": {"result": []}}})
    assert r.status_code == 422 and "empty context" in r.json()["error"]
    r = httpx.post(f"{ml_backend[0]}/predict", json={"tasks": [{"id": 1}, {"id": 2}], "params": {"context": None}})
    assert r.status_code == 200 and r.json()["results"] == [] and "clicks only" in r.json()["message"]
    assert httpx.post(f"{ml_backend[0]}/predict", content=b"{not json").status_code == 400
    assert httpx.post(f"{ml_backend[0]}/webhook", json={"action": "ANNOTATION_CREATED"}).status_code == 200
    assert ml_backend[1].poll() is None and httpx.get(f"{ml_backend[0]}/health").json()["model"] == "ready"


def test_a_deleted_backend_is_connected_again(project, ml_backend):
    client, project_id, _, _, server = project
    first = connect_backend(client, project_id, ml_backend[0])
    server.api("DELETE", f"/api/ml/{first.backend_id}")
    again = connect_backend(client, project_id, ml_backend[0])
    assert again.status == "connected" and again.backend_id != first.backend_id


def test_a_model_that_fails_to_load_is_reported_not_a_crash(project, tmp_path):
    client, project_id, tasks, _, server = project
    empty = tmp_path / "no-model"
    empty.mkdir()
    with open(tmp_path / "log", "ab") as log:
        proc, url = start_backend(empty, tmp_path, log)
        try:
            health = wait_model(url, timeout=60)
            assert health["model"] == "failed" and "ModelNotFoundError" in health["error"], health
            conn = connect_backend(client, project_id, url)  # Label Studio's setup call is refused with the reason
            assert conn.status == "unreachable" and "failed to load" in conn.detail, conn
            r = httpx.post(f"{url}/predict", json={"tasks": [{"id": 1, "data": {}}], "label_config": labeling_config(NAMES),
                                                   "params": {"context": {"result": [_point(10.0, 10.0)]}}})
            assert r.status_code == 503 and "failed to load" in r.json()["error"] and "MODEL_CACHE" in r.json()["error"]
            assert proc.poll() is None
        finally:
            stop(proc)

