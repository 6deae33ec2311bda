"""The dedupe engine on real JPEG files in a temp workdir (no Dagster)."""

import os
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.dedupe.engine import dedupe_partition
from samantics_dagster.core.dedupe.settings import DedupeSettings
from samantics_dagster.core.workdir.catalog import frames_to_table, scan_category
from tests.images import jpeg_bytes, photo, shifted

W, H = 640, 360


def _write(workdir: Path, rel: str, img: Image.Image | bytes, quality: int = 90) -> Path:
    path = workdir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(img if isinstance(img, bytes) else jpeg_bytes(img, quality))
    return path


DEFAULTS = DedupeSettings()


def _run(workdir, dataset, category, settings=DEFAULTS, previous=None, dry_run=False):
    frames = frames_to_table(scan_category(workdir, category))
    return dedupe_partition(frames, workdir, ImageStore(dataset), settings, previous=previous, dry_run=dry_run)


def _status(table: pd.DataFrame) -> dict[str, tuple[str, str | None]]:
    return {r.rel_path.split("/")[-1]: (r.status, None if pd.isna(r.reason) else r.reason) for r in table.itertuples()}


def _pan(x: int, name: str = "astronaut") -> Image.Image:
    return photo(name, (1600, 900)).crop((x, 200, x + W, 200 + H))


@pytest.fixture
def dirs(tmp_path):
    return tmp_path / "grabby", tmp_path / "dataset"


def test_jitter_in_a_video_keeps_one_frame_and_a_pan_keeps_both(dirs):
    workdir, dataset = dirs
    base = _pan(300)
    _write(workdir, "yt/gym/v1_1000.jpg", base, 92)
    _write(workdir, "yt/gym/v1_1200.jpg", shifted(base, 3, 1), 80)
    _write(workdir, "yt/gym/v1_1400.jpg", Image.eval(shifted(base, -2), lambda v: min(255, int(v * 1.03))), 85)
    _write(workdir, "yt/gym/v1_5000.jpg", _pan(520), 90)  # the camera panned on: a new view
    result = _run(workdir, dataset, "gym")
    status = _status(result.table)
    assert status["v1_1000.jpg"] == ("accepted", None)
    assert status["v1_5000.jpg"] == ("accepted", None)
    assert status["v1_1200.jpg"][0] == "rejected" and status["v1_1200.jpg"][1] in ("dhash", "orb")
    assert status["v1_1400.jpg"][0] == "rejected"
    stored = sorted(p.name for p in (dataset / "images").iterdir())
    accepted = result.table[result.table.status == "accepted"]
    assert stored == sorted(f"{h}.jpg" for h in accepted.dhash)
    for row in accepted.itertuples():  # byte-for-byte copies
        assert (dataset / "images" / f"{row.dhash}.jpg").read_bytes() == (workdir / row.rel_path).read_bytes()


def test_exact_duplicates_are_caught_before_hashing(dirs):
    workdir, dataset = dirs
    data = jpeg_bytes(photo("coffee", (W, H)))
    _write(workdir, "yt/kitchen/a_1.jpg", data)
    _write(workdir, "vimeo/kitchen/b_1.jpg", data)
    table = _run(workdir, dataset, "kitchen").table
    row = table[table.rel_path == "yt/kitchen/a_1.jpg"].iloc[0]
    assert row.status == "rejected" and row.reason == "exact" and row.dup_of == "vimeo/kitchen/b_1.jpg"


def test_dedupe_is_global_across_categories(dirs):
    workdir, dataset = dirs
    scene = photo("chelsea", (W, H))
    _write(workdir, "yt/cats/v_100.jpg", scene)
    _write(workdir, "vimeo/pets/w_100.jpg", shifted(scene, 2), 80)
    _write(workdir, "vimeo/pets/w_9000.jpg", photo("rocket", (W, H)))
    first = _run(workdir, dataset, "cats").table
    second = _run(workdir, dataset, "pets").table
    stored_hash = first.iloc[0].dhash
    row = second[second.rel_path == "vimeo/pets/w_100.jpg"].iloc[0]
    assert (row.status, row.reason, row.dup_of) == ("rejected", "dhash", stored_hash)
    assert second[second.rel_path == "vimeo/pets/w_9000.jpg"].iloc[0].status == "accepted"


