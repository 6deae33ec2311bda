"""SAM3 loading and batched inference, against transformers' own per-(image, prompt) path.

The model is the tiny random one from ``tiny_sam3``, saved to disk and loaded through ``load_sam3``
exactly as real weights are. Its presence head is biased and its scorer spread (see tiny_sam3) so
that a threshold near 0.5 keeps some queries and drops others.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from samantics_dagster.core.label.detect import encode_prompts
from samantics_dagster.core.label.model import (
    IncompleteWeightsError,
    LoadedSam3,
    ModelNotFoundError,
    load_sam3,
    load_sam3_tracker,
    model_fingerprint,
    resolve_model_dir,
)
from samantics_dagster.demo.tiny_sam3 import build_tiny_sam3, save_tiny_sam3
from tests.images import photo
from tests.sam3_helpers import Detection, segment_batch

torch.set_num_threads(1)

PROMPTS = ["car", "person", "a red dog", "tree trunk"]
THRESHOLD = 0.59  # for the seed-0 tiny model: per pair, 0 to 3 of 16 queries pass


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_sam3(tmp_path_factory.mktemp("tiny_sam3") / "snapshot", seed=0)


@pytest.fixture(scope="module")
def m(model_dir) -> LoadedSam3:
    return load_sam3(model_dir)


@pytest.fixture(scope="module")
def images():
    # Different sizes and aspect ratios, both orientations: masks and boxes must land in each image's own pixels.
    return [photo("astronaut", (64, 48)), photo("coffee", (40, 72)), photo("chelsea", (90, 90))]


@pytest.fixture(scope="module")
def text(m):
    return encode_prompts(m, PROMPTS)


@pytest.fixture(scope="module")
def reference(m, images):
    """transformers' documented path: one full forward per (image, prompt), HF post-processing.
    Returns, per image, per prompt: (all query scores, kept results sorted by score)."""
    ref = []
    for im in images:
        per_prompt = []
        for p in PROMPTS:
            with torch.inference_mode():
                out = m.model(**m.processor(images=im, text=p, return_tensors="pt"))
                r = m.processor.post_process_instance_segmentation(
                    out, threshold=THRESHOLD, mask_threshold=0.5, target_sizes=[(im.height, im.width)])[0]
            all_scores = (out.pred_logits.sigmoid() * out.presence_logits.sigmoid())[0]
            order = r["scores"].argsort(descending=True, stable=True)
            per_prompt.append((all_scores, {k: v[order] for k, v in r.items()}))
        ref.append(per_prompt)
    return ref


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _by_prompt(dets: list[Detection], k: int) -> list[list[Detection]]:
    out: list[list[Detection]] = [[] for _ in range(k)]
    for d in dets:
        out[d.prompt_index].append(d)
    return out


def test_batched_path_matches_per_pair_forward_and_hf_postprocessing(m, images, text, reference):
    all_scores = torch.cat([s for per_image in reference for s, _ in per_image])
    kept_total = int((all_scores > THRESHOLD).sum())
    # A meaningful threshold: some queries kept, some dropped, and none so close that rounding decides.
    assert 0 < kept_total < all_scores.numel()
    assert (all_scores - THRESHOLD).abs().min() > 1e-5
    # ...and both empty and multi-detection pairs, so ordering and the empty case are exercised.
    per_pair = [len(r["scores"]) for per_image in reference for _, r in per_image]
    assert 0 in per_pair and max(per_pair) >= 2, per_pair

    results = segment_batch(m, images, *text, score_threshold=THRESHOLD)
    assert len(results) == len(images)
    assert sum(len(r) for r in results) == kept_total
    for im, dets, ref_per_prompt in zip(images, results, reference):
        # Ordered by prompt, then by descending score.
        assert [d.prompt_index for d in dets] == sorted(d.prompt_index for d in dets)
        for p, (mine, (_, ref)) in enumerate(zip(_by_prompt(dets, len(PROMPTS)), ref_per_prompt)):
            assert len(mine) == len(ref["scores"]), (p, len(mine), len(ref["scores"]))
            np.testing.assert_allclose([d.score for d in mine], ref["scores"].numpy(), rtol=0, atol=1e-6)
            for d, box, mask in zip(mine, ref["boxes"], ref["masks"]):
                np.testing.assert_allclose(d.box_xyxy, box.numpy(), rtol=1e-3, atol=1e-3)
                assert d.mask.dtype == np.bool_ and d.mask.shape == (im.height, im.width)
                assert _iou(d.mask, mask.numpy().astype(bool)) >= 0.99


def _same(a: list[list[Detection]], b: list[list[Detection]]) -> None:
    assert [len(x) for x in a] == [len(x) for x in b]
    for da, db in zip(a, b):
        for x, y in zip(da, db):
            assert x.prompt_index == y.prompt_index
            assert x.score == pytest.approx(y.score, abs=1e-6)
            np.testing.assert_allclose(x.box_xyxy, y.box_xyxy, rtol=1e-5, atol=1e-4)
            assert _iou(x.mask, y.mask) >= 0.999


@pytest.mark.parametrize("chunk, pad", [(1, False), (5, False), (32, False), (5, True), (32, True)])
def test_pair_chunking_does_not_change_results(m, images, text, chunk, pad):
    base = segment_batch(m, images, *text, score_threshold=THRESHOLD, pair_chunk=12)  # 12 pairs: one exact chunk
    got = segment_batch(m, images, *text, score_threshold=THRESHOLD, pair_chunk=chunk, pad_chunks=pad)
    _same(got, base)


def test_per_prompt_thresholds(m, images, text):
    everything = segment_batch(m, images, *text, score_threshold=0.0)
    n_queries = m.model.config.detr_decoder_config.num_queries
    for dets in everything:
        for p in _by_prompt(dets, len(PROMPTS)):
            assert len(p) == n_queries
            scores = [d.score for d in p]
            assert scores == sorted(scores, reverse=True)  # by score, not by query index

    thresholds = [0.0, 1.0, 0.5, 0.45]
    got = segment_batch(m, images, *text, score_threshold=thresholds)
    expected = [[d for d in dets if d.score > thresholds[d.prompt_index]] for dets in everything]
    _same(got, expected)
    counts = {p: sum(len(_by_prompt(dets, 4)[p]) for dets in got) for p in range(4)}
    assert counts[0] == n_queries * len(images) and counts[1] == 0
    assert 0 < counts[2] < counts[3] < counts[0]

    with pytest.raises(ValueError, match="3 values for 4 prompts"):
        segment_batch(m, images, *text, score_threshold=[0.5, 0.5, 0.5])


def test_max_detections_keeps_the_top_scores(m, images, text):
    everything = segment_batch(m, images, *text, score_threshold=0.0)
    capped = segment_batch(m, images, *text, score_threshold=0.0, max_detections_per_pair=3)
    expected = [[d for p in _by_prompt(dets, 4) for d in p[:3]] for dets in everything]
    _same(capped, expected)
    assert all(len(dets) == 3 * len(PROMPTS) for dets in capped)


def test_long_prompts_are_truncated_not_fatal(m, images):
    text, mask = encode_prompts(m, ["a very long description of a category " * 4, "cat"])
    assert mask.shape == (2, 32) and int(mask[0].sum()) == 32
    assert len(segment_batch(m, images[:1], text, mask, score_threshold=0.0)[0]) > 0


def test_only_kept_queries_are_upsampled(m, images, text, monkeypatch):
    """Discarded queries never reach full resolution: the upsampler sees exactly the kept masks."""
    from types import SimpleNamespace

    import torch.nn.functional as F

    from samantics_dagster.core.label import upsample

    upsampled = []

    def spy(x, *a, **kw):
        upsampled.append(x.shape[1])
        return F.interpolate(x, *a, **kw)

    monkeypatch.setattr(upsample, "F", SimpleNamespace(interpolate=spy))  # the model's own calls stay unseen
    kept = sum(len(d) for d in segment_batch(m, images, *text, score_threshold=THRESHOLD, pair_chunk=5))
    assert 0 < kept < len(images) * len(PROMPTS) * m.model.config.detr_decoder_config.num_queries
    assert sum(upsampled) == kept


def test_padding_the_image_batch_keeps_the_vision_batch_static_and_the_results(m, images, text):
    """A compiled model must see one vision batch size: the last, smaller batch is filled with copies of its
    last image, whose outputs are never read."""
    batches: list[int] = []
    hook = m.model.vision_encoder.register_forward_hook(lambda mod, args, out: batches.append(args[0].shape[0]))
    try:
        plain = segment_batch(m, images[:2], *text, score_threshold=THRESHOLD)
        padded = segment_batch(m, images[:2], *text, score_threshold=THRESHOLD, pad_images_to=4)
        alone = segment_batch(m, images[2:], *text, score_threshold=THRESHOLD, pad_images_to=4)
    finally:
        hook.remove()
    assert batches == [2, 4, 4]
    _same(padded, plain)
    _same(alone, segment_batch(m, images[2:], *text, score_threshold=THRESHOLD))


@pytest.mark.parametrize("version, device, dtype, refused", [
    ("2.14.1+cu130", "cuda", torch.bfloat16, True),
    ("2.14.0", "cuda", torch.bfloat16, True),
    ("2.13.0+cu128", "cuda", torch.bfloat16, False),
    ("2.11.0+cu130", "cuda", torch.bfloat16, False),
    ("2.14.1+cu130", "cuda", torch.float16, False),
    ("2.14.1+cu130", "cpu", torch.bfloat16, False),  # inductor's C++ backend, not Triton
])
def test_bf16_compile_is_refused_where_torch_breaks_it(version, device, dtype, refused):
    from samantics_dagster.core.label.model import CompileUnsupportedError, check_compile

    if refused:
        with pytest.raises(CompileUnsupportedError, match=r"pytorch/pytorch#197002.*compile to false"):
            check_compile(torch.device(device), dtype, version)
    else:
        check_compile(torch.device(device), dtype, version)


_CACHE_PROBE = """
import sys, torch
torch.set_num_threads(1)
from torch._dynamo.utils import counters
from samantics_dagster.core.label.detect import detect, encode_prompts
from samantics_dagster.core.label.model import load_sam3
from tests.images import photo
m = load_sam3(sys.argv[1], compile=True, compile_cache=sys.argv[2])
detect(m, [photo("astronaut", (64, 48))], *encode_prompts(m, ["car", "person"]), score_threshold=0.59,
       pair_chunk=8, pad_chunks=True, pad_images_to=2).groups()
