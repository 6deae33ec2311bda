"""Train/val(/test) split of frames, grouped by video, stratified by a label, sized in frames, sticky.

Used by the ``curated_coco`` asset and by ``samantics split``; the contract and the algorithm are in
``docs/splits.md``. Pure numpy + scikit-learn; no Dagster imports.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

DEFAULT_RATIOS: dict[str, float] = {"train": 85.0, "val": 15.0}

#: Most folds the new groups are cut into; the fold-to-split search scores ``2**MAX_FOLDS`` subsets.
MAX_FOLDS = 20
#: How far (as a share of all frames) a split may be from the best frame count reachable with whole
#: folds, to leave room for label coverage, label shares and the seed's pick.
FRAME_SLACK = 0.01
#: How much worse (root mean square over labels of the share of a label's frames in the split, minus the
#: split's share) a subset may be than the best one and still be picked by the seed.
LABEL_SLACK = 0.02
#: At most this many near-best subsets (closest in frames first) are scored on labels.
_MAX_CANDIDATES = 8192
#: Label of a frame whose label is missing.
NO_LABEL = "none"

_TOLERANCE = 1e-6


def parse_ratios(train: float, val: float | None = None, test: float | None = None) -> dict[str, float]:
    """Percentages of frames per split, checked. ``val`` defaults to ``100 - train - test``.

    Returns ``{"train": .., "val": ..}`` plus ``"test"`` when ``test`` is given. Raises ``ValueError``
    with a one-line message that says how to fix the numbers.
    """
    if test is not None:
        test = _percentage("test", test)
    train = _percentage("train", train)
    if val is None:
        val = 100.0 - train - (test or 0.0)
        if val < -_TOLERANCE:
            raise ValueError(
                f"train {train:g} + test {test or 0:g} is over 100; lower them so that val = 100 - train"
                " - test is >= 0"
            )
        val = max(val, 0.0)
    else:
        val = _percentage("val", val)
    if train <= 0:
        raise ValueError(f"train is {train:g}%; give train a share above 0 (e.g. --train 85)")
    ratios = {"train": train, "val": val}
    if test is not None:
        ratios["test"] = test
    total = sum(ratios.values())
    if abs(total - 100.0) > _TOLERANCE:
        parts = " + ".join(f"{name} {value:g}" for name, value in ratios.items())
        hint = f", or add test {100 - total:g}" if test is None and total < 100 else ""
        raise ValueError(
            f"split percentages must sum to 100, got {parts} = {total:g}; change them so they do{hint}"
        )
    return ratios


def _percentage(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of percent, got {value!r}; give e.g. 15") from None
    if not math.isfinite(value) or value < 0 or value > 100:
        raise ValueError(f"{name} is {value:g}%; give a percentage between 0 and 100")
    return value


def is_missing_group(group: object) -> bool:
    """True for a frame with no video: None, NaN, pandas NA, or an empty/blank string."""
    if group is None:
        return True
    try:
        if group != group:  # NaN
            return True
    except TypeError:  # pandas.NA refuses to be truth-tested
        return True
    return isinstance(group, str) and not group.strip()


def assign_splits(
    keys: Sequence[str],
    groups: Sequence[str | None],
    labels: Sequence[str | None],
    ratios: Mapping[str, float],
    seed: int = 0,
    previous: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Give every frame (``keys``, unique) a split name from ``ratios``; see the module docstring.

    ``groups`` is each frame's video (missing: the frame is its own group); ``labels`` its one
    stratification label (missing: ``"none"``). ``ratios`` maps split name to its share (any positive
    scale: percentages or fractions); the remainder split is ``train`` if present, else the largest.
    ``previous`` maps a group - or, for a frame with no video, its key - to the split an earlier run
    gave it; those keep it (``curated_coco`` builds it from the curated tables). A split
    named in ``previous`` must be in ``ratios`` (a 0 share is fine: it keeps its old videos, gets no
    new ones).
    """
    keys = [str(k) for k in keys]
    groups = list(groups)
    labels = list(labels)
    _check_rows(keys, groups, labels)
    shares = _normalise_ratios(ratios)
    remainder = "train" if "train" in shares else min(shares, key=lambda s: (-shares[s], s))
    previous = _checked_previous(previous, shares)
    if not keys:
        return {}

    # Rows in key order, so that nothing below depends on the order the caller gave them in.
    order = sorted(range(len(keys)), key=keys.__getitem__)
    keys = [keys[i] for i in order]
    group_ids = [_group_id(keys[j], groups[i]) for j, i in enumerate(order)]
    raw_labels = labels
    labels_: list[str] = [NO_LABEL if is_missing_group(raw_labels[i]) else str(raw_labels[i]) for i in order]

    assignment: dict[str, str] = {}
    old_rows: list[int] = []
    new_rows: list[int] = []
    for row, (key, gid) in enumerate(zip(keys, group_ids)):
        known = previous.get(gid[1])
        if known is not None:
            assignment[key] = known
            old_rows.append(row)
        else:
            new_rows.append(row)
    if not new_rows:
        return {k: assignment[k] for k in sorted(assignment)}

    label_names = sorted(set(labels_))
    label_index = {name: i for i, name in enumerate(label_names)}
    n_labels = len(label_names)
    split_names = sorted(shares)
    old_counts = {s: np.zeros(n_labels) for s in split_names}
    old_frames: Counter[str] = Counter()
    for row in old_rows:
        split = assignment[keys[row]]
        old_counts[split][label_index[labels_[row]]] += 1
        old_frames[split] += 1

    new_group_ids = sorted({group_ids[row] for row in new_rows})
    n_all_groups = len(new_group_ids) + len({group_ids[row] for row in old_rows})
    if n_all_groups == 1:
        assignment.update({keys[row]: remainder for row in new_rows})
        return {k: assignment[k] for k in sorted(assignment)}

    fold_of_group = _folds(new_rows, group_ids, labels_, new_group_ids, seed)
    n_folds = max(fold_of_group.values()) + 1
    fold_frames = np.zeros(n_folds, dtype=np.int64)
    fold_labels = np.zeros((n_folds, n_labels))
    for row in new_rows:
        fold = fold_of_group[group_ids[row]]
        fold_frames[fold] += 1
        fold_labels[fold, label_index[labels_[row]]] += 1

    split_of_fold = _split_of_folds(fold_frames, fold_labels, old_counts, old_frames, shares, remainder,
                                    n_total=len(keys), n_new=len(new_rows), seed=seed)
    for row in new_rows:
        assignment[keys[row]] = split_of_fold[fold_of_group[group_ids[row]]]
    return {k: assignment[k] for k in sorted(assignment)}