def test_rerun_with_nothing_new_is_idempotent_and_reads_nothing(dirs):
    workdir, dataset = dirs
    for i, name in enumerate(["astronaut", "coffee", "rocket"]):
        _write(workdir, f"yt/mix/v{i}_0.jpg", photo(name, (W, H)))
    first = _run(workdir, dataset, "mix")
    mtimes = {p.name: p.stat().st_mtime_ns for p in (dataset / "images").iterdir()}
    second = _run(workdir, dataset, "mix", previous=first.table)
    assert second.processed == 0 and second.copied == 0 and second.reused == 3
    pd.testing.assert_frame_equal(first.table, second.table)
    assert {p.name: p.stat().st_mtime_ns for p in (dataset / "images").iterdir()} == mtimes


def test_only_new_or_changed_frames_are_decided_again(dirs):
    workdir, dataset = dirs
    _write(workdir, "yt/mix/a_0.jpg", photo("astronaut", (W, H)))
    _write(workdir, "yt/mix/b_0.jpg", photo("coffee", (W, H)))
    first = _run(workdir, dataset, "mix")
    _write(workdir, "yt/mix/c_0.jpg", photo("rocket", (W, H)))
    p = workdir / "yt/mix/b_0.jpg"
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    second = _run(workdir, dataset, "mix", previous=first.table)
    assert second.processed == 2 and second.reused == 1
    # b was decided again: it must not be judged a duplicate of its own stored copy
    assert set(second.table.status) == {"accepted"}


def test_changed_settings_redo_the_partition_without_self_matches(dirs):
    workdir, dataset = dirs
    for i, name in enumerate(["astronaut", "coffee"]):
        _write(workdir, f"yt/mix/v{i}_0.jpg", photo(name, (W, H)))
    first = _run(workdir, dataset, "mix")
    second = _run(workdir, dataset, "mix", settings=DedupeSettings(dhash_threshold=6), previous=first.table)
    assert second.processed == 2
    assert list(second.table.status) == ["accepted", "accepted"]
    assert len(list((dataset / "images").iterdir())) == 2


def test_dry_run_writes_nothing_to_the_store(dirs):
    workdir, dataset = dirs
    _write(workdir, "yt/mix/a_0.jpg", photo("astronaut", (W, H)))
    result = _run(workdir, dataset, "mix", dry_run=True)
    assert result.copied == 0 and (result.table.status == "accepted").all()
    assert not (dataset / "images").exists() or not list((dataset / "images").iterdir())


def test_frames_that_left_the_workdir_stay_in_the_dataset(dirs):
    workdir, dataset = dirs
    _write(workdir, "yt/mix/a_0.jpg", photo("astronaut", (W, H)))
    _write(workdir, "yt/mix/b_0.jpg", photo("coffee", (W, H)))
    first = _run(workdir, dataset, "mix")
    (workdir / "yt/mix/a_0.jpg").unlink()
    second = _run(workdir, dataset, "mix", previous=first.table)
    assert set(second.table.rel_path) == {"yt/mix/a_0.jpg", "yt/mix/b_0.jpg"}
    assert len(list((dataset / "images").iterdir())) == 2


def test_missing_store_file_is_copied_again(dirs):
    workdir, dataset = dirs
    _write(workdir, "yt/mix/a_0.jpg", photo("astronaut", (W, H)))
    first = _run(workdir, dataset, "mix")
    stored = dataset / "images" / f"{first.table.iloc[0].dhash}.jpg"
    stored.unlink()
    second = _run(workdir, dataset, "mix", previous=first.table)
    assert second.copied == 1 and stored.is_file()


