"""Tests of the sample grabby workdir builder and the dedupe score.

The sample is the ground truth every dedupe measurement rests on, so these tests check the truth
against the files themselves: what the truth says is a scene must look like one scene (up to a camera's
jitter), what it says are distinct scenes must not, what it says is bad must be bad, and nothing may be
in the folder that the truth does not account for. They also check that the sample stays *hard*: the
jitter is strong enough, and hard negatives close enough, that a plain perceptual hash at one threshold
can't both keep every scene and drop the duplicates.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
from collections import defaultdict
from pathlib import Path

import cv2
import imagehash
import numpy as np
import pytest
from PIL import Image, ImageOps

from samantics_dagster.demo.sample import (
    DedupeScore,
    SampleTruth,
    build_sample_workdir,
    scene_photo,
    score_dedupe,
)

CATEGORIES = ("gym", "street", "kitchen")
SOURCES = ("youtube", "vimeo")
SMALL = dict(categories=("gym", "street"), videos_per_source=1, scenes_per_video=3, frames_per_scene=2)


# ------------------------------------------------------------------------------------------- helpers


def all_files(root: Path) -> dict[str, bytes]:
    """Every file under root (rel_path as os.fsdecode gives it -> bytes), names read as bytes."""
    out: dict[str, bytes] = {}
    broot = os.fsencode(root)
    for dirpath, _dirs, files in os.walk(broot):
        for name in files:
            full = os.path.join(dirpath, name)
            rel = os.fsdecode(os.path.relpath(full, broot)).replace(os.sep, "/")
            with open(full, "rb") as fh:
                out[rel] = fh.read()
    return out


def parse(rel: str) -> tuple[str, str, str, int]:
    source, category, name = rel.split("/")
    assert name.endswith(".jpg")
    video_id, ts = name[: -len(".jpg")].rsplit("_", 1)
    return source, category, video_id, int(ts)


#: Frames are compared as upright grey 80x45 images, over shifts of up to SEARCH pixels (24 px of a
#: 640-wide frame: 1.5x the largest shift between two jittered frames).
GREY_SIZE = (80, 45)
SEARCH = 3


def grey(path: Path) -> np.ndarray:
    """The upright frame as a grey GREY_SIZE float32 image (draft-decoded: the details do not matter)."""
    with Image.open(path) as im:
        im.draft("L", (GREY_SIZE[0] * 2, GREY_SIZE[1] * 2))
        return np.asarray(
            ImageOps.exif_transpose(im).convert("L").resize(GREY_SIZE, Image.Resampling.BOX), dtype=np.float32
        )


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = rows - rows.mean(axis=-1, keepdims=True)
    return rows / (np.linalg.norm(rows, axis=-1, keepdims=True) + 1e-6)


def windows(a: np.ndarray) -> np.ndarray:
    """Every (2*SEARCH+1)^2 shifted window of ``a``, as zero-mean unit-norm rows."""
    h, w = a.shape
    views = np.lib.stride_tricks.sliding_window_view(a, (h - 2 * SEARCH, w - 2 * SEARCH))
    return _unit(views.reshape(-1, (h - 2 * SEARCH) * (w - 2 * SEARCH)))


def core(a: np.ndarray) -> np.ndarray:
    """The centre of ``a`` (SEARCH pixels in from each side), zero-mean unit-norm."""
    return _unit(a[SEARCH:-SEARCH, SEARCH:-SEARCH].ravel())


def likeness(ref_windows: np.ndarray, b: np.ndarray) -> float:
    """Correlation of ``b`` with the reference at the best small shift: ~1 for the same shot."""
    return float((ref_windows @ core(b)).max())


def plain_dhash(path: Path) -> int:
    """imagehash's 64-bit dhash of the upright frame: the plain hash a naive deduper would use."""
    with Image.open(path) as im:
        im.draft("L", (80, 45))
        return int(str(imagehash.dhash(ImageOps.exif_transpose(im).convert("L"))), 16)