def _check_rows(keys: list[str], groups: list[str | None], labels: list[str | None]) -> None:
    """One group and one label per key, and no key twice."""
    if not (len(keys) == len(groups) == len(labels)):
        raise ValueError(
            f"keys, groups and labels differ in length ({len(keys)}, {len(groups)}, {len(labels)}); pass"
            " one group and one label per key"
        )
    duplicates = [k for k, n in Counter(keys).items() if n > 1]
    if duplicates:
        raise ValueError(f"frame keys must be unique, {duplicates[0]!r} repeats; de-duplicate the keys first")


def _checked_previous(previous: Mapping[str, str] | None, shares: Mapping[str, float]) -> dict[str, str]:
    """``previous`` as strings; every split it names must be one of the ratios' (a sticky split needs a home)."""
    checked = {str(group): str(split) for group, split in (previous or {}).items()}
    for group, split in checked.items():
        if split not in shares:
            raise ValueError(
                f"previous puts {group!r} in split {split!r}, which the ratios lack; add {split!r} to the"
                " ratios (0 is fine) or pass previous=None to split again from scratch"
            )
    return checked


def _split_of_folds(
    fold_frames: np.ndarray,
    fold_labels: np.ndarray,
    old_counts: Mapping[str, np.ndarray],
    old_frames: Counter[str],
    shares: Mapping[str, float],
    remainder: str,
    *,
    n_total: int,
    n_new: int,
    seed: int,
) -> dict[int, str]:
    """Each new fold's split: the smallest split first picks the folds that fill what it lacks; the
    remainder split takes the rest."""
    split_names = sorted(shares)
    n_labels = fold_labels.shape[1]
    n_folds = len(fold_frames)
    # Frame targets for the new frames: what each split lacks of its overall share.
    needs = {s: max(0.0, shares[s] * n_total - old_frames[s]) for s in split_names if s != remainder}
    wanted = sum(needs.values())
    if wanted > n_new:
        needs = {s: need * n_new / wanted for s, need in needs.items()}
    label_totals = fold_labels.sum(axis=0) + sum(old_counts.values())

    rng = np.random.default_rng(seed % 2**32)
    split_of_fold: dict[int, str] = {}
    available = list(range(n_folds))
    done: set[str] = set()
    for split in sorted(needs, key=lambda s: (shares[s], s)):
        done.add(split)
        if shares[split] == 0 or not available:
            continue
        # What the splits still to come (the remainder included) already hold from earlier runs.
        base_rest = sum((old_counts[s] for s in split_names if s not in done), np.zeros(n_labels))
        chosen = _choose_folds(
            fold_frames[available],
            fold_labels[available],
            target=needs[split],
            slack=FRAME_SLACK * n_total,
            share=shares[split],
            base_in=old_counts[split],
            base_rest=base_rest,
            label_totals=label_totals,
            rng=rng,
        )
        for j in chosen:
            split_of_fold[available[j]] = split
        available = [f for j, f in enumerate(available) if j not in set(chosen)]
    for fold in available:
        split_of_fold[fold] = remainder
    return split_of_fold