print("hits", counters["inductor"]["fxgraph_cache_hit"], "misses", counters["inductor"]["fxgraph_cache_miss"])
"""


@pytest.mark.slow  # inductor compiles the four sub-networks: ~100 s on the shared 2-core box (measured)
def test_compiled_model_gives_the_eager_detections_and_a_new_process_reuses_its_kernels(model_dir, images, tmp_path):
    """``load_sam3(compile=True)`` with padded image batches and pair chunks (one static shape) on the CPU: same
    kept detections as eager (same prompts, same order), scores, boxes and masks within float noise. Its
    kernels land in ``compile_cache``, and a second process (a new run container) compiles nothing again."""
    import subprocess
    import sys

    cache = tmp_path / "torchinductor"
    eager, compiled = load_sam3(model_dir), load_sam3(model_dir, compile=True, compile_cache=cache)
    assert compiled.compiled
    kw = dict(score_threshold=THRESHOLD, pair_chunk=8, pad_chunks=True, pad_images_to=2)
    a = segment_batch(eager, images, *encode_prompts(eager, PROMPTS), **kw)
    b = segment_batch(compiled, images, *encode_prompts(compiled, PROMPTS), **kw)
    assert sum(len(x) for x in a) > 0
    _same(b, a)
    assert any((cache / "fxgraph").rglob("*")), "no FX graph in the compile cache"

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)  # the probe must find the cache through compile_cache alone
    for _ in range(2):  # the first run may add graphs for its own shapes; the second must hit them all
        out = subprocess.run([sys.executable, "-c", _CACHE_PROBE, str(model_dir), str(cache)], capture_output=True,
                             text=True, timeout=900, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
    hits, misses = (int(x) for x in out.stdout.split()[-3::2])
    assert hits > 0 and misses == 0, out.stdout


BF16_SCORE_TOL = 0.01  # |score_bf16 - score_fp32| per query; measured on the CPU: max 0.0015 (boxes 0.004)
BF16_BOX_TOL = 0.02  # normalised box coordinates
BF16_MIN_IOU = 0.9  # masks of the detections both precisions keep


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])])
def test_bf16_detections_match_fp32_within_the_stated_tolerance(model_dir, images, device):
    """What labelling on a GPU in bf16 changes against fp32 on the tiny model: per query, scores within
    BF16_SCORE_TOL and boxes within BF16_BOX_TOL; the same detections kept (those within the score tolerance
    of the threshold aside), their masks at IoU >= BF16_MIN_IOU. The labeler records the precision because of
    the borderline ones."""
    ref, low = load_sam3(model_dir, device=device, dtype="fp32"), load_sam3(model_dir, device=device, dtype="bf16")
    near = 0
    for im in images:
        for p in PROMPTS:
            scores, boxes = [], []
            for m in (ref, low):
                inp = m.processor(images=im, text=p, return_tensors="pt").to(m.device)
                with torch.inference_mode():
                    out = m.model(**{k: (v.to(m.dtype) if v.is_floating_point() else v) for k, v in inp.items()})
                scores.append((out.pred_logits.float().sigmoid() * out.presence_logits.float().sigmoid())[0].cpu())
                boxes.append(out.pred_boxes.float()[0].cpu())
            assert (scores[0] - scores[1]).abs().max() <= BF16_SCORE_TOL, (im.size, p)
            assert (boxes[0] - boxes[1]).abs().max() <= BF16_BOX_TOL, (im.size, p)
            near += int(((scores[0] - THRESHOLD).abs() <= BF16_SCORE_TOL).sum())
    a = segment_batch(ref, images, *encode_prompts(ref, PROMPTS), score_threshold=THRESHOLD)
    b = segment_batch(low, images, *encode_prompts(low, PROMPTS), score_threshold=THRESHOLD)
    assert sum(len(x) for x in a) > 0
    for da, db in zip(a, b):
        for pa, pb in zip(_by_prompt(da, len(PROMPTS)), _by_prompt(db, len(PROMPTS))):
            if len(pa) != len(pb):
                near -= abs(len(pa) - len(pb))
                assert near >= 0, "a detection changed sides of the threshold without being near it"
                continue
            for d in pb:
                assert max(_iou(d.mask, e.mask) for e in pa) >= BF16_MIN_IOU


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_production_path_device_rle_equals_pycocotools_and_the_cpu(model_dir, images):
    """The CUDA path as the pipeline runs it (``detect``'s defaults: run lengths on the device, copied into
    pinned host memory without blocking, read after the event): byte-identical to pycocotools on the same
    device's masks, and the same detections as the CPU."""
    from pycocotools import mask as mask_utils

    from samantics_dagster.core.label.detect import detect

    cpu, gpu = load_sam3(model_dir, device="cpu"), load_sam3(model_dir, device="cuda", dtype="fp32")
    text = encode_prompts(gpu, PROMPTS)
    pending = detect(gpu, images, *text, score_threshold=THRESHOLD, pair_chunk=5)
    groups = pending.groups()  # waits on the event recorded after the last copy
    assert all(g.runs is not None and g.masks is None for per in groups for g in per)  # no full mask came back
    rles = [[r["counts"] for g in per for r in g.runs.rles()] for per in groups]
    masks = segment_batch(gpu, images, *text, score_threshold=THRESHOLD, pair_chunk=5)  # host masks, same device
    for im, mine, dets in zip(images, rles, masks):
        ref = [r["counts"].decode() for r in mask_utils.encode(
            np.asfortranarray(np.stack([d.mask for d in dets], -1).astype(np.uint8)))] if dets else []
        assert mine == ref, im.size
    # The CPU's detections: the same ones clear of the threshold (cuDNN convolutions may use TF32), same scores.
    tol = 1e-3
    for da, db in zip(segment_batch(cpu, images, *encode_prompts(cpu, PROMPTS), score_threshold=THRESHOLD), masks):
        for pa, pb in zip(_by_prompt(da, len(PROMPTS)), _by_prompt(db, len(PROMPTS))):
            sa = [d.score for d in pa if d.score > THRESHOLD + tol]
            sb = [d.score for d in pb if d.score > THRESHOLD + tol]
            assert len(sa) == len(sb)
            np.testing.assert_allclose(sa, sb, rtol=0, atol=tol)


