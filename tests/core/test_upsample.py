"""Kept masks upsampled in budget-sized chunks: same masks and RLE as all at once, chunks within budget,
and the device RLE path equal to pycocotools on the very masks ``detect`` produced."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samantics_dagster.core.label import upsample
from samantics_dagster.core.label.detect import detect, encode_prompts
from samantics_dagster.core.label.masks import encode_masks
from samantics_dagster.core.label.model import load_sam3
from samantics_dagster.core.label.rle_torch import BYTES_PER_PIXEL
from samantics_dagster.demo.tiny_sam3 import save_tiny_sam3
from tests.images import photo

torch.set_num_threads(1)

PROMPTS = ["car", "person", "a red dog"]


@pytest.fixture(scope="module")
def m(tmp_path_factory):
    return load_sam3(save_tiny_sam3(tmp_path_factory.mktemp("tiny_sam3") / "snapshot", seed=0))


@pytest.fixture(scope="module")
def images():
    # One frame much larger than the model's 112 px, so one mask is a real share of a small budget.
    return [photo("astronaut", (640, 360)), photo("coffee", (40, 72)), photo("chelsea", (91, 67))]


def _run(m, images, budget_mb):
    text = encode_prompts(m, PROMPTS)
    return detect(m, images, *text, score_threshold=0.55, pair_chunk=4, upsample_budget_mb=budget_mb,
                  device_rle=True, host_masks=True).groups()


def _flat(groups):
    """Per image: (prompt, score, box, mask, RLE counts, area) of every kept detection, in order."""
    out = []
    for per_image in groups:
        rows = []
        for g in per_image:
            rles = g.runs.rles()
            for j in range(len(g.scores)):
                rows.append((int(g.prompt_index[j]), float(g.scores[j]), tuple(g.boxes_xyxy[j].tolist()),
                             g.masks[j], rles[j]["counts"], int(g.runs.area[j])))
        out.append(rows)
    return out


def test_chunked_upsampling_equals_unchunked(m, images, monkeypatch):
    sizes = []

    def spy(x, *a, **kw):
        out = F.interpolate(x, *a, **kw)
        sizes.append((x.shape[1], out[0, 0].numel()))
        return out

    unchunked = _flat(_run(m, images, 1e6))  # a terabyte: every image's kept masks in one chunk
    budget_mb = 3 * BYTES_PER_PIXEL * 640 * 360 / 2**20  # three 640x360 masks per chunk
    monkeypatch.setattr(upsample, "F", SimpleNamespace(interpolate=spy))
    chunked = _flat(_run(m, images, budget_mb))
    kept_big = len(unchunked[0])
    assert kept_big > 3, "the big frame must need several chunks"
    assert max(n for n, px in sizes if px == 640 * 360) == 3  # chunks of the big frame: at most the budget
    assert all(n * px * BYTES_PER_PIXEL <= budget_mb * 2**20 or n == 1 for n, px in sizes)
    assert [len(r) for r in chunked] == [len(r) for r in unchunked]
    for a, b in zip(chunked, unchunked):
        for x, y in zip(a, b):
            assert x[:3] == y[:3] and x[4:] == y[4:]
            assert np.array_equal(x[3], y[3])


def test_device_rle_equals_pycocotools_on_the_same_masks(m, images):
    for rows in _flat(_run(m, images, None)):
        assert rows, "each frame should keep some detections at this threshold"
        masks = np.stack([r[3] for r in rows])
        assert [r[4] for r in rows] == [e["counts"] for e in encode_masks(masks)]
        assert [r[5] for r in rows] == masks.reshape(len(masks), -1).sum(1).tolist()


def test_default_path_on_cuda_copies_no_full_masks_and_cpu_keeps_pycocotools(m, images):
    assert upsample.default_device_rle(torch.device("cuda")) and not upsample.default_device_rle(m.device)
    text = encode_prompts(m, PROMPTS)
    groups = detect(m, images, *text, score_threshold=0.55, device_rle=True).groups()
    assert all(g.masks is None and g.runs is not None for per in groups for g in per)
    cpu_default = detect(m, images, *text, score_threshold=0.55).groups()
    assert all(g.masks is not None and g.runs is None for per in cpu_default for g in per)
    with pytest.raises(ValueError, match="upsample_budget_mb must be > 0"):
        detect(m, images, *text, score_threshold=0.55, upsample_budget_mb=0)
