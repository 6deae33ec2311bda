"""The pipelined labelling path (device half now, RLE on a worker thread) against the serial one it replaced.

``_serial_segment_batch`` is the per-(image, prompt) loop ``segment_batch`` used to be (scores and boxes
copied per row, kept masks upsampled per row, full-resolution bool masks copied back inline), and
``_serial_instances`` the post-processing that followed it on the main thread (thresholds, NMS, relation
rules applied at labelling time). The pipelined path keeps candidates down to a lower floor; what passes
the same thresholds among them (``select``, applied when curating) must be the very same instances: same
scores, boxes, areas and RLE strings, not merely close ones.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from samantics_dagster.core.dataset.spec import CategorySpec, Spec
from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.dataset.tables import write_table
from samantics_dagster.core.label.candidates import PASSENGER, Selection, select
from samantics_dagster.core.label.detect import _thresholds, encode_prompts
from samantics_dagster.core.label.masks import (
    Instance,
    apply_relation_rules,
    build_instances,
    cap_detections,
    cross_prompt_nms,
)
from samantics_dagster.core.label.model import load_sam3
from samantics_dagster.core.label.pipeline import (
    IMPORTED_PREFIX,
    LabelSettings,
    label_partition,
    label_row,
    make_segmenter,
    to_table,
)
from samantics_dagster.core.label.queries import Query, QuerySet
from samantics_dagster.demo.tiny_sam3 import save_tiny_sam3
from tests.images import photo
from tests.sam3_helpers import segment_batch

torch.set_num_threads(1)

NAMES = ["person", "car", "passenger", "dog"]
SPEC = Spec(tuple(CategorySpec(i + 1, n, "thing") for i, n in enumerate(NAMES)))
QUERIES = QuerySet(tuple(Query(i + 1, n, t) for i, (n, t) in enumerate(zip(NAMES, ["person", "car", "person in a car", "a dog"]))))
SETTINGS = LabelSettings(candidate_floor=0.3, max_candidates=6, image_batch=2, pair_chunk=5)
SELECTION = Selection(default=0.55, thresholds={4: 0.5}, nms_iou=0.5, max_detections=6, relation_rules=(PASSENGER,),
                      name_to_id={c.name: c.id for c in SPEC.categories})
# Different sizes and both orientations: masks must land in each image's own pixels.
PHOTOS = [("astronaut", (64, 48)), ("coffee", (40, 72)), ("chelsea", (90, 90)), ("rocket", (50, 30)),
          ("camera", (33, 47)), ("astronaut", (120, 80)), ("coffee", (72, 40))]


@pytest.fixture(scope="module")
def m(tmp_path_factory):
    return load_sam3(save_tiny_sam3(tmp_path_factory.mktemp("tiny_sam3") / "snapshot", seed=0))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[ImageStore, pd.DataFrame]:
    store = ImageStore(tmp_path_factory.mktemp("dataset"))
    store.root.mkdir(parents=True)
    names = []
    for i, (name, size) in enumerate(PHOTOS):
        dhash = f"{i:016x}"
        photo(name, size).save(store.path_for(dhash), "PNG")  # lossless: the reference reads the same pixels
        names.append(dhash)
    return store, pd.DataFrame({"dhash": names, "rel_path": [f"{n}.jpg" for n in names]})


@torch.inference_mode()
def _serial_segment_batch(m, images, text, text_mask, *, score_threshold, pair_chunk, max_detections_per_pair):
    """``segment_batch`` as it was before the pipeline: per row, .cpu() and an upsample + copy of its masks.
    Returns, per image, (prompt_index, score, box, mask) tuples."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    model, dev = m.model, m.device
    text_feats = text.pooler_output
    n, k = len(images), text_feats.shape[0]
    thresholds = _thresholds(score_threshold, k)
    sizes = [im.size for im in images]
    pixels = m.processor.image_processor(images, return_tensors="pt").pixel_values
    vis = model.get_vision_features(pixel_values=pixels.to(dev, m.dtype))
    pair_image = torch.arange(n, device=dev).repeat_interleave(k)
    pair_prompt = torch.arange(k, device=dev).repeat(n)
    results = [[] for _ in range(n)]
    for start in range(0, n * k, pair_chunk):
        ii, kk = pair_image[start:start + pair_chunk], pair_prompt[start:start + pair_chunk]
        real = ii.shape[0]
        out = model(
            vision_embeds=Sam3VisionEncoderOutput(
                fpn_hidden_states=tuple(x.index_select(0, ii) for x in vis.fpn_hidden_states),
                fpn_position_encoding=tuple(x.index_select(0, ii) for x in vis.fpn_position_encoding)),
            text_embeds=BaseModelOutputWithPooling(pooler_output=text_feats.index_select(0, kk)),
            attention_mask=text_mask.index_select(0, kk))
        scores = (out.pred_logits[:real].float().sigmoid() * out.presence_logits[:real].float().sigmoid()).cpu()
        boxes = out.pred_boxes[:real].float().cpu()
        order = scores.argsort(dim=1, descending=True, stable=True)
        for row in range(real):
            i, p = int(ii[row]), int(kk[row])
            idx = order[row][scores[row, order[row]] > thresholds[p]]
            if max_detections_per_pair is not None:
                idx = idx[:max_detections_per_pair]
            if idx.numel() == 0:
                continue
            w, h = sizes[i]
            kept_boxes = (boxes[row, idx] * torch.tensor([w, h, w, h], dtype=torch.float32)).tolist()
            logits = out.pred_masks[row].index_select(0, idx.to(dev)).float()
            masks = (F.interpolate(logits[None], size=(h, w), mode="bilinear", align_corners=False)[0] > 0).cpu().numpy()
            for j, q in enumerate(idx.tolist()):
                results[i].append((p, float(scores[row, q]), tuple(kept_boxes[j]), masks[j]))
    return results


