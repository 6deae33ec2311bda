"""A real CUDA out-of-memory error on the production labelling path (GPU only).

``test_label_oom`` injects the error; here the device runs out for real: the process may use only a sliver
of the GPU (``set_per_process_memory_fraction``), and one frame of a batch is 64 megapixels, whose kept masks
cannot be upsampled in that sliver. The batch fails, its images are retried alone, the small ones are
labelled, the big one becomes a failed row marked as a device error, and the device memory comes back.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from samantics_dagster.core.dataset.spec import CategorySpec, Spec
from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.label.failures import failed_on_device
from samantics_dagster.core.label.model import load_sam3
from samantics_dagster.core.label.pipeline import LabelSettings, label_partition, make_segmenter
from samantics_dagster.core.label.queries import Query, QuerySet
from samantics_dagster.demo.tiny_sam3 import save_tiny_sam3
from tests.images import photo

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

NAMES = ["person", "car", "dog"]
SPEC = Spec(tuple(CategorySpec(i + 1, n, "thing") for i, n in enumerate(NAMES)))
QUERIES = QuerySet(tuple(Query(i + 1, n, n) for i, n in enumerate(NAMES)))
SLIVER_GIB = 1.5  # what the process may allocate: the tiny model and small frames fit, 64 MP of masks don't


def test_a_real_cuda_oom_fails_only_the_frame_that_cannot_fit_and_frees_the_memory(tmp_path):
    loaded = load_sam3(save_tiny_sam3(tmp_path / "tiny", seed=0), device="cuda")
    store = ImageStore(tmp_path / "images")
    store.root.mkdir(parents=True)
    big = np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    frames = {"0000000000000001": photo("astronaut", (64, 48)),
              "0000000000000002": Image.fromarray(big).resize((8000, 8000), Image.BILINEAR),
              "0000000000000003": photo("coffee", (40, 72))}
    for dhash, image in frames.items():
        image.save(store.path_for(dhash), "PNG" if image.width < 1000 else "JPEG")
    accepted = pd.DataFrame({"dhash": list(frames), "rel_path": [f"{d}.jpg" for d in frames]})
    # every query kept: 3 prompts x 16 queries of 64 MP masks is ~12 GB of upsampling, far over the sliver
    settings = LabelSettings(score_thresh=0.0, nms_iou=None, max_detections=None, relation_rules=(), image_batch=3)
    segment = make_segmenter(loaded, QUERIES, SPEC, settings)
    torch.cuda.synchronize()
    fraction = SLIVER_GIB * 2**30 / torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(fraction)
    try:
        baseline = torch.cuda.memory_allocated()
        result = label_partition(accepted, store, segment, "lab", table_path=tmp_path / "t.parquet", image_batch=3,
                                 log=lambda s: None)
        torch.cuda.synchronize()
        after = torch.cuda.memory_allocated()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    table = result.table.set_index("dhash")
    assert table.loc["0000000000000002", "status"] == "failed"
    assert "OutOfMemoryError" in table.loc["0000000000000002", "error"]
    assert failed_on_device(table.loc["0000000000000002", "error"])  # the next run tries it again
    assert (table.drop("0000000000000002").status == "done").all()
    assert (table.drop("0000000000000002").n_instances > 0).all()
    assert after - baseline < 64 * 2**20, f"{(after - baseline) / 2**20:.0f} MiB still allocated after the OOM"
