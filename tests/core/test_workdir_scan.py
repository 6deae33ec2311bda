"""The workdir sensor's scanner on real temp folders; time is set with os.utime where it matters."""

import json
import os
import time
from pathlib import Path

import pytest

from samantics_dagster.core.workdir.catalog import MAX_KEY_BYTES, list_category_folders, partition_key_problem
from samantics_dagster.core.workdir.scan import WorkdirError, decode_cursor, encode_cursor, scan_workdir

PAST = time.time() - 3600  # long quiet: well outside the quiet period and the racy window


def touch(path: Path, at: float) -> None:
    """A frame (empty file) at ``path``; the file, its folder and any folder created for it get mtime ``at``."""
    created = []
    for parent in reversed(path.parents):
        if not parent.exists():
            created.append(parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    for p in [path, path.parent, *created, *(c.parent for c in created)]:
        os.utime(p, (at, at))


def build(workdir: Path, layout: dict[str, int], at: float = PAST) -> None:
    """``{"youtube/gym": 3}`` -> three frames in youtube/gym; then every folder is settled at ``at``."""
    for folder, n in layout.items():
        d = workdir / folder
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (d / f"vid{i % 2}_{1000 * i}.jpg").touch()
    for dirpath, _, files in os.walk(workdir, topdown=False):
        for f in files:
            os.utime(os.path.join(dirpath, f), (at, at))
        os.utime(dirpath, (at, at))


@pytest.fixture
def workdir(tmp_path):
    wd = tmp_path / "grabby"
    build(wd, {"youtube/gym": 3, "youtube/park": 2, "vimeo/gym": 1, "vimeo/beach": 4})
    return wd


def test_first_scan_reports_every_category_then_a_repeat_lists_nothing(workdir, guard_workdir):
    with guard_workdir(workdir):
        first = scan_workdir(workdir, None)
        assert first.categories == ["beach", "gym", "park"]
        assert set(first.changed) == {"beach", "gym", "park"}
        assert first.waiting == {} and first.skipped == {} and first.complete
        assert all(len(sig) == 16 for sig in first.changed.values())

        text = encode_cursor(first.cursor)
        assert json.loads(text) == first.cursor and len(text) < 400

        again = scan_workdir(workdir, decode_cursor(text))
    assert again.changed == {} and again.waiting == {} and again.complete
    assert again.categories == first.categories
    assert again.folders_listed == 0  # root, 2 sources and 4 category folders: one stat each
    assert again.folders_statted == 1 + 2 + 4
    assert again.cursor == first.cursor


def test_a_new_frame_changes_only_its_category_with_a_new_signature(workdir, guard_workdir):
    first = scan_workdir(workdir, None)
    touch(workdir / "youtube/park/vid9_5000.jpg", PAST + 10)
    with guard_workdir(workdir):
        second = scan_workdir(workdir, first.cursor)
    assert list(second.changed) == ["park"]
    assert second.changed["park"] != first.changed["park"]
    assert second.folders_listed == 1  # youtube/park only
    third = scan_workdir(workdir, second.cursor)
    assert third.changed == {} and third.folders_listed == 0


def test_signature_is_stable_for_the_same_state(workdir):
    a = scan_workdir(workdir, None)
    b = scan_workdir(workdir, {})
    assert a.changed == b.changed


def test_non_frame_files_and_hidden_files_are_not_counted(workdir):
    first = scan_workdir(workdir, None)
    for name in ("notes.txt", ".partial.jpg", "meta.json"):
        (workdir / "vimeo/beach" / name).touch()
    os.utime(workdir / "vimeo/beach", (PAST + 5, PAST + 5))
    second = scan_workdir(workdir, first.cursor)
    # the folder was listed (its mtime moved), the count is unchanged, but the mtime is part of the state
    assert second.folders_listed == 1
    assert second.cursor["c"]["beach"]["vimeo"][1] == 4
    touch(workdir / "vimeo/beach/x_1.JPEG", PAST + 6)
    assert scan_workdir(workdir, second.cursor).cursor["c"]["beach"]["vimeo"][1] == 5


def test_a_folder_still_being_written_waits_then_is_reported_once_quiet(workdir, guard_workdir):
    first = scan_workdir(workdir, None)
    now = time.time()
    touch(workdir / "youtube/gym/vid7_100.jpg", now - 5)  # written 5 s ago
    with guard_workdir(workdir):
        second = scan_workdir(workdir, first.cursor, now=now, quiet_seconds=30)
        assert second.changed == {} and list(second.waiting) == ["gym"]
        assert "youtube/gym" in second.waiting["gym"] and "30 s" in second.waiting["gym"]
        assert {s: e[:2] for s, e in second.cursor["c"]["gym"].items()} == first.cursor["c"]["gym"]  # not advanced
        still = scan_workdir(workdir, second.cursor, now=now + 10, quiet_seconds=30)
        assert still.changed == {} and list(still.waiting) == ["gym"]
        quiet = scan_workdir(workdir, still.cursor, now=now + 40, quiet_seconds=30)
    assert list(quiet.changed) == ["gym"] and quiet.waiting == {}
    assert scan_workdir(workdir, quiet.cursor, now=now + 50).changed == {}


def test_a_frame_still_being_written_in_an_old_folder_waits(workdir):
    """The folder's mtime is old (the file was created long ago) but the file is still growing."""
    first = scan_workdir(workdir, None)
    now = time.time()
    f = workdir / "vimeo/beach/slow_1.jpg"
    touch(f, now - 100)
    os.utime(f, (now - 2, now - 2))  # last write 2 s ago
    second = scan_workdir(workdir, first.cursor, now=now, quiet_seconds=30)
    assert list(second.waiting) == ["beach"] and second.changed == {}
    assert list(scan_workdir(workdir, second.cursor, now=now + 31, quiet_seconds=30).changed) == ["beach"]


def test_a_waiting_folder_is_listed_again_even_if_its_mtime_goes_back(workdir):
    """A copy that restores mtimes (rsync -t, cp -p) can put a folder back on its recorded mtime."""
    first = scan_workdir(workdir, None)
    recorded = first.cursor["c"]["park"]["youtube"][0]
    now = time.time()
    touch(workdir / "youtube/park/vid5_1.jpg", now - 1)
    assert list(scan_workdir(workdir, first.cursor, now=now).waiting) == ["park"]
    busy = scan_workdir(workdir, first.cursor, now=now)
    for p in (workdir / "youtube/park", *(workdir / "youtube/park").iterdir()):
        os.utime(p, ns=(recorded, recorded))
    quiet = scan_workdir(workdir, busy.cursor, now=now)
    assert list(quiet.changed) == ["park"] and quiet.cursor["c"]["park"]["youtube"][1] == 3


def test_a_new_category_that_is_still_being_written_is_not_forgotten(workdir):
    first = scan_workdir(workdir, None)
    now = time.time()
    touch(workdir / "youtube/lake/v_1.jpg", now - 1)
    os.utime(workdir / "youtube", (PAST + 20, PAST + 20))  # the source folder itself is settled
    second = scan_workdir(workdir, first.cursor, now=now)
    assert list(second.waiting) == ["lake"] and "lake" not in second.categories
    third = scan_workdir(workdir, second.cursor, now=now + 5)  # source unchanged now: lake from the cursor
    assert list(third.waiting) == ["lake"]
    fourth = scan_workdir(workdir, third.cursor, now=now + 60)
    assert list(fourth.changed) == ["lake"] and "lake" in fourth.categories


def test_a_new_category_in_an_existing_source_is_found(workdir, guard_workdir):
    first = scan_workdir(workdir, None)
    touch(workdir / "vimeo/lake/v_1.jpg", PAST + 10)
    with guard_workdir(workdir):
        second = scan_workdir(workdir, first.cursor)
    assert list(second.changed) == ["lake"]
    assert second.categories == ["beach", "gym", "lake", "park"]
    assert second.folders_listed == 2  # vimeo (its mtime moved) and vimeo/lake; youtube is not listed


def test_a_category_in_two_sources_is_one_partition(workdir):
    first = scan_workdir(workdir, None)
    assert set(first.cursor["c"]["gym"]) == {"youtube", "vimeo"}
    touch(workdir / "vimeo/gym/v_99.jpg", PAST + 10)
    second = scan_workdir(workdir, first.cursor)
    assert list(second.changed) == ["gym"] and second.changed["gym"] != first.changed["gym"]
    # a third source with the same category joins it too
    touch(workdir / "tiktok/gym/t_1.jpg", PAST + 20)
    third = scan_workdir(workdir, second.cursor)
    assert list(third.changed) == ["gym"] and set(third.cursor["c"]["gym"]) == {"youtube", "vimeo", "tiktok"}


def test_removed_folders(workdir):
    first = scan_workdir(workdir, None)
    for f in (workdir / "vimeo/gym").iterdir():
        f.unlink()
    (workdir / "vimeo/gym").rmdir()
    os.utime(workdir / "vimeo", (PAST + 10, PAST + 10))
    second = scan_workdir(workdir, first.cursor)
    assert list(second.changed) == ["gym"]  # one of its folders went away
    assert set(second.cursor["c"]["gym"]) == {"youtube"}
    for f in (workdir / "youtube/park").iterdir():
        f.unlink()
    (workdir / "youtube/park").rmdir()
    os.utime(workdir / "youtube", (PAST + 20, PAST + 20))
    third = scan_workdir(workdir, second.cursor)
    assert third.changed == {} and "park" not in third.categories and "park" not in third.cursor["c"]


def test_an_empty_category_folder_is_not_a_partition_until_a_frame_lands(workdir):
    first = scan_workdir(workdir, None)
    (workdir / "youtube/empty").mkdir()
    os.utime(workdir / "youtube/empty", (PAST + 5, PAST + 5))
    os.utime(workdir / "youtube", (PAST + 5, PAST + 5))
    second = scan_workdir(workdir, first.cursor)
    assert second.changed == {} and "empty" not in second.categories
    touch(workdir / "youtube/empty/v_1.jpg", PAST + 10)
    third = scan_workdir(workdir, second.cursor)
    assert list(third.changed) == ["empty"] and "empty" in third.categories


def test_hidden_odd_and_invalid_names_are_skipped_with_reasons(tmp_path, guard_workdir):
    wd = tmp_path / "grabby"
    outside = tmp_path / "elsewhere"
    build(outside, {"cat": 1})
    long_name = "x" * (MAX_KEY_BYTES + 1)
    build(wd, {"youtube/gym": 1, "youtube/.cache": 1, "youtube/a...b": 1, "youtube/tab\there": 1,
               "youtube/a,b": 1, f"youtube/{long_name}": 1, "youtube/caf\u00e9": 1, ".hidden_source/gym2": 1})
    os.mkdir(os.path.join(os.fsencode(wd), b"youtube", b"bad\xff"))
    os.symlink(outside / "cat", wd / "youtube" / "linked")
    (wd / "youtube" / "stray.txt").touch()  # a file in a source folder is not a category
    for d in (wd / "youtube", os.path.join(os.fsencode(wd), b"youtube", b"bad\xff")):
        os.utime(d, (PAST, PAST))
    with guard_workdir(wd):
        result = scan_workdir(wd, None)
    assert result.categories == ["caf\u00e9", "gym"]
    assert set(result.changed) == {"caf\u00e9", "gym"}
    skipped = result.skipped
    assert "','" in skipped["youtube/a,b"]
    assert set(skipped) == {"youtube/.cache", "youtube/a...b", "youtube/tab\there", "youtube/a,b",
                            f"youtube/{long_name}", "youtube/bad\\xff", "youtube/linked"}
    assert "hidden" in skipped["youtube/.cache"] and "rename" in skipped["youtube/.cache"]
    assert "'...'" in skipped["youtube/a...b"] and "rename" in skipped["youtube/a...b"]
    assert "control" in skipped["youtube/tab\there"]
    assert "UTF-8" in skipped["youtube/bad\\xff"]
    assert "longer than" in skipped[f"youtube/{long_name}"]
    assert "outside GRABBY_WORKDIR" in skipped["youtube/linked"]
    assert all(folder in reason for folder, reason in skipped.items())
    json.dumps(result.cursor)
    # reported when the source folder is listed, not on every tick
    assert scan_workdir(wd, result.cursor).skipped == {}
    # the catalog's listing (add-partitions, the demo) is the same rule: same names, same refusals
    assert list_category_folders(wd) == (result.categories, dict(sorted(skipped.items())))


def test_dagster_refused_substrings_are_refused():
    from dagster._core.definitions.partitions.utils.base import INVALID_PARTITION_SUBSTRINGS

    for bad in INVALID_PARTITION_SUBSTRINGS:
        assert partition_key_problem(f"a{bad}b"), repr(bad)
    for bad in ["a/b", "a,b", " gym", "gym ", "a\x7fb", "a\x85b", "x" * (MAX_KEY_BYTES + 1), ".x", "bad\udcff"]:
        assert partition_key_problem(bad), repr(bad)
    for good in ["gym", "city-street_2", "café", "a..b", "x" * MAX_KEY_BYTES, "two words"]:
        assert partition_key_problem(good) is None, good


def test_chunked_scan_reports_every_category_exactly_once(tmp_path, guard_workdir):
    wd = tmp_path / "grabby"
    names = [f"cat{i:02d}" for i in range(12)]
    build(wd, {f"{src}/{n}": 2 for n in names for src in ("youtube", "vimeo")})
    seen: list[str] = []
    cursor = decode_cursor(None)
    ticks = 0
    with guard_workdir(wd):
        while True:
            result = scan_workdir(wd, decode_cursor(encode_cursor(cursor)), time_budget_s=0.0)
            ticks += 1
            assert not result.complete and result.cursor["at"]  # one category per tick with no budget
            seen += list(result.changed)
            assert set(result.categories) == set(seen)  # scanned so far: already reported
            cursor = result.cursor
            if len(seen) == len(names) or ticks > 50:
                break
        final = scan_workdir(wd, cursor)  # a normal budget completes: nothing left to report
    assert sorted(seen) == names and len(seen) == len(set(seen)) and ticks == len(names)
    assert final.complete and final.changed == {} and final.categories == names and final.cursor.get("at") is None
    assert scan_workdir(wd, final.cursor).folders_listed == 0


def test_a_new_category_found_mid_chunk_is_not_lost(tmp_path):
    wd = tmp_path / "grabby"
    build(wd, {f"youtube/c{i}": 1 for i in range(4)})
    first = scan_workdir(wd, None, time_budget_s=0.0)
    assert list(first.changed) == ["c0"]
    touch(wd / "youtube/c9/v_1.jpg", PAST + 10)
    seen = list(first.changed)
    cursor = first.cursor
    for _ in range(10):
        r = scan_workdir(wd, cursor, time_budget_s=0.0)
        seen += list(r.changed)
        cursor = r.cursor
    assert sorted(seen) == ["c0", "c1", "c2", "c3", "c9"]


def test_corrupt_or_old_cursor_text_means_a_full_rescan(workdir):
    for text in [None, "", "not json", "[1, 2]", '{"v": 0}', '{"v": 1, "c": {"gym": {"youtube": "x"}}}',
                 '{"v": 1, "s": [], "c": {}}', '{"v": 1, "at": 3}', "\x00\xff"]:
        assert decode_cursor(text) == {}, text
        result = scan_workdir(workdir, decode_cursor(text))
        assert set(result.changed) == {"beach", "gym", "park"}
    # a dict that slipped past decode_cursor is checked too
    assert set(scan_workdir(workdir, {"v": 1, "c": 5}).changed) == {"beach", "gym", "park"}


def test_same_clock_tick_changes_are_not_lost_with_no_quiet_period(tmp_path):
    """Two frames written in one time-stamp granule leave the folder's mtime equal: the racy flag catches it."""
    wd = tmp_path / "grabby"
    build(wd, {"youtube/gym": 1})
    d = wd / "youtube/gym"
    (d / "v_2.jpg").touch()
    m = d.stat().st_mtime_ns
    first = scan_workdir(wd, None, quiet_seconds=0)
    assert first.cursor["c"]["gym"]["youtube"] == [m, 2, 1]  # recorded as racy
    (d / "v_3.jpg").touch()
    os.utime(d, ns=(m, m))  # same granule as the first write
    second = scan_workdir(wd, first.cursor, quiet_seconds=0)
    assert list(second.changed) == ["gym"] and second.cursor["c"]["gym"]["youtube"][1] == 3


def test_a_file_rewritten_in_place_is_not_seen_by_design(workdir):
    first = scan_workdir(workdir, None)
    f = next((workdir / "youtube/gym").iterdir())
    f.write_bytes(b"new bytes")  # test setup writes; the scanner never does
    os.utime(f, (PAST + 10, PAST + 10))
    assert scan_workdir(workdir, first.cursor).changed == {}


def test_a_missing_or_unusable_workdir_is_a_clear_error(tmp_path):
    with pytest.raises(WorkdirError, match=r"does not exist.*GRABBY_WORKDIR"):
        scan_workdir(tmp_path / "nope", None)
    (tmp_path / "afile").touch()
    with pytest.raises(WorkdirError, match="not a folder"):
        scan_workdir(tmp_path / "afile", None)