def _serial_instances(m, images) -> list[list[Instance]]:
    """The old make_segmenter: serial inference at the class thresholds, then RLE and filters on the calling thread."""
    text, text_mask = encode_prompts(m, [q.text for q in QUERIES.queries])
    thresholds = [SELECTION.threshold(q.category_id) for q in QUERIES.queries]
    cat_ids = [q.category_id for q in QUERIES.queries]
    out = []
    for dets in _serial_segment_batch(m, images, text, text_mask, score_threshold=thresholds,
                                      pair_chunk=SETTINGS.pair_chunk, max_detections_per_pair=SETTINGS.max_candidates):
        inst = build_instances(np.stack([d[3] for d in dets]), [d[2] for d in dets], [d[1] for d in dets],
                               [cat_ids[d[0]] for d in dets]) if dets else []
        inst = cap_detections(cross_prompt_nms(inst, SELECTION.nms_iou), SELECTION.max_detections)
        out.append(apply_relation_rules(inst, list(SELECTION.relation_rules), dict(SELECTION.name_to_id)))
    return out


def _images(store, accepted):
    from samantics_dagster.core.label.pipeline import load_image

    return [load_image(store.path_for(d)) for d in accepted.dhash]


def test_segment_batch_gives_exactly_what_the_per_row_loop_gave(m, dataset):
    images = _images(*dataset)
    text, text_mask = encode_prompts(m, [q.text for q in QUERIES.queries])
    for chunk, cap in [(5, 6), (3, None), (32, 1)]:
        new = segment_batch(m, images, text, text_mask, score_threshold=0.55, pair_chunk=chunk,
                            max_detections_per_pair=cap)
        old = _serial_segment_batch(m, images, text, text_mask, score_threshold=0.55, pair_chunk=chunk,
                                    max_detections_per_pair=cap)
        assert [len(x) for x in new] == [len(x) for x in old]
        assert sum(len(x) for x in new) > 0
        for im, dets, ref in zip(images, new, old):
            for d, (p, score, box, mask) in zip(dets, ref):
                assert (d.prompt_index, d.score, d.box_xyxy) == (p, score, box)
                assert d.mask.shape == (im.height, im.width) and np.array_equal(d.mask, mask)


