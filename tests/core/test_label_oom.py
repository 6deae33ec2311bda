"""An out-of-memory error on a batch: the batch's tensors are let go before the images are retried alone.

The real SAM3 path (tiny random model, ``make_segmenter``) with one seam: the segmenter it returns is
wrapped so that its first batched call runs the real device half and then raises
``torch.OutOfMemoryError`` while that half's results (device tensors) are still in its frame, as a
real OOM raised deep in ``detect`` would leave them in the traceback.
"""

from __future__ import annotations

import json
import weakref

import pandas as pd
import pytest
import torch

from samantics_dagster.core.dataset.spec import CategorySpec, Spec
from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.label.model import load_sam3
from samantics_dagster.core.label.pipeline import LabelSettings, label_partition, make_segmenter
from samantics_dagster.core.label.queries import Query, QuerySet
from samantics_dagster.demo.tiny_sam3 import save_tiny_sam3
from tests.images import photo

torch.set_num_threads(1)

NAMES = ["person", "car", "dog"]
SPEC = Spec(tuple(CategorySpec(i + 1, n, "thing") for i, n in enumerate(NAMES)))
QUERIES = QuerySet(tuple(Query(i + 1, n, n) for i, n in enumerate(NAMES)))
SETTINGS = LabelSettings(candidate_floor=0.55, image_batch=3, pair_chunk=4)
PHOTOS = [("astronaut", (64, 48)), ("coffee", (40, 72)), ("chelsea", (90, 90)), ("rocket", (50, 30)),
          ("camera", (33, 47))]


def test_an_oom_batch_is_retried_alone_after_its_tensors_are_gone_and_nothing_is_lost(tmp_path):
    loaded = load_sam3(save_tiny_sam3(tmp_path / "tiny", seed=0))
    store = ImageStore(tmp_path / "images")
    store.root.mkdir(parents=True)
    dhashes = [f"{i:016x}" for i in range(len(PHOTOS))]
    for dhash, (name, size) in zip(dhashes, PHOTOS):
        photo(name, size).save(store.path_for(dhash), "PNG")
    accepted = pd.DataFrame({"dhash": dhashes, "rel_path": [f"{d}.jpg" for d in dhashes]})
    real = make_segmenter(loaded, QUERIES, SPEC, SETTINGS)
    clean = label_partition(accepted, store, real, "lab", table_path=tmp_path / "clean.parquet",
                            image_batch=SETTINGS.image_batch, log=lambda s: None)
    assert (clean.table.status == "done").all() and clean.table.n_instances.sum() > 0

    held: list[weakref.ref] = []  # the failed batch's device tensors
    alone_saw_them_alive: list[bool] = []
    batch_calls = []

    def segment(images):
        if len(images) > 1:
            batch_calls.append(len(images))
            if len(batch_calls) == 1:
                pending = real(images)  # the real device half ran: its outputs hold device memory
                tensor = torch.ones(256, 256)  # and a tensor of the batch's, referenced only from this frame
                held.append(weakref.ref(tensor))
                assert callable(pending)
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
        else:
            alone_saw_them_alive.append(bool(held) and held[0]() is not None)
        return real(images)

    result = label_partition(accepted, store, segment, "lab", table_path=tmp_path / "oom.parquet",
                             image_batch=SETTINGS.image_batch, log=lambda s: None)
    assert batch_calls == [3, 2]  # the OOM batch, then the next batch batched again
    assert alone_saw_them_alive == [False, False, False], "the retry ran while the OOM batch's tensors were held"
    table = result.table.set_index("dhash").sort_index()
    assert (table.status == "done").all() and result.failed == 0 and set(table.index) == set(dhashes)
    # nothing lost or changed: the same masks and boxes as the clean run (scores to float noise: a batch of
    # one and a batch of three round differently in the last bits)
    reference = clean.table.set_index("dhash").sort_index()
    assert table.n_instances.tolist() == reference.n_instances.tolist()
    for got, want in zip(table.instances, reference.instances):
        for a, b in zip(json.loads(got), json.loads(want)):
            assert (a["category_id"], a["rle"], a["area"]) == (b["category_id"], b["rle"], b["area"])
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)
            assert a["bbox_xyxy"] == pytest.approx(b["bbox_xyxy"], abs=1e-3)