def test_bad_inputs_become_rows_and_the_partition_completes(dirs):
    workdir, dataset = dirs
    good = photo("camera", (W, H))
    _write(workdir, "yt/bad/ok_1.jpg", good)
    _write(workdir, "yt/bad/zero_1.jpg", b"")
    _write(workdir, "yt/bad/trunc_1.jpg", jpeg_bytes(photo("coffee", (W, H)))[:5000])
    import io
    buf = io.BytesIO()
    good.save(buf, "PNG")
    _write(workdir, "yt/bad/png_1.jpg", buf.getvalue())
    _write(workdir, "yt/bad/text_1.jpg", b"404 not found\n")
    _write(workdir, "yt/bad/my video_1.jpg", photo("rocket", (W, H)))
    (workdir / "yt/bad").joinpath(os.fsdecode(b"vid\xff_1.jpg")).write_bytes(jpeg_bytes(photo("moon", (W, H))))
    table = _run(workdir, dataset, "bad").table
    status = _status(table)
    assert status["ok_1.jpg"] == ("accepted", None)
    for name in ("zero_1.jpg", "trunc_1.jpg", "png_1.jpg", "text_1.jpg"):
        assert status[name] == ("rejected", "decode_error"), name
    assert status["my video_1.jpg"] == ("rejected", "unparsed")
    assert status["vid\\xff_1.jpg"] == ("rejected", "unparsed")
    assert table.detail.notna()[table.status == "rejected"].all()
    table.to_parquet(dataset / "check.parquet")  # odd names survive Arrow


def _dedupe_locked(args):
    workdir, dataset, category = args
    store = ImageStore(Path(dataset))
    with store.dedupe_lock():
        frames = frames_to_table(scan_category(Path(workdir), category))
        return dedupe_partition(frames, Path(workdir), store, DedupeSettings(), workers=1).table


def test_two_processes_deduping_at_once_keep_one_copy_of_a_shared_scene(dirs):
    """The Dagster pool serialises runs of one instance; the file lock covers a second process."""
    import multiprocessing

    workdir, dataset = dirs
    scene = photo("rocket", (W, H))
    for i, cat in enumerate(["a", "b", "c", "d"]):
        _write(workdir, f"yt/{cat}/v{i}_0.jpg", shifted(scene, i), 85 + i)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        tables = pool.map(_dedupe_locked, [(str(workdir), str(dataset), c) for c in "abcd"])
    assert sum(int((t.status == "accepted").sum()) for t in tables) == 1
    assert len(list((dataset / "images").glob("*.jpg"))) == 1


def test_a_100_megapixel_frame_is_hashed_at_reduced_size(dirs):
    workdir, dataset = dirs
    big = photo("astronaut", (10000, 10000))
    _write(workdir, "yt/huge/v_0.jpg", big, 70)
    table = _run(workdir, dataset, "huge").table
    row = table.iloc[0]
    assert (row.status, row.width, row.height) == ("accepted", 10000, 10000)


def test_a_run_killed_before_its_table_was_written_reclaims_its_stored_frames(dirs):
    """Copies happen during the run, the table at its end: the claims journal bridges a kill in between."""
    workdir, dataset = dirs
    for i, name in enumerate(["astronaut", "coffee", "rocket"]):
        _write(workdir, f"yt/mix/v{i}_0.jpg", photo(name, (W, H)))
    _run(workdir, dataset, "mix")  # its table is "lost": the next run gets previous=None
    again = _run(workdir, dataset, "mix")
    assert list(again.table.status) == ["accepted"] * 3, again.table[["rel_path", "reason", "detail"]]
    assert len(list((dataset / "images").glob("*.jpg"))) == 3


def test_dry_run_rows_are_decided_again_by_a_real_run(dirs):
    workdir, dataset = dirs
    _write(workdir, "yt/a/v_0.jpg", photo("chelsea", (W, H)))
    dry = _run(workdir, dataset, "a", dry_run=True)
    real = _run(workdir, dataset, "a", previous=dry.table)
    assert real.processed == 1 and real.copied == 1
    assert (dataset / "images" / f"{real.table.iloc[0].dhash}.jpg").is_file()


def test_read_errors_are_retried_but_content_errors_are_not(dirs):
    """A permission fix doesn't change size or mtime, so read failures are tried again; a corrupt file is not."""
    workdir, dataset = dirs
    _write(workdir, "yt/a/good_0.jpg", photo("coffee", (W, H)))
    _write(workdir, "yt/a/bad_0.jpg", jpeg_bytes(photo("rocket", (W, H)))[:4000])
    first = _run(workdir, dataset, "a")
    assert first.table.set_index("rel_path").loc["yt/a/bad_0.jpg", "reason"] == "decode_error"
    previous = first.table.copy()
    good = previous.rel_path == "yt/a/good_0.jpg"
    previous.loc[good, ["status", "reason", "detail"]] = ["rejected", "decode_error", "cannot read frame (Permission denied); fix it"]
    second = _run(workdir, dataset, "a", previous=previous)
    assert second.processed == 1 and second.reused == 1  # good_0 read again, bad_0's content error kept
    assert second.table.set_index("rel_path").loc["yt/a/good_0.jpg", "status"] == "accepted"