@pytest.mark.parametrize("post_workers", [1, 2, 0])
def test_pipelined_labels_equal_the_serial_path(m, dataset, tmp_path, post_workers):
    store, accepted = dataset
    images, b = _images(store, accepted), SETTINGS.image_batch
    reference = [i for s in range(0, len(images), b) for i in _serial_instances(m, images[s:s + b])]
    assert sum(map(len, reference)) >= 5, "the threshold should keep several instances"
    result = label_partition(accepted, store, make_segmenter(m, QUERIES, SPEC, SETTINGS), "lab",
                             table_path=tmp_path / "t.parquet", image_batch=SETTINGS.image_batch,
                             post_workers=post_workers, log=lambda s: None)
    table = result.table.set_index("dhash")
    assert (table.status == "done").all() and len(table) == len(PHOTOS)
    candidates = [[Instance.from_record(r) for r in json.loads(table.loc[d, "instances"])] for d in accepted.dhash]
    assert sum(map(len, candidates)) > sum(map(len, reference)), "the floor should keep candidates below the thresholds"
    for cands, ref in zip(candidates, reference):
        assert [i.to_record() for i in select(cands, SELECTION)] == [i.to_record() for i in ref]
    assert result.post_seconds > 0 and 0 <= result.post_wait_seconds <= result.post_seconds + 1.0


def test_a_demo_partition_labelled_with_device_rle_equals_the_pycocotools_path(m, tmp_path):
    """The demo's own frames (640x360 JPEGs), spec and queries: RLE computed by torch (the CUDA default,
    forced here on the CPU) gives the very rows the pycocotools path gives, RLE strings included."""
    from samantics_dagster.core.dataset.spec import load_spec
    from samantics_dagster.core.label.queries import load_queries
    from samantics_dagster.demo.sample import build_sample_workdir
    from samantics_dagster.demo.spec import write_demo_spec

    build_sample_workdir(tmp_path / "wd", categories=("street",), sources=("youtube",), videos_per_source=1,
                         scenes_per_video=2, frames_per_scene=2, bad_files=False)
    store = ImageStore(tmp_path / "dataset" / "images")
    store.root.mkdir(parents=True)
    frames = sorted((tmp_path / "wd").rglob("*.jpg"))
    for i, f in enumerate(frames):
        store.path_for(f"{i:016x}").write_bytes(f.read_bytes())
    accepted = pd.DataFrame({"dhash": [f"{i:016x}" for i in range(len(frames))], "rel_path": [f.name for f in frames]})
    write_demo_spec(tmp_path / "dataset")
    spec = load_spec(tmp_path / "dataset" / "coco-spec.json")
    queries = load_queries(spec, tmp_path / "dataset" / "sam-queries.yaml", derived=["passenger"])
    tables, results = {}, {}
    for device_rle in (False, True):
        settings = LabelSettings(candidate_floor=0.5, image_batch=2, pair_chunk=8, device_rle=device_rle)
        res = label_partition(accepted, store, make_segmenter(m, queries, spec, settings), "lab",
                              table_path=tmp_path / f"t-{device_rle}.parquet", image_batch=2, log=lambda s: None)
        tables[device_rle], results[device_rle] = res.table, res
    assert (tables[True].status == "done").all() and len(tables[True]) == len(frames) == 4
    assert tables[True]["n_instances"].sum() >= 10, "the threshold should keep instances on every path"
    assert tables[True]["instances"].tolist() == tables[False]["instances"].tolist()
    # The same settings but the RLE device: one labeler, so a switch relabels nothing.
    assert (LabelSettings(device_rle=True, upsample_budget_mb=1.0).labeler("f", queries)
            == LabelSettings(device_rle=False).labeler("f", queries))
    res = results[True]
    assert set(res.stage_seconds) == {"load", "device", "post"} and all(v > 0 for v in res.stage_seconds.values())
    assert res.stage_seconds[res.slowest_stage] == max(res.stage_seconds.values())


# --- the pipeline's guarantees, with fake segmenters (no model) -----------------------------------

def _fake_instances(images) -> list[list[Instance]]:
    return [build_instances([np.ones((im.height, im.width), bool)], [(0, 0, im.width, im.height)], [0.9], [1])
            for im in images]


def test_post_processing_of_a_batch_overlaps_the_next_on_the_device(dataset, tmp_path):
    store, accepted = dataset
    next_started = threading.Event()
    calls = []

    def segment(images):
        calls.append(len(images))
        if len(calls) == 2:
            next_started.set()

        def finish():
            if len(calls) == 1:  # batch 0's CPU half can only finish once batch 1 is on the device
                assert next_started.wait(30), "batch 1 never started while batch 0 was post-processed"
            return _fake_instances(images)
        return finish

    result = label_partition(accepted, store, segment, "lab", table_path=tmp_path / "t.parquet", image_batch=2,
                             log=lambda s: None)
    assert (result.table.status == "done").all() and calls == [2, 2, 2, 1]