def videos_of(truth: SampleTruth) -> dict[tuple[str, str, str], list[tuple[int, str]]]:
    """(source, category, video_id) -> [(timestamp, scene)] sorted by timestamp."""
    vids: dict[tuple[str, str, str], list[tuple[int, str]]] = defaultdict(list)
    for rel, scene in truth.scene_of.items():
        source, category, vid, ts = parse(rel)
        vids[(source, category, vid)].append((ts, scene))
    return {k: sorted(v) for k, v in vids.items()}


def scene_runs(frames: list[tuple[int, str]]) -> list[str]:
    runs: list[str] = []
    for _ts, scene in frames:
        if not runs or runs[-1] != scene:
            runs.append(scene)
    return runs


def box_of(scene: str) -> tuple[int, int, int, int]:
    xy, wh = scene.split("@", 1)[1].split("+")
    x, y = map(int, xy.split(","))
    w, h = map(int, wh.split("x"))
    return x, y, w, h


def overlap_of_smaller(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(iw, 0) * max(ih, 0) / min(a[2] * a[3], b[2] * b[3])


def pan_step(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float | None:
    """How far a same-size view moved along one axis (fraction of its size), or None if it is no pan/tilt."""
    (ax, ay, aw, ah), (bx, by, bw, bh) = a, b
    if (aw, ah) != (bw, bh):
        return None
    if ay == by and ax != bx:
        return abs(ax - bx) / aw
    if ax == bx and ay != by:
        return abs(ay - by) / ah
    return None


def is_hard_negative(a: str, b: str) -> bool:
    pa, pb = scene_photo(a), scene_photo(b)
    return pa == pb or {pa, pb} == {"motorcycle_left", "motorcycle_right"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SampleTruth]:
    workdir = tmp_path_factory.mktemp("sample") / "grabby"
    truth = build_sample_workdir(workdir)
    return workdir, truth


@pytest.fixture(scope="module")
def greys(sample: tuple[Path, SampleTruth]) -> dict[str, np.ndarray]:
    workdir, truth = sample
    return {rel: grey(workdir / rel) for rel in truth.scene_of}


# ------------------------------------------------------------------------------------ determinism


def test_same_seed_same_names_and_bytes(tmp_path: Path) -> None:
    t1 = build_sample_workdir(tmp_path / "a", seed=7, **SMALL)
    t2 = build_sample_workdir(tmp_path / "b", seed=7, **SMALL)
    t3 = build_sample_workdir(tmp_path / "c", seed=8, **SMALL)
    f1, f2, f3 = all_files(tmp_path / "a"), all_files(tmp_path / "b"), all_files(tmp_path / "c")
    assert t1 == t2
    assert f1 == f2
    assert sorted(f1) != sorted(f3)  # another seed gives other video ids and timestamps
    assert set(t1.scenes) != set(t3.scenes)  # ... and other views
    assert len(t3.scene_of) == len(t1.scene_of)


# ----------------------------------------------------------------------------------- layout, counts


def test_layout_and_counts(sample: tuple[Path, SampleTruth]) -> None:
    workdir, truth = sample
    assert sorted(p.name for p in workdir.iterdir()) == sorted(SOURCES)
    for source in SOURCES:
        assert sorted(p.name for p in (workdir / source).iterdir()) == sorted(CATEGORIES)

    assert len(truth.scene_of) == 3 * 2 * 4 * 6 * 5  # categories x sources x videos x scenes x frames
    assert len(truth.scenes) == 3 * 2 * 4 * 6 - 1  # one scene recurs in a second video

    vids = videos_of(truth)
    per_folder: dict[tuple[str, str], int] = defaultdict(int)
    for (source, category, _vid), frames in vids.items():
        per_folder[(source, category)] += 1
        assert len(frames) == 6 * 5
        assert len(scene_runs(frames)) == 6
    assert per_folder == {(s, c): 4 for s in SOURCES for c in CATEGORIES}

    ids = [vid for (_s, _c, vid) in vids]
    assert len(set(ids)) == len(ids)  # video ids are unique in the workdir
    assert any("_" in vid for vid in ids) and any("-" in vid for vid in ids)
    # A name that only the split on the LAST "_" parses: an id with "_" followed by digits.
    assert any("_" in vid and vid.split("_", 1)[1][:1].isdigit() for vid in ids)
    # Lexicographic and numeric order of the names differ (timestamps below and above 10000 ms).
    stamps = [ts for frames in vids.values() for ts, _ in frames]
    assert min(stamps) < 10_000 < max(stamps)

    # Views come from many photos, none more than 12 times, and every frame is the frame size.
    per_photo = defaultdict(int)
    for scene in truth.scenes:
        per_photo[scene_photo(scene)] += 1
    assert len(per_photo) >= 12 and max(per_photo.values()) <= 12
    for rel in list(truth.scene_of)[::37]:
        with Image.open(workdir / rel) as im:
            assert ImageOps.exif_transpose(im).size == (640, 360)


def test_every_file_is_accounted_for(sample: tuple[Path, SampleTruth]) -> None:
    workdir, truth = sample
    files = all_files(workdir)
    assert set(files) == set(truth.scene_of) | set(truth.bad_files)
    assert not set(truth.scene_of) & set(truth.bad_files)
    assert set(truth.special) <= set(truth.scene_of)
    for rel in truth.scene_of:
        assert (workdir / rel).is_file()


def test_timestamps_make_scenes_runs(sample: tuple[Path, SampleTruth]) -> None:
    _workdir, truth = sample
    for frames in videos_of(truth).values():
        stamps = [ts for ts, _ in frames]
        assert len(set(stamps)) == len(stamps)
        runs = scene_runs(frames)
        assert len(runs) == len(set(runs)), "a scene must be one run of frames within a video"
        for (t0, s0), (t1, s1) in itertools.pairwise(frames):
            gap = t1 - t0
            if s0 == s1:
                assert 200 <= gap <= 500
            else:
                assert gap >= 2000


# ------------------------------------------------------------------------ scenes: jitter, distinctness


def test_frames_of_a_scene_are_jittered_near_duplicates(
    sample: tuple[Path, SampleTruth], greys: dict[str, np.ndarray]
) -> None:
    workdir, truth = sample
    scenes = truth.frames_by_scene()
    differing_quality = 0
    for scene, rels in scenes.items():
        digests = {hashlib.md5((workdir / rel).read_bytes()).hexdigest() for rel in rels}
        assert len(digests) == len(rels), f"{scene}: frames are byte copies, not jittered"
        ref = windows(greys[rels[0]])
        for rel in rels[1:]:
            assert likeness(ref, greys[rel]) >= 0.6, f"{rel} does not look like {scene}"
            assert not np.array_equal(greys[rel], greys[rels[0]])
        qtables = set()
        for rel in rels:
            with Image.open(workdir / rel) as im:
                qtables.add(repr(sorted(im.quantization.items())))
        differing_quality += len(qtables) > 1
    assert differing_quality >= 0.8 * len(scenes)  # JPEG quality varies within (nearly) every scene


def _luma_table_sum(quality: int) -> int:
    buf = io.BytesIO()
    Image.new("L", (16, 16)).save(buf, "JPEG", quality=quality)
    with Image.open(buf) as im:
        return sum(im.quantization[0])


def test_jitter_is_a_handheld_cameras(sample: tuple[Path, SampleTruth]) -> None:
    """Frames of a scene move by up to 2 x 8 px relative to each other (not the mild 1-4 px of a tripod),
    but not more than a camera's jitter; their JPEG quality spans 60-95."""
    workdir, truth = sample
    size = (320, 180)  # a quarter of the frame: shifts are measured to ~1 px of the frame
    window = cv2.createHanningWindow(size, cv2.CV_32F)

    def g(rel: str) -> np.ndarray:
        with Image.open(workdir / rel) as im:
            im.draft("L", size)
            return np.asarray(ImageOps.exif_transpose(im).convert("L").resize(size), dtype=np.float32)

    shifts = []
    for rels in truth.frames_by_scene().values():
        first = g(rels[0])
        for rel in rels[1:]:
            (dx, dy), response = cv2.phaseCorrelate(first, g(rel), window)
            if response > 0.1:  # a confident estimate (a few flat or starry views give none)
                shifts.append(max(abs(dx), abs(dy)) * 640 / size[0])
    assert len(shifts) >= 0.8 * (len(truth.scene_of) - len(truth.scenes))
    assert np.percentile(shifts, 90) >= 9.0  # strong jitter: 2-8 px each way per frame
    assert np.percentile(shifts, 95) <= 20.0  # but a jitter, not a pan

    sums = []
    for rel in truth.scene_of:
        with Image.open(workdir / rel) as im:
            sums.append(sum(im.quantization[0]))
    assert min(sums) <= _luma_table_sum(93) and max(sums) >= _luma_table_sum(63)


def test_hard_negatives_are_present_and_distinct(
    sample: tuple[Path, SampleTruth], greys: dict[str, np.ndarray]
) -> None:
    _workdir, truth = sample
    scenes = truth.frames_by_scene()
    runs_by_video = {k: scene_runs(v) for k, v in videos_of(truth).items()}

    # Pans and tilts: consecutive scenes of one video, same photo and size, the view moved along one axis
    # by 25-35% of its size: 65-75% overlap, the closest distinct scenes there are.
    steps = []
    for runs in runs_by_video.values():
        for a, b in itertools.pairwise(runs):
            if scene_photo(a) == scene_photo(b) and (step := pan_step(box_of(a), box_of(b))) is not None:
                steps.append(step)
    assert len(steps) >= 30
    assert sum(0.25 <= s <= 0.3 for s in steps) >= 5  # some pans are as close as the truth allows

    # The stereo pair: two consecutive scenes of one video.
    assert any(
        [scene_photo(s) for s in pair] == ["motorcycle_left", "motorcycle_right"]
        for runs in runs_by_video.values()
        for pair in itertools.pairwise(runs)
    )

    # Distinct views of one photo: a pan/tilt step of >= 25% (overlap <= 75%), or overlap <= 70% of the
    # smaller view (a smaller view lies >= 30% outside a bigger one: never a mere zoom-in).
    same_photo = [(a, b) for a, b in itertools.combinations(scenes, 2) if is_hard_negative(a, b)]
    assert len(same_photo) >= 300
    for a, b in same_photo:
        if scene_photo(a) == scene_photo(b):
            ba, bb = box_of(a), box_of(b)
            step = pan_step(ba, bb)
            if step is not None and step >= 0.25:
                assert overlap_of_smaller(ba, bb) <= 0.75 + 1e-9, (a, b)
            else:
                assert overlap_of_smaller(ba, bb) <= 0.70 + 1e-9, (a, b)

    # Even allowing a small shift, every frame of a hard negative looks less like the scene than the
    # scene's own frames do.
    for a, b in same_photo:
        ref_a = windows(greys[scenes[a][0]])
        own = min(likeness(ref_a, greys[r]) for r in scenes[a][1:])
        other = max(likeness(ref_a, greys[r]) for r in scenes[b])
        assert other < own, f"{a} and {b} are not distinct scenes"


def test_a_plain_hash_cannot_split_this_sample_at_one_threshold(sample: tuple[Path, SampleTruth]) -> None:
    """The sample is hard where real scrapes are: jitter flips many dhash bits between frames of one scene,
    and distinct scenes (of one photo or not) come within a few bits of each other."""
    workdir, truth = sample
    rels = sorted(truth.scene_of)
    codes = np.array([plain_dhash(workdir / rel) for rel in rels], dtype=np.uint64)
    dist = np.bitwise_count(codes[:, None] ^ codes[None, :])
    scene = np.array([truth.scene_of[rel] for rel in rels])
    upper = np.triu(np.ones(dist.shape, dtype=bool), 1)
    same = (scene[:, None] == scene[None, :]) & upper
    other = (scene[:, None] != scene[None, :]) & upper
    assert (dist[same] > 6).mean() >= 0.15  # a threshold of 6 misses many duplicates
    assert (dist[same] > 10).mean() >= 0.03  # ... and even 10 misses some
    assert (dist[other] <= 8).sum() >= 10  # while 8 already merges distinct scenes


def test_a_scene_recurs_in_another_category_and_source(sample: tuple[Path, SampleTruth]) -> None:
    _workdir, truth = sample
    recurring = []
    for scene, rels in truth.frames_by_scene().items():
        places = {parse(rel)[:2] for rel in rels}
        if len(places) > 1:
            assert len({c for _s, c in places}) == 2 and len({s for s, _c in places}) == 2
            assert len(rels) == 2 * 5
            recurring.append(scene)
    assert len(recurring) == 1


# ------------------------------------------------------------------------------ bad and special files


def test_bad_files_are_what_they_say(sample: tuple[Path, SampleTruth]) -> None:
    workdir, truth = sample
    kinds = sorted(truth.bad_files.values())
    expected = ["bad-name", "bad-name", "png-named-jpg", "space-in-name", "text-named-jpg", "truncated", "zero-byte"]
    assert [k for k in kinds if k != "non-utf8-name"] == expected
    assert len({parse_folder(rel) for rel in truth.bad_files}) >= 3  # spread over folders
    assert len({parse_folder(rel)[1] for rel in truth.bad_files}) == 3  # and over all categories

    for rel, what in truth.bad_files.items():
        data = (workdir / rel).read_bytes()  # surrogate-escaped names round-trip on POSIX
        name = rel.rsplit("/", 1)[1]
        if what == "zero-byte":
            assert data == b""
        elif what == "truncated":
            assert data[:2] == b"\xff\xd8" and not data.endswith(b"\xff\xd9")
            with pytest.raises(OSError), Image.open(workdir / rel) as im:
                im.load()
        elif what == "png-named-jpg":
            assert data.startswith(b"\x89PNG\r\n\x1a\n") and name.endswith(".jpg")
        elif what == "text-named-jpg":
            assert name.endswith(".jpg")
            data.decode("ascii")
            with pytest.raises(OSError):
                Image.open(workdir / rel)
        elif what == "bad-name":
            stem = name[: -len(".jpg")]
            assert "_" not in stem or not stem.rsplit("_", 1)[1].isdigit()
        elif what == "space-in-name":
            assert " " in name
        elif what == "non-utf8-name":
            with pytest.raises(UnicodeEncodeError):
                name.encode("utf-8")
        else:
            pytest.fail(f"unknown bad kind {what}")
        if what in ("bad-name", "space-in-name", "non-utf8-name"):
            with Image.open(workdir / rel) as im:
                assert im.format == "JPEG"  # only the name is wrong


def parse_folder(rel: str) -> tuple[str, str]:
    source, category, _name = rel.split("/")
    return source, category


def test_non_utf8_name_is_there_unless_the_file_system_refuses(sample: tuple[Path, SampleTruth]) -> None:
    workdir, truth = sample
    odd = [rel for rel, what in truth.bad_files.items() if what == "non-utf8-name"]
    if not odd:
        pytest.skip("this file system refuses names that are not UTF-8")
    (rel,) = odd
    assert os.path.exists(os.fsencode(workdir / rel))
    assert b"\xff" in os.fsencode(rel)


def test_special_frames_decode_and_match_their_scene(
    sample: tuple[Path, SampleTruth], greys: dict[str, np.ndarray]
) -> None:
    workdir, truth = sample
    assert sorted(truth.special.values()) == ["cmyk", "exif-rotated", "grayscale"]
    assert len({parse(rel)[1] for rel in truth.special}) == 3  # one per category
    scenes = truth.frames_by_scene()
    for rel, note in truth.special.items():
        with Image.open(workdir / rel) as im:
            im.load()
            orientation = im.getexif().get(0x0112)
            if note == "cmyk":
                assert im.mode == "CMYK" and im.size == (640, 360)
            elif note == "grayscale":
                assert im.mode == "L" and im.size == (640, 360)
            elif note == "exif-rotated":
                assert orientation in (6, 8)
                assert im.size == (360, 640)  # pixels stored turned by 90 degrees
                assert ImageOps.exif_transpose(im).size == (640, 360)
        # Upright, the frame is its neighbours' scene (and clearly not what its raw pixels would say).
        mates = [r for r in scenes[truth.scene_of[rel]] if r != rel and r not in truth.special]
        ref = windows(greys[mates[0]])
        upright = likeness(ref, greys[rel])
        assert upright >= 0.6
        if note == "exif-rotated":
            with Image.open(workdir / rel) as im:
                raw = np.asarray(
                    im.convert("L").rotate(90, expand=True).resize(GREY_SIZE, Image.Resampling.BOX),
                    dtype=np.float32,
                )
            assert likeness(ref, raw) < upright - 0.2


# ------------------------------------------------------------------------------- json, options, errors


def test_truth_json_round_trip(sample: tuple[Path, SampleTruth], tmp_path: Path) -> None:
    _workdir, truth = sample
    path = tmp_path / "meta" / "truth.json"
    truth.to_json(path)
    assert SampleTruth.from_json(path) == truth
    path.read_text(encoding="ascii")  # surrogate-escaped names are escaped, not written raw


def test_without_bad_files(tmp_path: Path) -> None:
    truth = build_sample_workdir(tmp_path / "w", bad_files=False, **SMALL)
    assert truth.bad_files == {}
    assert set(all_files(tmp_path / "w")) == set(truth.scene_of)


def test_refuses_a_non_empty_workdir(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "keep.txt").write_text("a real workdir")
    with pytest.raises(FileExistsError):
        build_sample_workdir(tmp_path / "w", **SMALL)
    assert [p.name for p in (tmp_path / "w").iterdir()] == ["keep.txt"]


def test_too_many_scenes_is_an_error_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="distinct views"):
        build_sample_workdir(tmp_path / "w", videos_per_source=50)
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())


