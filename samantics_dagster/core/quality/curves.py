"""Per class: precision, recall and F1 of the candidates at every threshold, the suggested threshold, and
bootstrap intervals that resample frames.

Counts are kept per frame and per threshold of a grid (``tp[f, g]``: matched candidates of frame f scoring
above grid[g]), so a bootstrap resample is a weighted sum over frames (a multinomial draw of frame counts),
not a re-matching: hundreds of resamples cost milliseconds. Frames, not instances, are resampled because
instances of one frame are not independent (one bad frame gives several misses at once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from samantics_dagster.core.quality.matching import FrameMatch

GRID_STEP = 0.01


def threshold_grid(floor: float, extra: Sequence[float] = ()) -> np.ndarray:
    """Thresholds from the candidate floor to 0.99 in steps of 0.01, plus ``extra`` (today's thresholds)."""
    grid = np.round(np.arange(np.ceil(floor / GRID_STEP) * GRID_STEP, 1.0, GRID_STEP), 4)
    return np.unique(np.concatenate([grid, np.asarray(list(extra), dtype=np.float64)]))


@dataclass
class ClassCounts:
    """One class over a set of frames: per frame and grid threshold, true and false positives, and the
    IoU summed over the true positives; per frame, the reviewed instances."""

    grid: np.ndarray  # [G]
    tp: np.ndarray  # [F, G]
    fp: np.ndarray  # [F, G]
    iou: np.ndarray  # [F, G]
    truth: np.ndarray  # [F]

    @property
    def frames(self) -> int:
        return int(self.tp.shape[0])


def class_counts(frames: Sequence[FrameMatch], category_id: int, grid: np.ndarray) -> ClassCounts:
    g32 = grid.astype(np.float32)
    tp = np.zeros((len(frames), len(grid)))
    fp = np.zeros_like(tp)
    iou = np.zeros_like(tp)
    truth = np.zeros(len(frames))
    for f, frame in enumerate(frames):
        truth[f] = frame.reviewed.get(category_id, 0)
        for c in frame.candidates:
            if c.category_id != category_id:
                continue
            above = np.float32(c.score) > g32  # as the device compares (``candidates.passes``)
            if c.matched:
                tp[f] += above
                iou[f] += above * c.iou
            else:
                fp[f] += above
    return ClassCounts(grid, tp, fp, iou, truth)


def prf(tp: np.ndarray, fp: np.ndarray, truth: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 from summed counts; precision of nothing kept is 1 (no false positive), recall
    with nothing to find is 1, F1 0 where both are undefined by data."""
    kept = tp + fp
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(kept > 0, tp / np.maximum(kept, 1e-12), 1.0)
        recall = np.where(np.asarray(truth) > 0, tp / np.maximum(truth, 1e-12), 1.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return precision, recall, f1


def suggest(grid: np.ndarray, precision: np.ndarray, f1: np.ndarray, precision_target: float | None = None) -> int:
    """Index of the suggested threshold: with a precision target, the lowest threshold meeting it (the most
    recall at that precision); else the middle of the best-F1 run (a plateau of equal F1 spans the gap
    between the lowest true and the highest false score: its middle is furthest from both)."""
    if precision_target is not None:
        meets = np.flatnonzero(precision >= precision_target - 1e-12)
        if len(meets):
            return int(meets[0])
    best = float(f1.max())
    at = np.flatnonzero(f1 >= best - 1e-9)
    run_end = at[0]
    while run_end + 1 < len(f1) and f1[run_end + 1] >= best - 1e-9:
        run_end += 1
    return int((at[0] + run_end) // 2)


@dataclass
class Interval:
    low: float
    high: float

    def as_list(self) -> list[float]:
        return [round(self.low, 4), round(self.high, 4)]


@dataclass
class ClassCurve:
    """A class's PR curve over one set of frames, and the threshold it suggests, with the evidence."""

    category_id: int
    frames: int
    reviewed: int  # reviewed instances of the class
    candidates: int  # candidates of the class at the floor
    grid: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    mean_iou: np.ndarray  # of matched candidates above each threshold (nan: none)
    suggested: float
    intervals: dict[str, Interval]  # threshold, precision, recall, f1 at the suggestion

    def at(self, threshold: float) -> dict[str, float | None]:
        k = int(np.argmin(np.abs(self.grid - threshold)))
        iou = self.mean_iou[k]
        return {"precision": round(float(self.precision[k]), 4), "recall": round(float(self.recall[k]), 4),
                "f1": round(float(self.f1[k]), 4), "mean_iou": None if np.isnan(iou) else round(float(iou), 4)}


def class_curve(frames: Sequence[FrameMatch], category_id: int, grid: np.ndarray, *,
                precision_target: float | None = None, resamples: int = 400, seed: int = 0,
                level: float = 0.95) -> ClassCurve:
    """The class's curve over ``frames`` and the suggestion with bootstrap intervals (``level`` coverage)."""
    counts = class_counts(frames, category_id, grid)
    tp, fp, truth = counts.tp.sum(0), counts.fp.sum(0), counts.truth.sum()
    precision, recall, f1 = prf(tp, fp, truth)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_iou = np.where(tp > 0, counts.iou.sum(0) / np.maximum(tp, 1e-12), np.nan)
    k = suggest(grid, precision, f1, precision_target)
    intervals: dict[str, Interval] = {}
    if counts.frames and resamples > 0:
        rng = np.random.default_rng(seed)
        weights = rng.multinomial(counts.frames, np.full(counts.frames, 1.0 / counts.frames), size=resamples)
        b_tp, b_fp, b_truth = weights @ counts.tp, weights @ counts.fp, weights @ counts.truth
        b_p, b_r, b_f1 = prf(b_tp, b_fp, b_truth[:, None])
        b_k = np.array([suggest(grid, b_p[b], b_f1[b], precision_target) for b in range(resamples)])
        lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
        for name, values in (("threshold", grid[b_k]), ("precision", b_p[:, k]), ("recall", b_r[:, k]),
                             ("f1", b_f1[:, k])):
            intervals[name] = Interval(float(np.percentile(values, lo)), float(np.percentile(values, hi)))
    candidates = sum(1 for f in frames for c in f.candidates if c.category_id == category_id)
    return ClassCurve(category_id, counts.frames, int(truth), candidates, grid, precision, recall, f1, mean_iou,
                      float(grid[k]), intervals)