def _normalise_ratios(ratios: Mapping[str, float]) -> dict[str, float]:
    if not ratios:
        raise ValueError("ratios is empty; pass e.g. DEFAULT_RATIOS or parse_ratios(85)")
    values = {}
    for name, value in ratios.items():
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"ratio of {name!r} is {value:g}; give each split a share >= 0")
        values[str(name)] = value
    total = sum(values.values())
    if total <= 0:
        raise ValueError("the ratios sum to 0; give at least one split a share above 0")
    return {name: value / total for name, value in values.items()}


def _group_id(key: str, group: object) -> tuple[int, str]:
    """(0, video) for a frame of a video, (1, key) for a frame with none: its own group."""
    return (1, key) if is_missing_group(group) else (0, str(group))


def _folds(
    rows: list[int],
    group_ids: list[tuple[int, str]],
    labels: list[str],
    new_group_ids: list[tuple[int, str]],
    seed: int,
) -> dict[tuple[int, str], int]:
    """Fold number of each new group, from ``StratifiedGroupKFold`` (see the module docstring)."""
    n_groups = len(new_group_ids)
    if n_groups == 1:
        return {new_group_ids[0]: 0}
    n_folds = min(MAX_FOLDS, n_groups)
    code = {gid: i for i, gid in enumerate(new_group_ids)}
    group_codes = np.array([code[group_ids[row]] for row in rows])
    y = np.array([labels[row] for row in rows], dtype=object)
    if max(Counter(y.tolist()).values()) < n_folds:
        y = np.zeros(len(rows), dtype=np.int64)  # scikit-learn would raise; balance frames only
    else:
        # Map labels to sorted integer codes so that type_of_target sees plain classes.
        _, y = np.unique(y.astype(str), return_inverse=True)
    from sklearn.model_selection import StratifiedGroupKFold  # 1.8 s of imports: only when a split is made

    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed % 2**32)
    fold_of_group: dict[tuple[int, str], int] = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class in y", category=UserWarning)
        for fold, (_, test_idx) in enumerate(splitter.split(np.zeros(len(rows)), y, group_codes)):
            for gcode in np.unique(group_codes[test_idx]):
                fold_of_group[new_group_ids[gcode]] = fold
    return fold_of_group


def _choose_folds(
    frames: np.ndarray,
    fold_labels: np.ndarray,
    *,
    target: float,
    slack: float,
    share: float,
    base_in: np.ndarray,
    base_rest: np.ndarray,
    label_totals: np.ndarray,
    rng: np.random.Generator,
) -> list[int]:
    """Indices of the folds (into ``frames``) that one split takes; see step 2 of the module docstring."""
    k = len(frames)
    sums = np.zeros(1, dtype=np.int64)
    for f in frames:  # sums[mask] = frames of the folds whose bits are set in mask
        sums = np.concatenate([sums, sums + f])
    error = np.abs(sums - target)
    candidates = np.flatnonzero(error <= error.min() + slack + 1e-9)
    if len(candidates) > _MAX_CANDIDATES:
        nearest = np.lexsort((candidates, error[candidates]))[:_MAX_CANDIDATES]
        candidates = np.sort(candidates[nearest])
    members = ((candidates[:, None] >> np.arange(k)) & 1).astype(np.float64)
    taken = members @ fold_labels
    inside = taken + base_in
    rest = fold_labels.sum(axis=0) - taken + base_rest
    missing = (inside == 0).sum(axis=1) + (rest == 0).sum(axis=1)
    keep = missing == missing.min()
    candidates, inside, error = candidates[keep], inside[keep], error[candidates[keep]]
    present = label_totals > 0
    if present.any():
        shares = inside[:, present] / label_totals[present]
        rms = np.round(np.sqrt(((shares - share) ** 2).mean(axis=1)), 12)
    else:
        rms = np.zeros(len(candidates))
    order = np.lexsort((candidates, error, rms))
    pool = order[rms[order] <= rms[order[0]] + LABEL_SLACK + 1e-12]
    best = candidates[pool[rng.integers(len(pool))]]
    return [j for j in range(k) if best >> j & 1]


def split_shares(assignment: Mapping[str, str]) -> dict[str, float]:
    """Share of frames (0..1) in each split named in ``assignment``, by split name."""
    counts = Counter(assignment.values())
    total = sum(counts.values())
    return {split: counts[split] / total for split in sorted(counts)}


def leaked_groups(
    keys: Sequence[str], groups: Sequence[str | None], assignment: Mapping[str, str]
) -> list[str]:
    """Videos whose frames are in more than one split (should be none), sorted; for an asset check.

    Frames with no video, and keys not in ``assignment``, are skipped.
    """
    splits: dict[str, set[str]] = defaultdict(set)
    for key, group in zip(keys, groups):
        key = str(key)
        if is_missing_group(group) or key not in assignment:
            continue
        splits[str(group)].add(assignment[key])
    return sorted(group for group, names in splits.items() if len(names) > 1)
