"""Click-to-mask latency: a first click on an image (its embedding computed) against further clicks on it
(the embedding from the cache: prompt encoder + mask decoder + the polygon), per HTTP request to the real
server (``samantics ml-backend``'s, in this process on a thread), and the cache's memory per image.

Baseline, same run, same clicks: the server with a zero-byte cache, where every click embeds the image
again (what a backend without the cache costs per click). Also, in process: the three parts of a click
(embedding, decoder, polygon) and, from a meta-device model (shapes only, no weights), what one cached image
takes with ``facebook/sam3``'s full-size tracker at 1008 px in bf16.

On the CPU the model is the tiny random SAM3 (``demo/tiny_sam3.py``): its masks are scattered blobs, so the
polygon tracer (``core/export/yolo.trace_mask``) is a large share of a click there; a real object's mask
traces in a few ms. ``--full`` (GPU) times the full-size tracker with random weights in bf16 in process.

    python benchmarks/bench_ml_backend.py            # tiny model, CPU, through HTTP
    python benchmarks/bench_ml_backend.py --full     # full-size tracker, GPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from samantics_dagster.core.dataset.layout import DatasetLayout  # noqa: E402
from samantics_dagster.core.label.model import LoadedTracker, load_sam3_tracker  # noqa: E402
from samantics_dagster.core.review.convert import labeling_config  # noqa: E402
from samantics_dagster.core.review_backend.cache import EmbeddingCache  # noqa: E402
from samantics_dagster.core.review_backend.prompts import Prompt  # noqa: E402
from samantics_dagster.core.review_backend.regions import mask_region  # noqa: E402
from samantics_dagster.core.review_backend.segment import ClickSegmenter  # noqa: E402
from samantics_dagster.core.review_backend.server import make_server  # noqa: E402
from samantics_dagster.core.review_backend.service import BackendSettings, MLBackend  # noqa: E402

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry"]
W, H = 640, 480


def photos(n: int) -> list[Image.Image]:
    from skimage import data

    return [Image.fromarray(np.asarray(getattr(data, PHOTOS[i % len(PHOTOS)])())).convert("RGB").resize((W, H))
            for i in range(n)]


def clicks(rng: np.random.Generator, n: int) -> list[list[dict]]:
    """n growing click sequences (the editor sends every click of the label so far): +, then +/- points."""
    out, pts = [], []
    for k in range(n):
        pts = pts + [{"type": "keypointlabels", "to_name": "image", "is_positive": k % 3 != 2,
                      "value": {"x": float(rng.uniform(10, 90)), "y": float(rng.uniform(10, 90)), "width": 1,
                                "keypointlabels": ["car"]}}]
        out.append(list(pts))
    return out


class Server:
    def __init__(self, model_dir: Path, dataset: Path, cache_bytes: int) -> None:
        settings = BackendSettings(model_dir=model_dir, dataset_dir=dataset, cache_bytes=cache_bytes, device="cpu")
        self.backend = MLBackend(settings, lambda: load_sam3_tracker(model_dir, device="cpu"))
        self.http = make_server(self.backend, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.backend.start_loading().join()
        self.client = httpx.Client(timeout=120)
        assert self.client.get(f"{self.url}/health").json()["model"] == "ready"

    def click(self, dhash: str, context: list[dict], config: str) -> tuple[float, dict]:
        body = {"tasks": [{"id": 1, "data": {"image": "", "dhash": dhash}}], "label_config": config,
                "params": {"context": {"result": context}}}
        t0 = time.perf_counter()
        r = self.client.post(f"{self.url}/predict", json=body)
        ms = (time.perf_counter() - t0) * 1000.0
        assert r.status_code == 200, r.text
        return ms, r.json()["results"][0]

    def close(self) -> None:
        self.client.close()
        self.http.shutdown()
        self.http.server_close()


def full_size_embedding_mb(dtype: torch.dtype = torch.bfloat16) -> float:
    """One cached image of facebook/sam3's tracker (default ``Sam3TrackerConfig``, 1008 px), from shapes only."""
    from transformers import Sam3TrackerConfig, Sam3TrackerModel

    with torch.device("meta"):
        model = Sam3TrackerModel(Sam3TrackerConfig()).to(dtype)
        size = model.config.vision_config.backbone_config.image_size
        maps = model.get_image_embeddings(torch.empty(1, 3, size, size, dtype=dtype))
    return sum(m.numel() * m.element_size() for m in maps) / 1e6


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def run_cpu(n_images: int, n_clicks: int) -> None:
    from samantics_dagster.demo.tiny_sam3 import save_tiny_sam3

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_tiny_sam3(Path(tmp) / "model")
        layout = DatasetLayout(Path(tmp) / "dataset")
        images = photos(n_images)
        hashes = [f"{i:016x}" for i in range(n_images)]
        for d, img in zip(hashes, images):
            layout.image(d).parent.mkdir(parents=True, exist_ok=True)
            img.save(layout.image(d), "JPEG", quality=92)
        config = labeling_config(["car"])
        rng = np.random.default_rng(0)
        cached, uncached = Server(model_dir, layout.root, 1 << 30), Server(model_dir, layout.root, 0)
        first, nxt, base = [], [], []
        try:
            for d in hashes:
                seq = clicks(rng, n_clicks + 1)
                ms, res = cached.click(d, seq[0], config)
                assert not res["cached_embedding"]
                first.append(ms)
                for ctx in seq[1:]:  # interleaved: the same click on both servers
                    ms, res = cached.click(d, ctx, config)
                    assert res["cached_embedding"]
                    nxt.append(ms)
                    ms, res = uncached.click(d, ctx, config)
                    assert not res["cached_embedding"]
                    base.append(ms)
            stats = cached.backend.cache.stats()
            per_image_mb = stats.bytes / stats.items / 1e6
        finally:
            cached.close()
            uncached.close()
        # the parts of a click, in process
        tracker = load_sam3_tracker(model_dir, device="cpu")
        seg = ClickSegmenter(tracker, EmbeddingCache(0))
        emb_ms, dec_ms, poly_ms = [], [], []
        for img in images:
            t0 = time.perf_counter()
            emb, _ = seg.embedding("x", lambda img=img: img)
            t1 = time.perf_counter()
            mask, score = seg.decode(emb, Prompt("car", "image", [(W * 0.4, H * 0.5)], [1]))
            t2 = time.perf_counter()
            mask_region(mask, "car", "label", "image", score)
            t3 = time.perf_counter()
            emb_ms.append((t1 - t0) * 1e3), dec_ms.append((t2 - t1) * 1e3), poly_ms.append((t3 - t2) * 1e3)
    full_mb = full_size_embedding_mb()
    a, b, c = med(first), med(nxt), med(base)
    print(f"\nclick-to-mask, tiny random SAM3 tracker on the CPU, one thread, {W}x{H} JPEGs from the store, "
          f"{n_images} images x {n_clicks} further clicks, median ms per HTTP request")
    print("| what | ms per request | vs. no cache |")
    print("|---|---|---|")
    print(f"| first click on an image (embedding computed) | {a:.1f} | |")
    print(f"| further clicks, embedding cached | {b:.1f} | {c / b:.1f}x faster |")
    print(f"| baseline: further clicks with a zero-byte cache (every click embeds again) | {c:.1f} | 1x |")
    print(f"\nparts of a click in process (median ms): embedding {med(emb_ms):.1f}, decoder {med(dec_ms):.1f}, "
          f"polygon {med(poly_ms):.1f} (the tiny model's blob masks; a real mask traces in a few ms)")
    print(f"cache memory per image: {per_image_mb:.3f} MB (tiny model, fp32); facebook/sam3's tracker at 1008 px in "
          f"bf16: {full_mb:.1f} MB (from shapes), so 1 GB holds {int(1024 / full_mb)} images")
    print(f"bar: a further click costs less with the cache than without it: {'pass' if b < c else 'FAIL'} "
          f"({c / b:.2f}x; the tiny model's ViT is cheap, so the gain is small here and large on the full model)")
    print(f"ml backend: first click {a:.0f} ms, next clicks {b:.0f} ms (cached embedding), {per_image_mb:.3f} MB per cached image")