def test_the_store_never_holds_bytes_other_than_the_ones_hashed(dirs):
    """A source rewritten behind the fingerprint's back (same size and mtime) is not copied under the old hash."""
    workdir, dataset = dirs
    path = _write(workdir, "yt/a/v_0.jpg", photo("astronaut", (W, H)))
    st = path.stat()
    first = _run(workdir, dataset, "a")
    stored = dataset / "images" / f"{first.table.iloc[0].dhash}.jpg"
    stored.unlink()
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = _run(workdir, dataset, "a", previous=first.table)
    assert second.copied == 0 and not stored.exists()


# ------------------------------------------------------------ low-texture frames


def _smooth(c0, c1, noise_seed: int, dx: int = 0) -> Image.Image:
    """A smooth horizontal colour gradient (a 2x-wide canvas cropped at ``dx``), with sensor noise."""
    import numpy as np

    t = np.linspace(0, 1, 2 * W, dtype=np.float32)[None, dx:dx + W, None]
    arr = np.asarray(c0, np.float32) + t * (np.asarray(c1, np.float32) - np.asarray(c0, np.float32))
    arr = np.broadcast_to(arr, (H, W, 3)) + np.random.default_rng(noise_seed).normal(0, 2, (H, W, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _blob_views(seed: int) -> list[Image.Image]:
    """The sample builder's blurred object (``demo/lowtex.py``), faint (a tint ~25 levels off a gently lit
    grey wall), seen from two places 35% of the width apart: ORB finds no corners, and a normalised
    thumbnail is mostly the wall's ramp, the same in both views."""
    import numpy as np

    from samantics_dagster.demo.lowtex import _blurred_object

    canvas = _blurred_object(np.random.default_rng(seed), (2 * W, 2 * H), 135, (230, 140, 60), strength=(0.25, 0.25))
    x0, step = W // 2 - 112, 224
    return [canvas.crop((x, H // 2, x + W, H // 2 + H)) for x in (x0, x0 + step)]


def _noisy(img: Image.Image, seed: int, dx: int = 0) -> Image.Image:
    import numpy as np

    arr = np.roll(np.asarray(img, np.float32), dx, axis=1) + np.random.default_rng(seed).normal(0, 2, (H, W, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def test_unrelated_smooth_frames_are_not_merged_on_the_hash(dirs):
    """Low-texture class 1: a colour gradient and a dark-blue sky share a near-constant dhash; colour tells."""
    workdir, dataset = dirs
    _write(workdir, "yt/gym/aaa_1000.jpg", _smooth((200, 60, 50), (230, 200, 70), 1))
    _write(workdir, "vm/street/bbb_1000.jpg", _smooth((8, 14, 48), (40, 70, 130), 2))
    _write(workdir, "vm/street/bbb_1400.jpg", _smooth((8, 14, 48), (40, 70, 130), 3))  # its own repeat
    gym = _run(workdir, dataset, "gym").table
    street = _status(_run(workdir, dataset, "street").table)
    assert _status(gym)["aaa_1000.jpg"][0] == "accepted"
    assert street["bbb_1000.jpg"][0] == "accepted", street
    assert street["bbb_1400.jpg"] == ("rejected", "dhash")


def test_other_crops_of_one_gradient_are_distinct_scenes(dirs):
    """Class 2: crops of one smooth gradient half a frame apart, in two categories: both kept."""
    workdir, dataset = dirs
    _write(workdir, "yt/gym/aaa_1000.jpg", _smooth((50, 80, 190), (230, 140, 60), 1, dx=0))
    _write(workdir, "vm/street/bbb_1000.jpg", _smooth((50, 80, 190), (230, 140, 60), 2, dx=W // 2))
    _write(workdir, "vm/street/bbb_1400.jpg", _smooth((50, 80, 190), (230, 140, 60), 3, dx=W // 2 + 4))
    _run(workdir, dataset, "gym")
    street = _status(_run(workdir, dataset, "street").table)
    assert street["bbb_1000.jpg"][0] == "accepted", street
    assert street["bbb_1400.jpg"][0] == "rejected"


def test_a_blurred_object_moved_by_a_third_of_the_frame_is_a_new_view(dirs):
    """Class 3: ORB finds too few corners; phase correlation measures the 35% shift."""
    workdir, dataset = dirs
    here, there = _blob_views(seed=0)  # the old normalised-thumbnail test called these the same (0.24)
    _write(workdir, "yt/gym/aaa_1000.jpg", _noisy(here, 1))
    _write(workdir, "yt/gym/aaa_1400.jpg", _noisy(here, 2, dx=5))  # jitter: the same view
    _write(workdir, "vm/gym/bbb_1000.jpg", _noisy(there, 3))       # 30-40% of the width further on
    status = _status(_run(workdir, dataset, "gym").table)
    assert status["aaa_1000.jpg"][0] == "accepted"
    assert status["aaa_1400.jpg"][0] == "rejected", status
    assert status["bbb_1000.jpg"][0] == "accepted", status


def test_signal_knobs_change_the_settings_fingerprint():
    from samantics_dagster.core.dedupe.settings import SignalSettings

    base = DedupeSettings()
    assert DedupeSettings(signals=SignalSettings(min_structure=20)).fingerprint() != base.fingerprint()
    assert DedupeSettings(signals=SignalSettings(colour_max=20.0)).fingerprint() != base.fingerprint()
    assert DedupeSettings().fingerprint() == base.fingerprint()


# ------------------------------------------------------------ the hard classes (demo/hardcases.py)


def _hard_views(cls: str, seed: int = 5) -> list[Image.Image]:
    """The sample builder's canvases of one hard class, cropped to their frame-sized views."""
    import numpy as np

    from samantics_dagster.demo.hardcases import plan_hard_cases
    from samantics_dagster.demo.sample import load_photos

    views = []
    for c, _name, img, (x, y, w, h), _group, _takes in plan_hard_cases(np.random.default_rng(seed), (W, H),
                                                                        load_photos(), 4):
        if c == cls:
            views.append(img.crop((x, y, x + w, y + h)))
    return views


def test_vignetted_muted_walls_a_hue_apart_are_other_scenes(dirs):
    """The vignette decides the hash bits alike in every wall: it is no structure, and the hue tells them apart."""
    from samantics_dagster.core.dedupe.imaging import frame_signature

    walls = _hard_views("vignette_wall")
    sig = frame_signature(jpeg_bytes(_noisy(walls[0], 1)))
    assert sig.structure < DedupeSettings().signals.min_structure  # the vignette alone: little structure
    workdir, dataset = dirs
    for k, wall in enumerate(walls):
        _write(workdir, f"yt/gym/w{k}_1000.jpg", _noisy(wall, 10 + k))
        _write(workdir, f"yt/gym/w{k}_1400.jpg", _noisy(wall, 20 + k, dx=4))  # its own repeat
    status = _status(_run(workdir, dataset, "gym").table)
    assert [status[f"w{k}_1000.jpg"][0] for k in range(len(walls))] == ["accepted"] * len(walls), status
    assert [status[f"w{k}_1400.jpg"][0] for k in range(len(walls))] == ["rejected"] * len(walls), status


def test_textured_views_a_small_offset_apart_are_other_scenes(dirs):
    """Adjacent crops and a stereo pair of a vignetted texture: one hash (the vignette's), other views."""
    workdir, dataset = dirs
    views = _hard_views("offset_view")
    for k, view in enumerate(views):
        _write(workdir, f"yt/gym/v{k}_1000.jpg", _noisy(view, 30 + k))
        _write(workdir, f"yt/gym/v{k}_1400.jpg", _noisy(view, 40 + k, dx=-5))
    status = _status(_run(workdir, dataset, "gym").table)
    assert [status[f"v{k}_1000.jpg"][0] for k in range(len(views))] == ["accepted"] * len(views), status
    assert [status[f"v{k}_1400.jpg"][0] for k in range(len(views))] == ["rejected"] * len(views), status


def test_two_dark_near_uniform_frames_are_other_scenes(dirs):
    workdir, dataset = dirs
    darks = _hard_views("dark_flat")
    for k, dark in enumerate(darks):
        _write(workdir, f"vm/street/d{k}_1000.jpg", _noisy(dark, 50 + k))
    status = _status(_run(workdir, dataset, "street").table)
    assert all(s[0] == "accepted" for s in status.values()), status


# ------------------------------------------------------------ one dhash, two scenes (the store key)


def _lit_wall(rgb: tuple[int, int, int], gain: float = 1.0) -> Image.Image:
    """An evenly lit wall darkening towards the floor and ceiling: every row is flat, so every horizontal cell
    difference is zero and the dhash is 0000000000000000 whatever the wall's colour."""
    import numpy as np

    y = np.linspace(-1, 1, H, dtype=np.float32)[:, None, None]
    arr = np.asarray(rgb, np.float32) * gain * (1 - 0.15 * y**2) * np.ones((1, W, 3), np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _stored_rows(table: pd.DataFrame, workdir: Path, dataset: Path) -> dict[str, str]:
    """rel_path -> store key of every accepted row, asserting its own bytes are stored under that key."""
    out = {}
    for row in table[table.status == "accepted"].itertuples():
        path = dataset / "images" / f"{row.dhash}.jpg"
        assert path.is_file(), f"{row.rel_path}: no stored file {path.name}"
        assert path.read_bytes() == (workdir / row.rel_path).read_bytes(), f"{row.rel_path}: {path.name} holds another frame"
        out[row.rel_path] = row.dhash
    return out


def test_two_scenes_with_one_dhash_are_each_stored_under_a_key_of_their_own(dirs):
    """Two walls of other colours share a dhash (0000000000000000): both are accepted, and the second must not
    be silently dropped by the store (which never overwrites a name). It gets the nearest free key, and later
    copies of either wall, in another run, are judged duplicates of their own wall's stored frame."""
    from samantics_dagster.core.dedupe.imaging import frame_signature

    workdir, dataset = dirs
    red, blue = _lit_wall((150, 110, 100)), _lit_wall((100, 120, 160))
    assert frame_signature(jpeg_bytes(red)).dhash == frame_signature(jpeg_bytes(blue)).dhash == 0
    _write(workdir, "yt/gym/wall1_1000.jpg", red)
    _write(workdir, "yt/gym/wall2_1000.jpg", blue)
    gym = _run(workdir, dataset, "gym").table
    assert set(_status(gym).values()) == {("accepted", None)}, gym[["rel_path", "reason", "detail"]]
    keys = _stored_rows(gym, workdir, dataset)
    assert len(set(keys.values())) == 2 and keys["yt/gym/wall1_1000.jpg"] == "0" * 16  # first come keeps its hash
    blue_key = keys["yt/gym/wall2_1000.jpg"]
    assert bin(int(blue_key, 16)).count("1") == 1  # the nearest free code: one bit from its dhash
    blue_row = gym.set_index("rel_path").loc["yt/gym/wall2_1000.jpg"]
    assert "0000000000000000" in blue_row.detail and blue_key in blue_row.detail

    # Later copies (another video, another category, re-encoded a little brighter) find their own wall.
    _write(workdir, "vm/street/b2_1000.jpg", _lit_wall((100, 120, 160), 1.03), 85)
    _write(workdir, "vm/street/r2_1000.jpg", _lit_wall((150, 110, 100), 1.03), 85)
    street = _run(workdir, dataset, "street").table.set_index("rel_path")
    assert (street.loc["vm/street/b2_1000.jpg", "status"], street.loc["vm/street/b2_1000.jpg", "dup_of"]) == ("rejected", blue_key)
    assert (street.loc["vm/street/r2_1000.jpg", "status"], street.loc["vm/street/r2_1000.jpg", "dup_of"]) == ("rejected", "0" * 16)
    assert len(list((dataset / "images").glob("*.jpg"))) == 2

    # Deciding the partition again (changed settings) finds each wall's own stored copy: no third file.
    again = _run(workdir, dataset, "gym", settings=DedupeSettings(orb_window=4), previous=gym).table
    assert _stored_rows(again, workdir, dataset) == keys
    assert len(list((dataset / "images").glob("*.jpg"))) == 2