# ------------------------------------------------------------------------------------------- score


def toy_truth() -> SampleTruth:
    return SampleTruth(
        scene_of={
            "yt/gym/a_100.jpg": "s1",
            "yt/gym/a_300.jpg": "s1",
            "yt/gym/a_500.jpg": "s1",
            "yt/gym/a_5000.jpg": "s2",
            "yt/gym/a_5300.jpg": "s2",
            "vm/street/b_100.jpg": "s1",
            "vm/street/b_9000.jpg": "s3",
        },
        bad_files={"yt/gym/a_700.jpg": "zero-byte"},
        special={},
    )


def test_score_keep_everything_removes_nothing() -> None:
    truth = toy_truth()
    score = score_dedupe(truth, truth.scene_of)
    assert score == DedupeScore(scenes=3, scenes_kept=3, redundant_frames=4, redundant_removed=0)
    assert score.removed_fraction == 0.0 and score.scene_recall == 1.0


def test_score_one_per_scene_is_perfect() -> None:
    truth = toy_truth()
    score = score_dedupe(truth, ["yt/gym/a_300.jpg", "yt/gym/a_5000.jpg", "vm/street/b_9000.jpg"])
    assert score.scene_recall == 1.0 and score.removed_fraction == 1.0


def test_score_counts_a_recurring_scene_globally() -> None:
    truth = toy_truth()
    # s1 kept once per category: one redundant frame kept.
    kept = ["yt/gym/a_100.jpg", "vm/street/b_100.jpg", "yt/gym/a_5000.jpg", "vm/street/b_9000.jpg"]
    score = score_dedupe(truth, kept)
    assert score.redundant_removed == 3 and score.removed_fraction == pytest.approx(0.75)