# --- finding and loading weights ---------------------------------------------------------------

def _hub_cache(root: Path, snapshot: Path, revs: list[str], main: str | None) -> Path:
    """The Hugging Face cache layout: blobs + snapshot folders of symlinks + refs/main."""
    repo = root / "models--facebook--sam3"
    (repo / "blobs").mkdir(parents=True)
    for rev in revs:
        snap = repo / "snapshots" / rev
        snap.mkdir(parents=True)
        for f in snapshot.iterdir():
            blob = repo / "blobs" / f"{rev}-{f.name}"
            shutil.copy(f, blob)
            (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    if main is not None:
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(main)
    return root


def test_resolve_snapshot_folder_itself(model_dir):
    assert resolve_model_dir(model_dir) == model_dir


def test_resolve_hub_cache_follows_refs_main(model_dir, tmp_path):
    cache = _hub_cache(tmp_path / "cache", model_dir, ["aaa111", "bbb222"], main="aaa111")
    newer = cache / "models--facebook--sam3" / "snapshots" / "bbb222"
    os.utime(newer, (2e9, 2e9))  # the other snapshot is newer: refs/main must still win
    assert resolve_model_dir(cache) == cache / "models--facebook--sam3" / "snapshots" / "aaa111"


def test_resolve_hub_cache_without_refs_takes_newest(model_dir, tmp_path):
    cache = _hub_cache(tmp_path / "cache", model_dir, ["aaa111", "bbb222"], main=None)
    snaps = cache / "models--facebook--sam3" / "snapshots"
    os.utime(snaps / "aaa111", (2e9, 2e9))
    assert resolve_model_dir(cache) == snaps / "aaa111"
    # HF_HOME layout: the cache is under hub/
    home = tmp_path / "home"
    shutil.copytree(cache, home / "hub", symlinks=True)
    assert resolve_model_dir(home).parent == home / "hub" / "models--facebook--sam3" / "snapshots"


@pytest.mark.parametrize("sub", ["facebook/sam3", "sam3"])
def test_resolve_parent_folder(model_dir, tmp_path, sub):
    shutil.copytree(model_dir, tmp_path / sub)
    assert resolve_model_dir(tmp_path) == tmp_path / sub


def test_missing_model_cache_says_where_and_how(tmp_path):
    cache = tmp_path / "nowhere"
    with pytest.raises(ModelNotFoundError) as e:
        resolve_model_dir(cache)
    msg = str(e.value)
    assert str(cache) in msg and "MODEL_CACHE" in msg and "hf download facebook/sam3" in msg
    assert str(cache / "facebook" / "sam3") in msg and "models--facebook--sam3" in msg
    assert isinstance(e.value, FileNotFoundError)


def test_empty_model_cache_is_not_found(tmp_path):
    with pytest.raises(ModelNotFoundError, match="No facebook/sam3 snapshot found"):
        resolve_model_dir(tmp_path)


@pytest.mark.parametrize("remove, named", [
    (["model.safetensors"], "safetensors"),
    (["tokenizer.json"], "tokenizer.json"),
    (["processor_config.json"], "processor_config.json"),
])
def test_incomplete_snapshot_names_missing_files(model_dir, tmp_path, remove, named):
    folder = tmp_path / "facebook" / "sam3"
    shutil.copytree(model_dir, folder)
    for f in remove:
        (folder / f).unlink()
    with pytest.raises(ModelNotFoundError) as e:
        resolve_model_dir(tmp_path)
    msg = str(e.value)
    assert "incomplete" in msg and named in msg and str(folder) in msg and "MODEL_CACHE" in msg


def test_hub_snapshot_with_unfinished_blob_is_incomplete(model_dir, tmp_path):
    cache = _hub_cache(tmp_path / "cache", model_dir, ["aaa111"], main="aaa111")
    (cache / "models--facebook--sam3" / "blobs" / "aaa111-model.safetensors").unlink()  # dangling symlink
    with pytest.raises(ModelNotFoundError, match=r"incomplete: missing \*\.safetensors"):
        resolve_model_dir(cache)


def test_load_is_offline_and_fingerprint_is_stable(model_dir, tmp_path, monkeypatch):
    import transformers

    calls = []
    for cls in (transformers.Sam3Model, transformers.Sam3Processor):
        orig = cls.from_pretrained.__func__

        def spy(klass, path, *a, _orig=orig, **kw):
            calls.append((klass.__name__, kw.get("local_files_only")))
            return _orig(klass, path, *a, **kw)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))

    cache = _hub_cache(tmp_path / "cache", model_dir, ["aaa111"], main="aaa111")
    a = load_sam3(resolve_model_dir(cache))  # through symlinked Hub-cache files, like real weights
    assert sorted(calls) == [("Sam3Model", True), ("Sam3Processor", True)]
    assert a.device == torch.device("cpu") and a.dtype == torch.float32 and not a.model.training
    b = load_sam3(model_dir)
    assert a.fingerprint == b.fingerprint == model_fingerprint(model_dir)
    assert len(a.fingerprint) == 16

    changed = tmp_path / "changed"
    shutil.copytree(model_dir, changed)
    cfg = json.loads((changed / "config.json").read_text())
    cfg["detector_config"]["detr_decoder_config"]["num_queries"] = 17
    (changed / "config.json").write_text(json.dumps(cfg))
    assert model_fingerprint(changed) != a.fingerprint


