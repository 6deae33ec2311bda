"""Which failed labels a later run tries again, and the failure share judged on the category's rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.label.failures import DEVICE_ERROR, error_text, failed_on_device, failure_share
from samantics_dagster.core.label.masks import build_instances
from samantics_dagster.core.label.pipeline import label_partition
from tests.images import photo


@pytest.mark.parametrize(("exc", "device"), [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("CUDA error: an illegal memory access was encountered"), True),
    (RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"), True),
    (ValueError("MaskGroup has neither device run lengths nor host masks"), False),
    (OSError("cannot identify image file"), False),
    (RuntimeError("shape mismatch"), False),
])
def test_device_errors_are_marked_as_such(exc, device):
    text = error_text(exc)
    assert failed_on_device(text) is device and type(exc).__name__ in text
    assert text.startswith(DEVICE_ERROR) is device and len(error_text(RuntimeError("CUDA " + "x" * 900))) == 500


@pytest.fixture
def images(tmp_path):
    store = ImageStore(tmp_path / "images")
    store.root.mkdir(parents=True)
    dhashes = [f"{i:016x}" for i in range(5)]
    for dhash in dhashes:
        photo("coffee", (32, 24)).save(store.path_for(dhash), "PNG")
    return store, pd.DataFrame({"dhash": dhashes, "rel_path": [f"{d}.jpg" for d in dhashes]})


def _ok(images):
    return [build_instances([np.ones((im.height, im.width), bool)], [(0, 0, im.width, im.height)], [0.9], [1])
            for im in images]


def _raising(exc):
    def segment(images):
        raise exc
    return segment


def _run(images, segment, tmp_path, **kw):
    store, accepted = images
    return label_partition(accepted, store, segment, "lab", table_path=tmp_path / "t.parquet", image_batch=2,
                           log=lambda s: None, **kw)


def test_a_run_tries_device_failures_again_but_keeps_bad_input_failures(images, tmp_path):
    n = len(images[1])
    broken = _run(images, _raising(torch.OutOfMemoryError("CUDA out of memory")), tmp_path)
    assert (broken.table.status == "failed").all() and broken.table.error.map(failed_on_device).all()
    judged = failure_share(broken.table, "lab", attempted=broken.attempted, failed_this_run=broken.failed_this_run)
    assert (judged.failed, judged.failed_earlier, judged.device_errors, judged.share) == (n, 0, n, 1.0)

    still = _run(images, _raising(torch.OutOfMemoryError("CUDA out of memory")), tmp_path)  # the GPU still broken
    assert still.attempted == n and "trying again 5 images that failed on a device error" in still.relabel_reason
    recovered = _run(images, _ok, tmp_path)  # the next run, no retry_failed: the GPU came back
    assert recovered.attempted == n and (recovered.table.status == "done").all()

    bad = _run(images, _raising(ValueError("a post-processing bug")), tmp_path / "bad")
    assert (bad.table.status == "failed").all() and not bad.table.error.map(failed_on_device).any()
    again = _run(images, _ok, tmp_path / "bad")  # a bad-input / code error would fail the same way: kept
    assert again.attempted == 0 and (again.table.status == "failed").all()
    judged = failure_share(again.table, "lab", attempted=again.attempted, failed_this_run=again.failed_this_run)
    assert (judged.failed, judged.failed_this_run, judged.failed_earlier, judged.share) == (n, 0, n, 1.0)
    assert not judged.passed(0.05) and f"{n} kept from earlier attempts" in (judged.explain(0.05) or "")
    assert _run(images, _ok, tmp_path / "bad", retry_failed=True).attempted == n  # asked for: all of them


def test_the_share_counts_only_this_labelers_rows_and_an_empty_category_passes():
    table = pd.DataFrame({"status": ["done", "failed", "failed", "done"], "labeler": ["lab", "lab", "lab", "lab"],
                          "error": [None, "OSError: x", DEVICE_ERROR + "OutOfMemoryError: y", None]})
    judged = failure_share(table, "lab", attempted=1, failed_this_run=1)
    assert (judged.accepted, judged.failed, judged.failed_earlier, judged.device_errors) == (4, 2, 1, 1)
    assert judged.share == 0.5 and not judged.passed(0.05) and judged.passed(0.5) and judged.explain(0.5) is None
    assert "the next run tries the device errors again" in (judged.explain(0.05) or "")
    empty = failure_share(table.iloc[:0], "lab", attempted=0, failed_this_run=0)
    assert empty.share == 0.0 and empty.passed(0.0) and empty.metadata(0.0)["device_errors"] == 0