def test_score_dropped_scene_lowers_recall() -> None:
    truth = toy_truth()
    score = score_dedupe(truth, ["yt/gym/a_100.jpg", "yt/gym/a_5000.jpg"])
    assert score.scenes_kept == 2 and score.scene_recall == pytest.approx(2 / 3)
    assert score.removed_fraction == 1.0
    assert score_dedupe(truth, []).scene_recall == 0.0


def test_score_ignores_bad_unknown_and_repeated_paths() -> None:
    truth = toy_truth()
    base = ["yt/gym/a_100.jpg", "yt/gym/a_5000.jpg", "vm/street/b_9000.jpg"]
    noisy = base + ["yt/gym/a_700.jpg", "nope/x/y_1.jpg", "yt/gym/a_100.jpg", Path("yt/gym/a_5000.jpg")]
    assert score_dedupe(truth, noisy) == score_dedupe(truth, base)


def test_score_of_the_real_sample(sample: tuple[Path, SampleTruth]) -> None:
    _workdir, truth = sample
    one_each = {scene: rels[0] for scene, rels in truth.frames_by_scene().items()}
    perfect = score_dedupe(truth, one_each.values())
    assert perfect.scene_recall == 1.0 and perfect.removed_fraction == 1.0
    assert perfect.redundant_frames == len(truth.scene_of) - len(truth.scenes)
    everything = score_dedupe(truth, list(truth.scene_of) + list(truth.bad_files))
    assert everything.removed_fraction == 0.0 and everything.scene_recall == 1.0


