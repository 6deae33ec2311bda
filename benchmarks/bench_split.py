"""Grouped split benchmark: how close the val share lands to its target, against scikit-learn's GroupShuffleSplit.

    .venv/bin/python benchmarks/bench_split.py [--seeds 50 --videos 50] [--quick]

Each seed draws ``--videos`` videos of unequal length (5 to 200 frames, one of four classes each) and splits
their frames 85/15 grouped by video, with the pipeline's splitter (``core.curate.split.assign_splits``: folds
of videos sized in frames, stratified by class) and with ``GroupShuffleSplit(test_size=0.15)`` (the usual
grouped split, which sizes in videos). The table shows the val share's error in percentage points, mean and
max over the seeds, and the time per split. Both see the same frames; no video is ever in two splits.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.model_selection import GroupShuffleSplit

from samantics_dagster.core.curate.split import assign_splits, parse_ratios, split_shares

CLASSES = ("car", "dog", "cat", "bird")


def random_videos(rng: np.random.Generator, n_videos: int) -> tuple[list[str], list[str], list[str]]:
    """keys, groups (video ids) and labels of ``n_videos`` videos of 5 to 200 frames."""
    keys, groups, labels = [], [], []
    for v, (n, c) in enumerate(zip(rng.integers(5, 200, n_videos), rng.integers(len(CLASSES), size=n_videos))):
        for i in range(int(n)):
            keys.append(f"v{v}_{i:04d}")
            groups.append(f"v{v}")
            labels.append(CLASSES[c])
    return keys, groups, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--videos", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="5 seeds (CI smoke run)")
    args = ap.parse_args()
    seeds = 5 if args.quick else args.seeds
    ratios = parse_ratios(85, 15)
    ours, theirs, t_ours, t_theirs = [], [], 0.0, 0.0
    for seed in range(seeds):
        keys, groups, labels = random_videos(np.random.default_rng(100 + seed), args.videos)
        t = time.perf_counter()
        assignment = assign_splits(keys, groups, labels, ratios, seed=seed)
        t_ours += time.perf_counter() - t
        ours.append(100 * abs(split_shares(assignment)["val"] - 0.15))
        t = time.perf_counter()
        _, val = next(GroupShuffleSplit(1, test_size=0.15, random_state=seed).split(keys, groups=groups))
        t_theirs += time.perf_counter() - t
        theirs.append(100 * abs(len(val) / len(keys) - 0.15))
    print(f"val share error, target 15%, {seeds} seeds x {args.videos} videos of 5-200 frames (points)")
    print(f"{'splitter':<34} {'mean':>6} {'max':>6} {'ms/split':>9}")
    print("-" * 58)
    for name, err, secs in (("assign_splits (frames, stratified)", ours, t_ours),
                            ("GroupShuffleSplit (baseline)", theirs, t_theirs)):
        print(f"{name:<34} {np.mean(err):6.2f} {np.max(err):6.2f} {1000 * secs / seeds:9.1f}")
    print(f"bar: mean error under a third of the baseline's: {np.mean(ours):.2f} vs {np.mean(theirs):.2f} points "
          f"({'met' if np.mean(ours) < np.mean(theirs) / 3 else 'NOT met'})")


if __name__ == "__main__":
    main()
