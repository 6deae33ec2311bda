"""Tests of the grouped, stratified, frame-sized, sticky train/val(/test) split (``core/split.py``).

What the split promises and how each promise is checked:

* no video in two splits - a property test over random videos, frames with no video, labels, 2- and
  3-way ratios and seeds;
* frame shares near the target - with >= 20 videos of unequal length (5-60 frames) the val share is
  within ``TOLERANCE`` (5 points) of its target. Why 5: the new videos are cut into 20 folds of about
  1/20 of the frames each; a subset of whole folds gets within about half a fold (2.5 points) of the
  target, and the split may give up one more point (``FRAME_SLACK``) for label coverage and for the
  seed's pick. Targeted hypothesis searches (maximising the error, 800 examples) found at most 2.4
  points with 5-60 frames. The lengths are bounded below on purpose: no tolerance holds for any video
  lengths - 15 one-frame videos and 5 of 60 frames cannot give 10% val closer than 5.2 points, whatever
  the splitter. ``GroupShuffleSplit``, whose size counts videos, is measured too and must do worse;
* deterministic and independent of row order; the seed changes the split;
* sticky: a re-run with new videos (and new frames of old videos) leaves every old frame where it was;
* stratification is measurable: a rare class in a few videos lands in both train and val far more often
  than with a plain grouped split, and common classes keep about the target share in val.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.model_selection import GroupShuffleSplit

from samantics_dagster.core.curate.split import (
    DEFAULT_RATIOS,
    FRAME_SLACK,
    assign_splits,
    leaked_groups,
    parse_ratios,
    split_shares,
)
from samantics_dagster.demo.testing import previous_splits

TOLERANCE = 0.05  # share of frames; see the module docstring
RATIOS = {"train": 85.0, "val": 15.0}
PROPERTY = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def frames(lengths, video_labels, prefix="v", rare=None):
    """keys, groups, labels for videos of the given lengths; ``rare`` maps video -> every n-th frame rare."""
    keys, groups, labels = [], [], []
    for v, (n, label) in enumerate(zip(lengths, video_labels)):
        for i in range(n):
            keys.append(f"{prefix}{v}_{i:04d}")
            groups.append(f"{prefix}{v}")
            labels.append("rare" if rare and v in rare and i % rare[v] == 0 else label)
    return keys, groups, labels


def random_videos(rng, n_videos, lo=5, hi=200, classes=("car", "dog", "cat", "bird"), prefix="v"):
    lengths = rng.integers(lo, hi, n_videos).tolist()
    return frames(lengths, [classes[i] for i in rng.integers(len(classes), size=n_videos)], prefix)


def splits_of(keys, groups, assignment):
    by_group = {}
    for key, group in zip(keys, groups):
        if group is None or group != group or not group:
            continue  # no video: a group of its own
        by_group.setdefault(group, set()).add(assignment[key])
    return by_group


# ----------------------------------------------------------------------------------------- parse_ratios


def test_parse_ratios_defaults_and_three_way():
    assert parse_ratios(85) == DEFAULT_RATIOS == {"train": 85.0, "val": 15.0}
    assert parse_ratios(80, 20) == {"train": 80.0, "val": 20.0}
    assert parse_ratios(70, test=10) == {"train": 70.0, "val": 20.0, "test": 10.0}
    assert parse_ratios(70, 15, 15) == {"train": 70.0, "val": 15.0, "test": 15.0}
    assert parse_ratios(100) == {"train": 100.0, "val": 0.0}
    assert parse_ratios(33.3, 33.3, 33.4) == {"train": 33.3, "val": 33.3, "test": 33.4}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((80, 15), ["sum to 100", "add test 5"]),
        ((80, 30), ["sum to 100"]),
        ((70, 20, 20), ["sum to 100"]),
        ((0,), ["train", "above 0"]),
        ((-5, 105), ["train", "between 0 and 100"]),
        ((120,), ["between 0 and 100"]),
        ((80, -1, 21), ["val", "between 0 and 100"]),
        ((float("nan"),), ["train"]),
        ((80, None, 30), ["over 100"]),
        (("lots",), ["number"]),
    ],
)
def test_parse_ratios_errors_say_the_fix(args, words):
    with pytest.raises(ValueError) as error:
        parse_ratios(*args)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message


# ------------------------------------------------------------------------------------------ unit tests


def test_empty_input_and_bad_arguments():
    assert assign_splits([], [], [], RATIOS) == {}
    with pytest.raises(ValueError, match="differ in length"):
        assign_splits(["a", "b"], ["v"], ["x", "y"], RATIOS)
    with pytest.raises(ValueError, match="unique"):
        assign_splits(["a", "a"], ["v", "w"], ["x", "y"], RATIOS)
    with pytest.raises(ValueError, match="share >= 0"):
        assign_splits(["a"], ["v"], ["x"], {"train": 90, "val": -10})
    with pytest.raises(ValueError, match="add 'test' to the ratios"):
        assign_splits(["a", "b"], ["v", "w"], ["x", "x"], RATIOS, previous={"v": "test"})


def test_one_video_goes_to_train():
    keys, groups, labels = frames([40], ["car"])
    assert set(assign_splits(keys, groups, labels, {"train": 40, "val": 60}).values()) == {"train"}


def test_frames_without_a_video_are_each_their_own_group():
    keys = [f"f{i:03d}" for i in range(200)]
    missing = [None, float("nan"), "", "  "]
    groups = [missing[i % 4] for i in range(200)]
    labels = ["car"] * 200
    assignment = assign_splits(keys, groups, labels, RATIOS, seed=3)
    assert split_shares(assignment) == {"train": 0.85, "val": 0.15}  # singletons: sized exactly
    assert leaked_groups(keys, groups, assignment) == []  # frames with no video are never a "leak"


def test_fewer_videos_than_splits_and_zero_shares():
    keys, groups, labels = frames([10, 30], ["car", "dog"])
    assignment = assign_splits(keys, groups, labels, {"train": 70, "val": 15, "test": 15}, seed=1)
    assert all(len(s) == 1 for s in splits_of(keys, groups, assignment).values())
    assert "train" in assignment.values()
    keys, groups, labels = random_videos(np.random.default_rng(0), 30)
    assert set(assign_splits(keys, groups, labels, {"train": 100, "val": 0}).values()) == {"train"}


def test_rare_labels_do_not_warn():
    keys, groups, labels = frames([20] * 30, ["car"] * 30, rare={4: 7})  # "rare": 3 frames, 20 folds
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assign_splits(keys, groups, labels, RATIOS, seed=0)


def test_leaked_groups_and_previous_splits():
    keys = ["a", "b", "c", "d", "e"]
    groups = ["v1", "v1", "v2", None, None]
    assignment = {"a": "train", "b": "val", "c": "val", "d": "train", "e": "val"}
    assert leaked_groups(keys, groups, assignment) == ["v1"]
    with pytest.raises(ValueError, match="'v1' is in splits"):
        previous_splits(keys, groups, assignment)
    assignment["b"] = "train"
    assert leaked_groups(keys, groups, assignment) == []
    assert previous_splits(keys, groups, assignment) == {"v1": "train", "v2": "val", "d": "train", "e": "val"}


def test_three_way_split_sizes():
    errors = []
    for seed in range(8):
        keys, groups, labels = random_videos(np.random.default_rng(seed), 50)
        assignment = assign_splits(keys, groups, labels, parse_ratios(70, 15, 15), seed=seed)
        assert leaked_groups(keys, groups, assignment) == []
        shares = split_shares(assignment)
        errors += [abs(shares[s] - t) for s, t in (("train", 0.70), ("val", 0.15), ("test", 0.15))]
    assert max(errors) <= TOLERANCE
    assert np.mean(errors) <= 0.01


def test_val_share_beats_group_shuffle_split():
    """Sized in frames, the split is closer to 15% than GroupShuffleSplit, which sizes in videos."""
    ours, theirs = [], []
    for seed in range(12):
        keys, groups, labels = random_videos(np.random.default_rng(100 + seed), 50)
        assignment = assign_splits(keys, groups, labels, RATIOS, seed=seed)
        ours.append(abs(split_shares(assignment)["val"] - 0.15))
        _, val = next(GroupShuffleSplit(1, test_size=0.15, random_state=seed).split(keys, groups=groups))
        theirs.append(abs(len(val) / len(keys) - 0.15))
    assert max(ours) <= FRAME_SLACK + 0.005  # 50 videos, 20 folds: the best subset is near exact
    assert np.mean(ours) < np.mean(theirs) / 3


def test_seed_changes_the_split():
    keys, groups, labels = random_videos(np.random.default_rng(7), 40)
    splits = {tuple(sorted(assign_splits(keys, groups, labels, RATIOS, seed=s).items())) for s in range(8)}
    assert len(splits) >= 4


def test_stratification_puts_a_rare_class_on_both_sides():
    """A class in 3 of 40 videos ends up in train and val nearly always; a plain grouped split manages
    that only when its 15% of videos happens to catch one of the 3 (about 40%)."""
    ours = naive = 0
    runs = 16
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        lengths = rng.integers(10, 80, 40).tolist()
        rare = {int(v): 4 for v in rng.choice(40, 3, replace=False)}
        keys, groups, labels = frames(lengths, ["car", "dog", "cat", "bird"] * 10, rare=rare)
        assignment = assign_splits(keys, groups, labels, RATIOS, seed=seed)
        ours += {"train", "val"} <= {assignment[k] for k, label in zip(keys, labels) if label == "rare"}
        train, val = next(GroupShuffleSplit(1, test_size=0.15, random_state=seed).split(keys, groups=groups))
        label_array = np.array(labels)
        naive += ("rare" in label_array[train]) and ("rare" in label_array[val])
    assert ours >= runs - 1
    assert ours >= naive + runs // 4


def test_common_classes_keep_their_share_in_val():
    """4 classes of ~15 videos each: the share of each class's frames in val stays near 15% - on average
    within 4 points, and under half the miss of a plain grouped split (measured: ~2.5 vs ~9.5 points)."""
    ours, naive = [], []
    for seed in range(6):
        keys, groups, labels = random_videos(np.random.default_rng(seed), 60)
        assignment = assign_splits(keys, groups, labels, RATIOS, seed=seed)
        _, val = next(GroupShuffleSplit(1, test_size=0.15, random_state=seed).split(keys, groups=groups))
        val_keys = {keys[i] for i in val}
        for cls in ("car", "dog", "cat", "bird"):
            mine = [k for k, label in zip(keys, labels) if label == cls]
            ours.append(abs(sum(assignment[k] == "val" for k in mine) / len(mine) - 0.15))
            naive.append(abs(sum(k in val_keys for k in mine) / len(mine) - 0.15))
    assert np.mean(ours) <= 0.04
    assert np.mean(ours) < np.mean(naive) / 2


def test_sticky_previous_for_frames_without_video():
    keys = [f"f{i}" for i in range(20)]
    first = assign_splits(keys, [None] * 20, ["x"] * 20, RATIOS, seed=0)
    previous = previous_splits(keys, [None] * 20, first)
    more = keys + [f"g{i}" for i in range(20)]
    second = assign_splits(more, [None] * 40, ["x"] * 40, RATIOS, seed=9, previous=previous)
    assert {k: second[k] for k in keys} == first
    assert split_shares(second)["val"] == pytest.approx(0.15, abs=0.026)


def test_large_input_is_fast_enough():
    keys, groups, labels = random_videos(np.random.default_rng(0), 300, 5, 60, classes=tuple("abcdefghij"))
    start = time.perf_counter()
    assignment = assign_splits(keys, groups, labels, RATIOS, seed=0)
    assert time.perf_counter() - start < 5
    assert abs(split_shares(assignment)["val"] - 0.15) <= FRAME_SLACK + 0.005


# ------------------------------------------------------------------------------------ property tests

labels_st = st.one_of(st.none(), st.sampled_from(["car", "dog", "cat", "person", "none"]))
ratios_st = st.sampled_from(
    [{"train": 85, "val": 15}, {"train": 70, "val": 30}, {"train": 70, "val": 15, "test": 15}, {"train": 1, "val": 99}]
)


@st.composite
def datasets(draw, min_videos=0, max_videos=30, max_length=30, max_loose=10):
    """Videos of random length and label (frames of a video may differ in label), plus loose frames."""
    n_videos = draw(st.integers(min_videos, max_videos))
    keys, groups, labels = [], [], []
    for v in range(n_videos):
        video_label = draw(labels_st)
        for i in range(draw(st.integers(1, max_length))):
            keys.append(f"v{v}_{i}")
            groups.append(f"video-{v}")
            labels.append(video_label if i % 5 else draw(labels_st))
    for i in range(draw(st.integers(0, max_loose))):
        keys.append(f"loose{i}")
        groups.append(draw(st.sampled_from([None, float("nan"), ""])))
        labels.append(draw(labels_st))
    return keys, groups, labels


@PROPERTY
@given(data=datasets(), ratios=ratios_st, seed=st.integers(0, 2**32 - 1))
def test_never_a_shared_video(data, ratios, seed):
    keys, groups, labels = data
    assignment = assign_splits(keys, groups, labels, ratios, seed=seed)
    assert set(assignment) == set(keys)
    assert set(assignment.values()) <= set(ratios)
    assert leaked_groups(keys, groups, assignment) == []
    assert all(len(s) == 1 for s in splits_of(keys, groups, assignment).values())


@PROPERTY
@given(
    lengths=st.lists(st.integers(5, 60), min_size=20, max_size=50).filter(lambda xs: len(set(xs)) > 1),
    video_labels=st.lists(st.sampled_from("abcde"), min_size=50, max_size=50),
    val=st.sampled_from([10, 15, 20, 30]),
    seed=st.integers(0, 2**32 - 1),
)
def test_val_share_near_target_with_20_or_more_videos(lengths, video_labels, val, seed):
    keys, groups, labels = frames(lengths, video_labels)
    assignment = assign_splits(keys, groups, labels, {"train": 100 - val, "val": val}, seed=seed)
    assert abs(split_shares(assignment).get("val", 0.0) - val / 100) <= TOLERANCE


@PROPERTY
@given(data=datasets(max_videos=25), ratios=ratios_st, seed=st.integers(0, 2**32 - 1), shuffle_seed=st.integers(0, 99))
def test_deterministic_and_row_order_independent(data, ratios, seed, shuffle_seed):
    keys, groups, labels = data
    first = assign_splits(keys, groups, labels, ratios, seed=seed)
    assert assign_splits(keys, groups, labels, ratios, seed=seed) == first
    order = np.random.default_rng(shuffle_seed).permutation(len(keys))
    shuffled = assign_splits(
        [keys[i] for i in order], [groups[i] for i in order], [labels[i] for i in order], ratios, seed=seed
    )
    assert shuffled == first


@PROPERTY
@given(
    old=datasets(min_videos=1, max_videos=20),
    new_lengths=st.lists(st.integers(1, 30), min_size=0, max_size=20),
    extra_frames=st.integers(0, 5),
    ratios=ratios_st,
    seed=st.integers(0, 2**32 - 1),
)
def test_stable_across_reruns(old, new_lengths, extra_frames, ratios, seed):
    """New videos, and new frames of an old video, leave every old frame in its split."""
    keys, groups, labels = old
    first = assign_splits(keys, groups, labels, ratios, seed=seed)
    new_keys, new_groups, new_labels = frames(new_lengths, ["car"] * len(new_lengths), prefix="new")
    new_keys += [f"v0_extra{i}" for i in range(extra_frames)]  # more frames of the first old video
    new_groups += ["video-0"] * extra_frames
    new_labels += ["dog"] * extra_frames
    all_keys, all_groups = keys + new_keys, groups + new_groups
    second = assign_splits(
        all_keys, all_groups, labels + new_labels, ratios, seed=seed + 1,
        previous=previous_splits(keys, groups, first),
    )
    assert {k: second[k] for k in keys} == first
    assert {second[f"v0_extra{i}"] for i in range(extra_frames)} <= {first["v0_0"]}
    assert leaked_groups(all_keys, all_groups, second) == []


def test_rerun_aims_the_overall_share_at_the_target():
    """Old videos put val off target; the new videos bring the overall share back."""
    keys, groups, labels = random_videos(np.random.default_rng(1), 40, prefix="old")
    previous = {g: ("val" if int(g[3:]) < 3 else "train") for g in set(groups)}  # ~7% val
    new_keys, new_groups, new_labels = random_videos(np.random.default_rng(2), 40, prefix="new")
    assignment = assign_splits(keys + new_keys, groups + new_groups, labels + new_labels, RATIOS, previous=previous)
    assert all(assignment[k] == previous[g] for k, g in zip(keys, groups))
    assert math.isclose(split_shares(assignment)["val"], 0.15, abs_tol=FRAME_SLACK + 0.005)
