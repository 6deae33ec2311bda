"""The GPU-only parts of ``bench_sam3.py --full``: NVML busy, peak memory, the 100-megapixel frame, and the
equivalence check against transformers' own per-(image, prompt) path. Kept apart so the main script
stays readable; imports only torch, numpy, PIL, transformers and pycocotools (plus nvidia-ml-py if present)."""

from __future__ import annotations

import threading
import time

import numpy as np
import torch
from PIL import Image

from samantics_dagster.core.label.detect import detect, encode_prompts
from samantics_dagster.core.label.masks import decode_rle
from samantics_dagster.core.label.model import LoadedSam3
from samantics_dagster.core.label.pipeline import load_image


class GpuBusy:
    """Samples NVML utilisation while the block runs (needs nvidia-ml-py; 'n/a' without it)."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()

    def __enter__(self):
        if not torch.cuda.is_available():
            return self
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        except Exception:  # noqa: BLE001 - no NVML: nothing to sample
            return self

        def run() -> None:
            while not self._stop.wait(0.05):
                self.samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def figure(self) -> str:
        return f"{np.mean(self.samples):.0f}%" if self.samples else "n/a"


def print_table(header: tuple, rows: list[tuple]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_mib() -> str:
    return f"{torch.cuda.max_memory_allocated() / 2**20:.0f}" if torch.cuda.is_available() else "-"


def _rles(groups) -> list[str]:
    return [r["counts"] for per in groups for g in per for r in g.runs.rles()]


def big_frame_check(m: LoadedSam3, side: int = 10_000, k: int = 10, per_prompt: int = 15) -> None:
    """One 100-megapixel frame with k x per_prompt = 150 instances: labelled in budget-sized chunks
    without running out of memory, and (if the card holds it) the same RLE as all masks at once."""
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 255, (side // 100, side // 100, 3), dtype=np.uint8))
    frame = small.resize((side, side), Image.BILINEAR)
    text, mask = encode_prompts(m, [f"thing {i}" for i in range(k)])
    rows, ref = [], None
    for label, budget in [("chunked, default budget", None), ("chunked, 512 MB", 512.0), ("unchunked", 1e9)]:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        reset_peak()
        t0 = time.perf_counter()
        try:
            groups = detect(m, [frame], text, mask, score_threshold=0.0, max_detections_per_pair=per_prompt,
                            upsample_budget_mb=budget, device_rle=True).groups()
            rles = _rles(groups)
            same = "reference" if ref is None else ("yes" if rles == ref else "no")
            ref = ref or rles
            rows.append((label, len(rles), f"{time.perf_counter() - t0:.2f}", peak_mib(), same))
        except torch.OutOfMemoryError as exc:
            rows.append((label, "-", f"{time.perf_counter() - t0:.2f}", peak_mib(), f"OOM ({str(exc)[:60]})"))
    print(f"## one {side}x{side} frame ({side * side / 1e6:.0f} MP), {k} prompts x {per_prompt} kept\n")
    print_table(("upsampling", "instances", "seconds", "peak GPU MiB", "RLE same as chunked"), rows)


def equivalence_check(m: LoadedSam3, store, names: list[str], prompts: list[str], per_prompt: int, calibrate) -> None:
    """Against transformers' documented path (one forward per (image, prompt), HF post-processing):
    same kept instances per pair, boxes within 1e-3 of the image size, mask IoU >= 0.99."""
    images = [load_image(store.path_for(n)) for n in names]
    threshold = calibrate(m, images[0], prompts, per_prompt)
    text, tmask = encode_prompts(m, prompts)
    ours = detect(m, images, text, tmask, score_threshold=threshold, device_rle=True).groups()
    pairs = same_count = 0
    box_err, ious, near = 0.0, [], 0
    with torch.inference_mode():
        for i, im in enumerate(images):
            mine = [(int(g.prompt_index[j]), float(g.scores[j]), g.boxes_xyxy[j], r)
                    for g in ours[i] for j, r in enumerate(g.runs.rles())]
            for p, prompt in enumerate(prompts):
                inp = m.processor(images=im, text=prompt, return_tensors="pt").to(m.device)
                out = m.model(**{k: (v.to(m.dtype) if v.is_floating_point() else v) for k, v in inp.items()})
                ref = m.processor.post_process_instance_segmentation(
                    out, threshold=threshold, mask_threshold=0.5, target_sizes=[im.size[::-1]])[0]
                order = ref["scores"].float().argsort(descending=True)
                r_scores = ref["scores"].float()[order].cpu().numpy()
                r_boxes = ref["boxes"].float()[order].cpu().numpy()
                r_masks = ref["masks"][order].bool().cpu().numpy()
                m_p = [d for d in mine if d[0] == p]
                pairs += 1
                all_s = (out.pred_logits.float().sigmoid() * out.presence_logits.float().sigmoid())[0]
                near += int(((all_s - threshold).abs() < 5e-3).sum())
                if len(m_p) != len(r_scores):
                    continue
                same_count += 1
                scale = max(im.size)
                for d, b, rm in zip(m_p, r_boxes, r_masks):
                    box_err = max(box_err, float(np.abs(d[2] - b).max()) / scale)
                    dm = decode_rle(d[3])
                    union = np.logical_or(dm, rm).sum()
                    ious.append(1.0 if union == 0 else float(np.logical_and(dm, rm).sum() / union))
    min_iou = min(ious) if ious else float("nan")
    ok = same_count == pairs and box_err <= 1e-3 and (not ious or min_iou >= 0.99)
    print(f"## equivalence vs transformers per-(image, prompt) forward + post_process_instance_segmentation "
          f"({len(images)} images x {len(prompts)} prompts, {m.dtype})\n")
    print(f"pairs with the same kept count: {same_count}/{pairs} (queries within 5e-3 of the threshold: {near}); "
          f"instances compared: {len(ious)}; max box error / image size: {box_err:.2e}; min mask IoU: {min_iou:.4f}; "
          f"equivalence: {'PASS' if ok else 'FAIL'}")