def test_each_batch_is_on_disk_before_the_one_after_next_starts(dataset, tmp_path):
    """A SIGKILL loses at most the batch on the device and the one being post-processed."""
    store, accepted = dataset
    parts = tmp_path / ".parts" / "t"
    seen = []

    def segment(images):
        seen.append(len(list(parts.glob("part-*.parquet"))))
        return lambda: _fake_instances(images)

    label_partition(accepted, store, segment, "lab", table_path=tmp_path / "t.parquet", image_batch=1, log=lambda s: None)
    assert all(n >= b - 1 for b, n in enumerate(seen)), seen


def test_a_failing_batch_is_retried_image_by_image_in_either_half(dataset, tmp_path):
    store, accepted = dataset
    bad = accepted.dhash.iloc[3]
    bad_size = PHOTOS[3][1]

    def segment(images):
        if len(images) > 1 and any(im.size == bad_size for im in images):
            raise RuntimeError("CUDA out of memory (device half)")
        if len(images) > 1 and images[0].size == PHOTOS[4][1]:
            def finish():
                raise RuntimeError("late CUDA error (CPU half)")
            return finish
        if images[0].size == bad_size:
            raise RuntimeError("CUDA out of memory, even alone")
        return lambda: _fake_instances(images)

    result = label_partition(accepted, store, segment, "lab", table_path=tmp_path / "t.parquet", image_batch=2,
                             log=lambda s: None)
    table = result.table.set_index("dhash")
    assert table.loc[bad, "status"] == "failed" and "even alone" in table.loc[bad, "error"]
    assert (table.drop(bad).status == "done").all() and result.failed == 1


def test_plain_segmenters_returning_instances_still_work(dataset, tmp_path):
    store, accepted = dataset
    result = label_partition(accepted, store, _fake_instances, "lab", table_path=tmp_path / "t.parquet",
                             image_batch=3, log=lambda s: None)
    assert (result.table.status == "done").all() and (result.table.n_instances == 1).all()


# --- imported rows ----------------------------------------------------------------------------------

def test_imported_rows_are_kept_unless_relabel_imported(dataset, tmp_path):
    store, accepted = dataset
    path = tmp_path / "t.parquet"
    old_inst = build_instances([np.ones((4, 4), bool)], [(0, 0, 4, 4)], [0.7], [2])
    imported = [label_row(d, "x.jpg", f"{IMPORTED_PREFIX}seed-v1", instances=old_inst, size=(4, 4))
                for d in accepted.dhash[:3]]
    imported_failed = label_row(accepted.dhash.iloc[3], "x.jpg", f"{IMPORTED_PREFIX}seed-v1", error="broken")
    stale = label_row(accepted.dhash.iloc[4], "x.jpg", "sam3:old", instances=old_inst, size=(4, 4))
    write_table(to_table([*imported, imported_failed, stale]), path)
    labelled: list[int] = []

    def segment(images):
        labelled.extend(im.width for im in images)
        return _fake_instances(images)

    logs: list[str] = []
    result = label_partition(accepted, store, segment, "sam3:new", table_path=path, image_batch=2, log=logs.append)
    table = result.table.set_index("dhash")
    kept = list(accepted.dhash[:3])
    assert (table.loc[kept, "labeler"] == f"{IMPORTED_PREFIX}seed-v1").all()
    assert [json.loads(b) for b in table.loc[kept, "instances"]] == [[i.to_record() for i in old_inst]] * 3
    assert result.reused == 3 and len(labelled) == len(PHOTOS) - 3  # the imported failure is labelled
    assert (table.drop(kept).labeler == "sam3:new").all()
    assert "relabel_imported" not in logs[0] and "2 images" in logs[0]  # the imported failure and the stale row

    labelled.clear()
    logs.clear()
    again = label_partition(accepted, store, segment, "sam3:new", table_path=path, image_batch=2,
                            relabel_imported=True, log=logs.append)
    assert len(labelled) == 3 and again.reused == len(PHOTOS) - 3
    assert (again.table.labeler == "sam3:new").all()
    assert "3 images" in logs[0] and "relabel_imported is set" in logs[0]
    assert "candidate floor changed" not in logs[0]