def run_full(n_images: int, n_clicks: int) -> None:
    from transformers import Sam3TrackerConfig, Sam3TrackerModel, Sam3TrackerProcessor
    from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor

    if not torch.cuda.is_available():
        raise SystemExit("--full needs a CUDA GPU")
    dev, dt = torch.device("cuda"), torch.bfloat16
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Sam3TrackerModel(Sam3TrackerConfig()).to(dev, dt).eval()
    size = model.config.vision_config.backbone_config.image_size
    processor = Sam3TrackerProcessor(image_processor=Sam3ImageProcessor(size={"height": size, "width": size}))
    tracker = LoadedTracker(model=model, processor=processor, device=dev, dtype=dt, fingerprint="random")
    seg = ClickSegmenter(tracker, EmbeddingCache(8 << 30))
    images = photos(n_images)
    rng = np.random.default_rng(0)
    emb_ms, dec_ms, poly_ms = [], [], []
    for warm in (True, False):
        for i, img in enumerate(images):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            emb, _ = seg.embedding(f"{warm}{i}", lambda img=img: img)
            torch.cuda.synchronize()
            t1 = time.perf_counter()
            for _ in range(n_clicks):
                p = Prompt("car", "image", [(float(rng.uniform(0, W)), float(rng.uniform(0, H)))], [1])
                t2 = time.perf_counter()
                mask, score = seg.decode(emb, p)
                t3 = time.perf_counter()
                mask_region(mask, "car", "label", "image", score)
                t4 = time.perf_counter()
                if not warm:
                    dec_ms.append((t3 - t2) * 1e3), poly_ms.append((t4 - t3) * 1e3)
            if not warm:
                emb_ms.append((t1 - t0) * 1e3)
    st = seg.cache.stats()
    print(f"\nclick-to-mask, full-size SAM3 tracker (random weights) on {torch.cuda.get_device_name()}, bf16, "
          f"{W}x{H}, {n_images} images x {n_clicks} clicks, median ms, in process")
    print("| what | ms |")
    print("|---|---|")
    print(f"| embedding (first click's extra) | {med(emb_ms):.1f} |")
    print(f"| decoder (every click) | {med(dec_ms):.1f} |")
    print(f"| polygon (random weights' mask) | {med(poly_ms):.1f} |")
    print(f"cache: {st.bytes / st.items / 1e6:.1f} MB per image; peak GPU memory "
          f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    print(f"bar: further clicks cost less than the first: {'pass' if med(dec_ms) < med(emb_ms) else 'FAIL'}")
    a = med(emb_ms) + med(dec_ms) + med(poly_ms)
    b = med(dec_ms) + med(poly_ms)
    print(f"ml backend: first click {a:.0f} ms, next clicks {b:.0f} ms (cached embedding), "
          f"{st.bytes / st.items / 1e6:.1f} MB per cached image")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 images x 3 clicks (CI)")
    ap.add_argument("--full", action="store_true", help="full-size tracker on a GPU")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--clicks", type=int, default=8)
    args = ap.parse_args()
    n, k = (2, 3) if args.quick else (args.images, args.clicks)
    (run_full if args.full else run_cpu)(n, k)


if __name__ == "__main__":
    main()
