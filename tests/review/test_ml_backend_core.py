"""The click-to-mask backend's pure parts: Label Studio's click context as a prompt, the embedding cache,
the mask as one polygon region, and the tracker with and without a cached embedding (tiny SAM3, CPU)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from samantics_dagster.core.label.masks import coco_rle
from samantics_dagster.core.review.convert import from_regions, labeling_config, polygon_rle
from samantics_dagster.core.review_backend.cache import Embedding, EmbeddingCache
from samantics_dagster.core.review_backend.labelconfig import polygon_target
from samantics_dagster.core.review_backend.prompts import Prompt, PromptError, parse_context
from samantics_dagster.core.review_backend.regions import mask_region
from tests.images import photo


def _pt(x, y, positive=True, label="car"):
    return {"type": "keypointlabels", "to_name": "image", "is_positive": positive, "image_rotation": 0,
            "value": {"x": x, "y": y, "width": 1, "keypointlabels": [label]}}


def test_clicks_become_pixels_of_the_image_read_with_signs_and_the_latest_box():
    ctx = {"result": [_pt(25, 50), _pt(75, 10, positive=False),
                      {"type": "rectanglelabels", "to_name": "image", "value": {"x": 80, "y": 80, "width": -20,
                                                                                "height": 30, "rectanglelabels": ["car"]}}]}
    p = parse_context(ctx, 200, 100)
    assert p.label == "car" and p.points == [(50.0, 50.0), (150.0, 10.0)] and p.point_labels == [1, 0]
    assert p.box == (120.0, 80.0, 160.0, 100.0)  # a box dragged leftwards, clipped at the image's edge


@pytest.mark.parametrize("context, words", [
    (None, "empty context"), ({}, "empty context"), ({"result": []}, "empty context"),
    ({"result": [_pt(101, 5)]}, "outside the image"), ({"result": [_pt(5, -0.1)]}, "outside the image"),
    ({"result": [_pt(5, 5, label="car"), _pt(6, 6, label="dog")]}, "mixes labels"),
    ({"result": [_pt(5, 5, positive=False)]}, "only negative"),
    ({"result": [{"type": "choices"}]}, "no keypointlabels or rectanglelabels"),
    ({"result": [{**_pt(5, 5), "image_rotation": 90}]}, "rotated"),
    ({"result": [{**_pt(5, 5), "value": {"x": "a", "y": 1, "keypointlabels": ["car"]}}]}, "not a number"),
    ({"result": [{"type": "keypointlabels", "value": {"x": 1, "y": 1}}]}, "no label"),
    ({"result": [{"type": "rectanglelabels", "value": {"x": 110, "y": 0, "width": 5, "height": 5,
                                                       "rectanglelabels": ["car"]}}]}, "outside the image"),
])
def test_bad_clicks_are_refused_with_the_reason(context, words):
    with pytest.raises(PromptError, match=words):
        parse_context(context, 64, 48)


def test_the_cache_keeps_the_most_recently_used_within_its_byte_budget():
    def emb(n):
        return Embedding([torch.zeros(n, dtype=torch.uint8)], 1, 1)

    cache = EmbeddingCache(max_bytes=100)
    cache.put("a", emb(40))
    cache.put("b", emb(40))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", emb(40))  # over budget: b goes
    assert "b" not in cache and "a" in cache and "c" in cache
    cache.put("huge", emb(101))  # larger than the whole budget: not kept, nothing evicted for it
    assert "huge" not in cache and cache.stats().bytes == 80 and cache.stats().evictions == 1
    assert (cache.stats().hits, cache.stats().misses) == (1, 0)


def test_a_mask_with_two_pieces_and_holes_is_one_region_that_comes_back_as_the_mask():
    h, w = 120, 160
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, (50, 60), 35, 1, -1)
    cv2.circle(mask, (50, 60), 12, 0, -1)  # a hole
    cv2.rectangle(mask, (100, 20), (150, 100), 1, -1)
    cv2.rectangle(mask, (115, 45), (135, 70), 0, -1)  # another
    mask = mask.astype(bool)
    region, info = mask_region(mask, "car", "label", "image", 0.9)
    assert region is not None and info["parts"] == 2 and info["holes"] == 2 and not info["dropped_parts"]
    assert region["type"] == "polygonlabels" and region["value"]["polygonlabels"] == ["car"]
    back = mask_utils.decode(coco_rle(polygon_rle([region["value"]["points"]], w, h))).astype(bool)
    assert not back[60, 50] and not back[57, 125]  # the holes stay holes
    assert info["polygon_iou"] >= 0.95 and np.array_equal(mask_utils.decode(coco_rle(info["rle"])).astype(bool), mask)
    # pulled back by the review loop, the click's region is one instance of its class
    (inst,) = from_regions([region], [], w, h, {"car": 3})
    assert inst["category_id"] == 3 and inst["area"] == pytest.approx(mask.sum(), rel=0.05)
    assert mask_region(np.zeros((h, w), bool), "car", "label", "image", 0.1)[0] is None


def test_the_review_projects_config_has_the_smart_tools_and_names_the_polygons():
    config = labeling_config(["car", "person"])
    assert 'KeyPointLabels name="smart_point"' in config and 'RectangleLabels name="smart_box"' in config
    assert 'smart="true"' in config
    target = polygon_target(config)
    assert (target.image_key, target.polygon_name, target.to_name) == ("image", "label", "image")
    assert target.labels == {"car", "person"}
    with pytest.raises(PromptError, match="no <PolygonLabels>"):
        polygon_target('<View><Image name="i" value="$img"/></View>')


def test_the_cached_embedding_gives_the_masks_of_a_full_forward(tiny_model_dir):
    from PIL import Image

    from samantics_dagster.core.label.model import load_sam3_tracker
    from samantics_dagster.core.review_backend.segment import ClickSegmenter

    torch.set_num_threads(1)
    tracker = load_sam3_tracker(tiny_model_dir, device="cpu")
    image = photo("astronaut", (96, 80))
    seg = ClickSegmenter(tracker, EmbeddingCache(1 << 20))
    loads: list[int] = []

    def load() -> Image.Image:
        loads.append(1)
        return image

    for prompt in (Prompt("car", "image", [(30.0, 20.0)], [1]),
                   Prompt("car", "image", [(30.0, 20.0), (70.0, 50.0)], [1, 0]),
                   Prompt("car", "image", box=(10.0, 10.0, 60.0, 70.0))):
        first = seg.segment("img", load, prompt)
        second = seg.segment("img", load, prompt)
        kwargs: dict = {}
        if prompt.points:
            kwargs = {"input_points": [[[list(p) for p in prompt.points]]], "input_labels": [[prompt.point_labels]]}
        if prompt.box:
            kwargs["input_boxes"] = [[list(prompt.box)]]
        inputs = tracker.processor(images=image, return_tensors="pt", **kwargs)
        multimask = len(prompt.points) == 1 and prompt.box is None
        with torch.inference_mode():
            out = tracker.model(**inputs, multimask_output=multimask)  # pixels in: no embedding cache
        best = int(torch.argmax(out.iou_scores[0, 0])) if multimask else 0
        full = tracker.processor.post_process_masks(out.pred_masks[:, :, best:best + 1], inputs["original_sizes"])
        assert second.cached and np.array_equal(first.mask, second.mask)
        assert np.array_equal(second.mask, full[0][0, 0].numpy()) and first.mask.shape == (80, 96)
        assert second.score == pytest.approx(float(out.iou_scores[0, 0, best]), abs=1e-6)
    assert len(loads) == 1  # the image was read (and embedded) once