def test_after_part_is_called_once_each_part_is_on_disk(dataset, tmp_path):
    """The kill test's hook: at call n, n parts of this run exist (what it blocks on before the SIGKILL)."""
    store, accepted = dataset
    parts = tmp_path / ".parts" / "t"
    seen: list[tuple[int, int]] = []

    def after_part(n: int) -> None:
        seen.append((n, len(list(parts.glob("part-*.parquet")))))

    label_partition(accepted, store, lambda images: (lambda: _fake_instances(images)), "lab",
                    table_path=tmp_path / "t.parquet", image_batch=2, log=lambda s: None, after_part=after_part)
    assert seen == [(n, n) for n in range(1, -(-len(accepted) // 2) + 1)]


# --- precision: dtype and versions in the labeler ----------------------------------------------------

BF16 = "bf16-torch2.11-transformers5.23"
FP32 = "fp32-torch2.14-transformers5.23"


def test_precision_is_recorded_reported_when_mixed_and_relabelled_only_when_asked(dataset, tmp_path):
    """A run on another precision keeps the rows it finds (relabelling a dataset because torch moved on
    would cost GPU-days) but the table's precisions say the category is mixed; ``relabel=other_precision``
    labels exactly the odd ones again. A changed candidate floor still relabels everything, whatever the precision."""
    from samantics_dagster.core.label.precision import Relabel

    store, accepted = dataset
    path = tmp_path / "t.parquet"
    labelled: list[int] = []

    def segment(images):
        labelled.extend(im.width for im in images)
        return _fake_instances(images)

    gpu = SETTINGS.labeler("model", QUERIES, BF16)
    cpu = SETTINGS.labeler("model", QUERIES, FP32)
    assert gpu != cpu and gpu.split("@")[0] == cpu.split("@")[0] and gpu.endswith("@" + BF16)
    first = label_partition(accepted[:4], store, segment, gpu, table_path=path, image_batch=2, log=lambda s: None)
    assert first.precisions == {BF16: 4}

    labelled.clear()
    logs: list[str] = []
    mixed = label_partition(accepted, store, segment, cpu, table_path=path, image_batch=2, log=logs.append)
    assert len(labelled) == len(PHOTOS) - 4 and mixed.reused == 4 and not logs  # nothing relabelled, nothing to say
    assert mixed.precisions == {FP32: len(PHOTOS) - 4, BF16: 4}

    labelled.clear()
    fixed = label_partition(accepted, store, segment, cpu, table_path=path, image_batch=2,
                            relabel=Relabel.other_precision, log=logs.append)
    assert len(labelled) == 4 and fixed.reused == len(PHOTOS) - 4
    assert fixed.precisions == {FP32: len(PHOTOS)} and (fixed.table.labeler == cpu).all()
    assert "relabelling 4 images" in logs[0] and "another precision" in logs[0] and "floor changed" not in logs[0]

    labelled.clear()
    logs.clear()
    other = LabelSettings(candidate_floor=0.7).labeler("model", QUERIES, FP32)
    label_partition(accepted, store, segment, other, table_path=path, image_batch=2, log=logs.append)
    assert len(labelled) == len(PHOTOS) and "candidate floor changed" in logs[0]


def test_rows_from_before_the_precision_was_recorded_stand_and_count_as_unrecorded(dataset, tmp_path):
    from samantics_dagster.core.label.precision import UNRECORDED, Relabel

    store, accepted = dataset
    path = tmp_path / "t.parquet"
    old = SETTINGS.labeler("model", QUERIES)  # no precision: what rows labelled before carry
    assert "@" not in old
    label_partition(accepted[:2], store, _fake_instances, old, table_path=path, image_batch=2, log=lambda s: None)
    now = SETTINGS.labeler("model", QUERIES, FP32)
    res = label_partition(accepted[:2], store, _fake_instances, now, table_path=path, log=lambda s: None)
    assert res.reused == 2 and res.precisions == {UNRECORDED: 2}
    res = label_partition(accepted[:2], store, _fake_instances, now, table_path=path, relabel=Relabel.other_precision,
                          log=lambda s: None)
    assert res.reused == 0 and res.precisions == {FP32: 2}


def test_loaded_model_names_its_precision(m):
    import transformers

    from samantics_dagster.core.label.precision import major_minor

    assert m.precision == f"fp32-torch{major_minor(torch.__version__)}-transformers{major_minor(transformers.__version__)}"
    assert major_minor("2.14.1+cu130") == "2.14" and major_minor("5.23.0") == "5.23"
