"""The click-to-mask backend from Label Studio's own editor, in headless Chromium (driven by Playwright).

A reviewer logs in, opens a task of a review project with the backend connected, turns on Auto-Annotation,
picks a label of the smart keypoint control and the smart keypoint tool, and clicks the image: the editor
posts the click to ``/api/ml/{id}/interactive-annotating``, Label Studio forwards it to the backend's
``/predict``, and the polygon that comes back shows as a suggestion, accepted with one click. A smart box
dragged the same way does the same. Submitting saves both polygons in the annotation the review loop reads.

How the smart tool becomes active (read from Label Studio 1.23's editor source, the ``web/dist`` bundle's
source maps): with ``smartOnly`` controls the smart tools live only in the toolbar's "Auto-Detect" group,
which renders once the "Auto-Annotation" toggle is on (it appears because the project has an interactive
backend). Clicking a label of the keypoint control selects that control's plain tool, which is never
registered for a ``smartOnly`` control, so a click on the image then draws nothing; the dynamic
("smart") copy of the tool must be picked from the Auto-Detect group afterwards. Only regions drawn by
that copy notify ``regionFinishedDrawing``, the event the data manager turns into the backend call.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.review.client import LabelStudioClient
from samantics_dagster.core.review.convert import FROM_NAME, SMART_BOX, SMART_POINT, TO_NAME, labeling_config
from samantics_dagster.core.review_backend.connect import connect_backend
from tests.deploy.stack import ARTIFACTS, need
from tests.review.label_studio import PASSWORD, USER, ready
from tests.review.ml_backend import NAMES, NO_NEAR_MISS, wait_model

pytestmark = pytest.mark.slow
DHASH = "00000000000000b2"  # the API tests click the other photo: each test sees its own first (uncached) click
STEP_MS = 30_000  # any one step of the editor (a click, a backend answer); the first page load gets 90 s

# the editor is usable once the data manager has loaded the task (its editor is made once while the task loads and
# made again for it when the load ends: a click before that is lost) and the task's image is downloaded and sized
_EDITOR_READY = """(image) => {
  try {  // (the image tag's getters throw until its image entity exists)
    const store = window.Htx;
    return Boolean(window.dataManager.store.loadingData === false && !store.isLoading
                   && store.annotationStore.selected.names.get(image).imageIsLoaded
                   && document.querySelector(".konvajs-content"));
  } catch (e) {
    return false;
  }
}"""
_ANNOTATION = """(smart) => {
  const a = window.Htx.annotationStore.selected;
  return {
    regions: a.regions.map((r) => ({type: r.type, from_name: r.results[0]?.from_name?.name, label: r.labelName})),
    suggestions: [...a.suggestions.values()].map((r) => ({type: r.type, label: r.labelName})),
    selected: Object.fromEntries(smart.map((n) => [n, a.names.get(n).selectedLabels.map((l) => l.value)])),
  };
}"""  # the editor's store (window.Htx): regions, suggestions, the smart controls' selected labels


@pytest.fixture(scope="module")
def browser(chromium):
    """Debian's Chromium under Playwright (its pinned driver; no browser download: ``executable_path``)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need("Playwright", "`pip install -r tests/deploy/requirements.txt` (make test does) installs it")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium,
                               args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def review_task(label_studio_server, ml_store, ml_backend):
    """A project with the review loop's labeling config, one task on a photo of the store, the backend connected."""
    server = ready(label_studio_server)
    dataset = DatasetLayout(ml_store[0])
    client = LabelStudioClient(server.url, server.pat)
    project_id = int(client.create_project(f"mlb-browser-{uuid.uuid4().hex[:6]}", labeling_config(NAMES))["id"])
    client.add_local_storage(project_id, str(dataset.images), "image store")
    rel = os.path.relpath(dataset.image(DHASH), server.document_root)
    (task_id,) = client.import_tasks(project_id, [{"data": {"image": f"/data/local-files/?d={rel}", "dhash": DHASH,
                                                                   **NO_NEAR_MISS}}])
    wait_model(ml_backend[0])
    conn = connect_backend(client, project_id, ml_backend[0])
    assert conn.status == "connected", conn
    yield server, project_id, task_id
    client.close()


def _pick_smart_tool(page, group: int, label: str, tool: str) -> None:
    """Select ``label`` in the ``group``-th labels row (the labeling config's order: polygons, smart keypoints,
    smart boxes, near misses), then the smart ``tool`` in the toolbar's Auto-Detect group."""
    page.locator(".lsf-labels").nth(group).locator(".lsf-label", has_text=label).click()
    page.locator("button.lsf-tool_smart:not([aria-label])").hover()  # Auto-Detect: its tools show on hover
    smart = page.locator(f"button.lsf-tool_smart[aria-label={tool}]")
    smart.click()
    assert "lsf-tool_active" in (smart.get_attribute("class") or ""), f"the smart {tool} did not become active"


def _backend_answer(response) -> tuple[dict, dict]:
    """The context the editor sent and the backend's answer as Label Studio relays it."""
    assert response.ok, f"{response.url}: {response.status} {response.text()[:500]}"
    return json.loads(response.request.post_data or "{}")["context"], response.json()


def _shown(page) -> dict:
    return page.evaluate(_ANNOTATION, [SMART_POINT, SMART_BOX])


def _is_click(response) -> bool:
    """The editor's call for a smart region: ``POST /api/ml/{id}/interactive-annotating``."""
    return "/api/ml/" in response.url and response.url.split("?")[0].endswith("/interactive-annotating")