def test_bad_dtype_is_rejected(model_dir):
    with pytest.raises(ValueError, match="dtype must be"):
        load_sam3(model_dir, dtype="int8")


# --- the checkpoint's shape: one sam3_video folder, detector and tracker ---------------------------

def test_fixture_has_the_real_checkpoints_shape(model_dir):
    """config.json is a sam3_video config and the weights carry the real checkpoint's three prefixes, once."""
    from safetensors import safe_open

    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["model_type"] == "sam3_video" and cfg["architectures"] == ["Sam3VideoModel"]
    assert cfg["detector_config"]["model_type"] == "sam3"
    assert cfg["tracker_config"]["model_type"] == "sam3_tracker_video"
    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert {k.split(".")[0] for k in keys} == {"detector_model", "tracker_model", "tracker_neck"}
    assert not [k for k in keys if k.startswith("tracker_model.tracker_model.")]
    assert "tracker_model.prompt_encoder.point_embed.weight" in keys  # a name the conversion script writes


@pytest.mark.parametrize("cls_name", ["Sam3Model", "Sam3TrackerModel"])
def test_detector_and_tracker_load_from_the_one_folder_with_no_missing_or_unexpected_keys(model_dir, cls_name):
    import transformers
    from safetensors.torch import load_file

    cls = getattr(transformers, cls_name)
    model, info = cls.from_pretrained(model_dir, local_files_only=True, output_loading_info=True)
    assert {k: len(v) for k, v in info.items()} == {
        "missing_keys": 0, "unexpected_keys": 0, "mismatched_keys": 0, "error_msgs": 0}, info
    # The values are the file's, not fresh random ones: the tracker's ViT is the detector's, its neck tracker_neck.
    saved = load_file(str(model_dir / "model.safetensors"))
    mine = model.state_dict()
    if cls_name == "Sam3Model":
        pairs = [("detr_decoder.presence_head.layer3.bias", "detector_model.detr_decoder.presence_head.layer3.bias")]
    else:
        pairs = [("vision_encoder.backbone.layers.0.attention.q_proj.weight",
                  "detector_model.vision_encoder.backbone.layers.0.attention.q_proj.weight"),
                 ("vision_encoder.neck.fpn_layers.0.proj1.weight", "tracker_neck.fpn_layers.0.proj1.weight"),
                 ("mask_decoder.iou_token.weight", "tracker_model.mask_decoder.iou_token.weight")]
        assert not torch.equal(saved["tracker_neck.fpn_layers.0.proj1.weight"],
                               saved["detector_model.vision_encoder.neck.fpn_layers.0.proj1.weight"])
    for ours, theirs in pairs:
        assert torch.equal(mine[ours], saved[theirs]), ours