# ------------------------------------------------------------------- low-texture classes


@pytest.mark.parametrize("seed", [3, 11])
def test_low_texture_classes_are_classes_with_repeats_and_dedupe_keeps_them(tmp_path: Path, seed: int) -> None:
    """Each class is drawn from the seed (tune on classes, not on one sample): every class is present, has
    a cross-category repeat, its distinct scenes look distinct, and the defaults keep every scene of it."""
    import shutil

    from samantics_dagster.core.dataset.store import ImageStore
    from samantics_dagster.core.dedupe.engine import dedupe_partition
    from samantics_dagster.core.dedupe.settings import DedupeSettings
    from samantics_dagster.core.workdir.catalog import frames_to_table, list_categories, scan_category
    from samantics_dagster.demo.lowtex import LOW_TEXTURE_CLASSES
    from samantics_dagster.demo.sample import score_by_class

    workdir = tmp_path / "grabby"
    truth = build_sample_workdir(workdir, seed=seed, bad_files=False, low_texture=4, **SMALL)
    assert set(truth.scene_class.values()) == set(LOW_TEXTURE_CLASSES)
    cats_of: dict[str, set[str]] = defaultdict(set)
    for rel, scene in truth.scene_of.items():
        cats_of[scene].add(parse(rel)[1])
    for cls in LOW_TEXTURE_CLASSES:
        assert any(len(cats_of[s]) >= 2 for s, c in truth.scene_class.items() if c == cls), f"{cls}: no repeat"
    scenes = truth.frames_by_scene()
    low = [s for s in scenes if s in truth.scene_class]
    firsts = {s: grey(workdir / scenes[s][0]) for s in low}
    means = {s: np.asarray(Image.open(workdir / scenes[s][0]).convert("RGB"), np.float32).mean(axis=(0, 1)) for s in low}
    for a, b in itertools.combinations(low, 2):  # distinct to a person: another layout or other colours
        if scene_photo(a) == scene_photo(b):
            assert likeness(windows(firsts[a]), firsts[b]) < 0.98 or np.abs(means[a] - means[b]).max() >= 20, (a, b)
    store = ImageStore(tmp_path / "dataset")
    accepted: list[str] = []
    for category in list_categories(workdir):
        table = dedupe_partition(frames_to_table(scan_category(workdir, category)), workdir, store, DedupeSettings()).table
        accepted += table.loc[table.status == "accepted", "rel_path"].tolist()
    per_class = score_by_class(truth, accepted)
    for cls in LOW_TEXTURE_CLASSES:
        assert per_class[cls].scene_recall == 1.0, (cls, per_class[cls])
    assert score_dedupe(truth, accepted).removed_fraction >= 0.85, per_class
    shutil.rmtree(workdir)