@contextmanager
def _backend_call(page, what: str) -> Iterator:
    """The editor's call to the backend that ``what`` (done in the block) must make, or a failure that says so."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        with page.expect_response(_is_click) as answer:
            yield answer
    except PlaywrightTimeout:
        pytest.fail(f"{what} made no POST /api/ml/{{id}}/interactive-annotating in {STEP_MS / 1000:g} s: the editor "
                    f"did not send it to the backend (is the smart tool active? see {ARTIFACTS}/ml-backend-in-browser"
                    f"-failed.png); editor state: {_shown(page)}")


def _near(a: float, b: float, tol: float = 2.5) -> bool:
    return abs(a - b) <= tol


def test_a_click_with_the_smart_keypoint_tool_in_the_editor_gets_a_polygon_from_the_backend(browser, review_task):
    server, project_id, task_id = review_task
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(STEP_MS)
    try:
        page.goto(f"{server.url}/user/login/")
        page.fill("#email", USER)
        page.fill("#password", PASSWORD)
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert "/user/login" not in page.url, "the login was refused"
        page.goto(f"{server.url}/projects/{project_id}/data?task={task_id}")
        page.wait_for_function(_EDITOR_READY, arg=TO_NAME, timeout=90_000)

        # the project has an interactive backend, so the editor offers Auto-Annotation; on, it shows the smart tools
        toggle = page.get_by_test_id("bottombar-auto-annotation-toggle")
        if not toggle.is_checked():  # the editor keeps the choice in localStorage
            toggle.check(force=True)  # the input is visually hidden under its styled switch
        _pick_smart_tool(page, 1, "car", "key-point-tool")
        assert _shown(page)["selected"][SMART_POINT] == ["car"]

        image = page.locator(".konvajs-content").first.bounding_box()
        assert image, "no image canvas in the editor"
        with _backend_call(page, "the click with the smart keypoint tool") as ans:
            page.mouse.click(image["x"] + 0.40 * image["width"], image["y"] + 0.35 * image["height"])
        context, answer = _backend_answer(ans.value)
        (point,) = context["result"]
        assert point["type"] == "keypointlabels" and point["from_name"] == SMART_POINT and point["is_positive"]
        assert point["value"]["keypointlabels"] == ["car"]
        assert _near(point["value"]["x"], 40.0) and _near(point["value"]["y"], 35.0), point["value"]
        assert "errors" not in answer, answer
        polygons = answer["data"]["result"]
        assert polygons and all(r["type"] == "polygonlabels" and r["from_name"] == FROM_NAME
                                and r["to_name"] == TO_NAME and r["value"]["polygonlabels"] == ["car"]
                                for r in polygons), polygons

        # the backend's polygon shows in the editor as a suggestion; one click accepts it as a region
        page.wait_for_function("window.Htx.annotationStore.selected.suggestions.size > 0")
        shown = _shown(page)
        assert shown["suggestions"] == [{"type": "polygonregion", "label": "car"}] * len(polygons), shown
        page.get_by_test_id("bottombar-accept-suggestions-button").click()
        shown = _shown(page)
        assert {"type": "polygonregion", "from_name": FROM_NAME, "label": "car"} in shown["regions"], shown
        assert not shown["suggestions"], shown

        # a smart box, dragged: the same round trip with a rectangle context
        page.keyboard.press("Escape")  # nothing selected, or the label click would relabel the region
        _pick_smart_tool(page, 2, "person", "rectangle-tool")
        assert _shown(page)["selected"][SMART_BOX] == ["person"]
        with _backend_call(page, "the box dragged with the smart rectangle tool") as ans:
            page.mouse.move(image["x"] + 0.10 * image["width"], image["y"] + 0.20 * image["height"])
            page.mouse.down()
            page.mouse.move(image["x"] + 0.60 * image["width"], image["y"] + 0.80 * image["height"], steps=8)
            page.mouse.up()
        context, box_answer = _backend_answer(ans.value)
        (box,) = context["result"]
        assert box["type"] == "rectanglelabels" and box["from_name"] == SMART_BOX
        assert box["value"]["rectanglelabels"] == ["person"] and box["value"]["width"] > 30, box["value"]
        assert "errors" not in box_answer, box_answer
        box_polygons = box_answer["data"]["result"]
        assert box_polygons and {r["value"]["polygonlabels"][0] for r in box_polygons} == {"person"}, box_polygons
        page.wait_for_function("window.Htx.annotationStore.selected.suggestions.size > 0")
        page.get_by_test_id("bottombar-accept-suggestions-button").click()
        assert sum(r["type"] == "polygonregion" for r in _shown(page)["regions"]) == len(polygons + box_polygons)
        page.screenshot(path=str(ARTIFACTS / "ml-backend-in-browser.png"))  # both polygons, before the editor reloads

        # submitted, the annotation holds the backend's polygons, point for point
        with page.expect_response(lambda r: r.request.method == "POST"
                                  and r.url.split("?")[0].endswith(f"/api/tasks/{task_id}/annotations")) as saved:
            page.get_by_role("button", name="Submit").click()
        assert saved.value.ok, saved.value.text()[:500]
        (annotation,) = server.api("GET", f"/api/tasks/{task_id}/annotations/").json()
        kept = sorted((r["value"]["polygonlabels"], r["value"]["points"]) for r in annotation["result"]
                      if r["type"] == "polygonlabels" and r["from_name"] == FROM_NAME)
        sent = sorted((r["value"]["polygonlabels"], r["value"]["points"]) for r in polygons + box_polygons)
        assert [labels for labels, _ in kept] == [labels for labels, _ in sent], annotation["result"]
        for (_, got), (_, want) in zip(kept, sent):
            assert len(got) == len(want) and all(_near(a, b, 1e-3) for p, q in zip(got, want) for a, b in zip(p, q))
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / "ml-backend-in-browser-failed.png"))
        raise
    finally:
        page.close()
