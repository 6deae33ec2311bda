"""Device RLE (torch) against pycocotools.mask.encode, byte for byte, on the masks that break encoders:
empty, full, single pixels at the corners, runs touching the first/last row and column (column-major
order wraps there), odd sizes, 1xN, Nx1, and one 100-megapixel mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from samantics_dagster.core.label.masks import decode_rle, encode_masks
from samantics_dagster.core.label.rle_torch import mask_runs, runs_to_rles, upsample_chunk
from tests.sam3_helpers import encode_masks_torch

torch.set_num_threads(1)


def _pycoco(masks: np.ndarray) -> list[str]:
    """The reference: pycocotools' own encoder on an H x W x N Fortran uint8 stack."""
    stack = np.asfortranarray(np.moveaxis(masks, 0, -1).astype(np.uint8))
    return [r["counts"].decode("ascii") for r in mask_utils.encode(stack)]


def _check(masks: np.ndarray) -> list[dict]:
    rles, areas = encode_masks_torch(torch.from_numpy(masks))
    assert [r["counts"] for r in rles] == _pycoco(masks)
    assert all(r["size"] == list(masks.shape[1:]) for r in rles)
    np.testing.assert_array_equal(areas, masks.reshape(len(masks), -1).sum(1))
    return rles


def _edge_cases(h: int, w: int) -> np.ndarray:
    """Empty, full, a pixel in each corner, the first/last row and column, a checkerboard."""
    cases = [np.zeros((h, w), bool), np.ones((h, w), bool)]
    for y, x in [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 2, w // 2)]:
        m = np.zeros((h, w), bool)
        m[y, x] = True
        cases.append(m)
    for sl in [(0, slice(None)), (h - 1, slice(None)), (slice(None), 0), (slice(None), w - 1)]:
        m = np.zeros((h, w), bool)
        m[sl] = True
        cases += [m, ~m]
    cases.append((np.add.outer(np.arange(h), np.arange(w)) % 2).astype(bool))
    return np.stack(cases)


@pytest.mark.parametrize("h, w", [(1, 1), (1, 17), (17, 1), (1, 1000), (1000, 1), (7, 5), (33, 47), (48, 64)])
def test_edge_cases_equal_pycocotools(h, w):
    _check(_edge_cases(h, w))


@pytest.mark.parametrize("density", [0.02, 0.3, 0.5, 0.97])
def test_random_masks_equal_pycocotools(density):
    rng = np.random.default_rng(int(density * 100))
    _check(rng.random((9, 37, 53)) < density)


def test_blobs_at_720p_equal_pycocotools_and_decode_back():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:720, :1280]
    masks = np.stack([((yy - rng.integers(0, 720)) / rng.integers(5, 300)) ** 2
                      + ((xx - rng.integers(0, 1280)) / rng.integers(5, 300)) ** 2 < 1 for _ in range(12)])
    rles = _check(masks)
    assert rles == encode_masks(masks)  # the project's host encoder: same dicts, so same table rows
    for r, m in zip(rles, masks):
        assert np.array_equal(decode_rle(r), m)


def test_a_100_megapixel_mask():
    h, w = 10_000, 10_000
    mask = np.zeros((h, w), dtype=bool, order="F")  # Fortran: pycocotools reads it without a copy
    mask[2_000:7_000, 1_000:9_999] = True
    mask[:, 0] = True
    mask[h - 1, :] = True
    mask[4_000:4_100, 3_000:3_333] = False  # a hole
    ref = mask_utils.encode(mask[:, :, None].view(np.uint8))[0]["counts"].decode("ascii")
    # A Fortran H x W array seen by torch is already column-major in memory: no transposing copy needed.
    runs = mask_runs(torch.from_numpy(mask)[None]).to_host()
    assert runs_to_rles(runs.runs, runs.n_runs, h, w)[0]["counts"] == ref
    assert int(runs.area[0]) == int(mask.sum())


def test_inputs_other_than_bool_and_empty_batches():
    masks = (np.random.default_rng(1).random((3, 20, 30)) < 0.4)
    rles, _ = encode_masks_torch(torch.from_numpy(masks.astype(np.uint8) * 7))  # nonzero counts as set
    assert [r["counts"] for r in rles] == _pycoco(masks)
    assert encode_masks_torch(torch.zeros((0, 20, 30), dtype=torch.bool))[0] == []
    _check(np.zeros((2, 20, 30), bool))  # no change point anywhere in the batch
    _check(np.ones((2, 20, 30), bool))
    with pytest.raises(ValueError, match=r"\[M, H, W\]"):
        mask_runs(torch.zeros((20, 30), dtype=torch.bool))


def test_runs_are_coco_order_and_small():
    m = np.zeros((4, 3), bool)
    m[1:3, 0] = True  # column-major: 0 | 1 1 | 0 0 0 0 0 0 0 0 0
    m[0, 2] = True  # index 8 in column-major order
    runs = mask_runs(torch.from_numpy(m)[None]).to_host()
    assert runs.runs.tolist() == [1, 2, 5, 1, 3] and runs.n_runs.tolist() == [5]
    assert runs.runs.dtype == np.int32


def test_upsample_chunk_respects_the_budget():
    assert upsample_chunk(720, 1280, 2048 * 2**20) == 2048 * 2**20 // (8 * 720 * 1280)
    assert upsample_chunk(10_000, 10_000, 2**20) == 1  # one mask over the budget still goes, alone