def test_both_processors_load_from_the_folder(model_dir):
    from transformers import Sam3Processor, Sam3TrackerProcessor

    for cls in (Sam3Processor, Sam3TrackerProcessor):
        proc = cls.from_pretrained(model_dir, local_files_only=True)
        assert (proc.image_processor.size.height, proc.image_processor.size.width) == (112, 112)


def test_tracker_loader_segments_a_click(model_dir, images):
    """``load_sam3_tracker``: one positive point on an image gives one mask in that image's own pixels."""
    t = load_sam3_tracker(model_dir)
    assert t.fingerprint == model_fingerprint(model_dir) and not t.model.training
    im = images[0]
    inp = t.processor(images=im, input_points=[[[[30, 20]]]], input_labels=[[[1]]], return_tensors="pt")
    with torch.inference_mode():
        out = t.model(**inp, multimask_output=False)
    masks = t.processor.post_process_masks(out.pred_masks, inp["original_sizes"])
    assert masks[0].shape == (1, 1, im.height, im.width)


def test_a_folder_without_tracker_weights_is_refused_not_filled_with_noise(tmp_path):
    """A detector-only export (a plain ``Sam3Config`` folder) still labels, but the tracker would be
    random: the loader says so instead of returning it."""
    model, processor = build_tiny_sam3(seed=0)
    folder = tmp_path / "detector-only"
    model.detector_model.save_pretrained(folder)
    processor.save_pretrained(folder)
    assert load_sam3(folder).model is not None
    with pytest.raises(IncompleteWeightsError, match=r"Sam3TrackerModel from .* weights missing") as e:
        load_sam3_tracker(folder)
    assert "sam3_video" in str(e.value) and "MODEL_CACHE" in str(e.value)
