"""``samantics import-legacy``'s engine: old datasets into the tables and the store, nothing re-run."""

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pycocotools import mask as mask_utils

from samantics_dagster.core.curate.filters import split_of_groups
from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.dataset.tables import read_all, read_table, table_path, write_table
from samantics_dagster.core.dedupe.engine import DEDUPE_COLUMNS, dedupe_partition
from samantics_dagster.core.dedupe.engine import to_table as dedupe_table
from samantics_dagster.core.dedupe.imaging import frame_signature
from samantics_dagster.core.dedupe.settings import DedupeSettings
from samantics_dagster.core.label import pipeline as labeling
from samantics_dagster.core.label.pipeline import LABEL_COLUMNS, label_partition
from samantics_dagster.core.tools.legacy import LegacyImportError, import_legacy
from samantics_dagster.core.workdir.catalog import frames_to_table, scan_category
from tests.images import jpeg_bytes, photo
from tests.legacy_fixtures import H, W, build_db_layout, build_selection_layout, frame_bytes

CURATED = ["dhash", "rel_path", "video_id", "status", "reason", "split", "n_annotations"]


def _dhash(data: bytes) -> str:
    """The store name dedupe gives these bytes (the import must give the same)."""
    return f"{frame_signature(data).dhash:016x}"


def _table(dataset: Path, asset: str, category: str) -> pd.DataFrame:
    df = read_table(table_path(dataset, asset, category))
    assert df is not None, f"no {asset} table for {category}"
    return df


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def _check_round_trip(old, dataset: Path) -> None:
    """Every old accepted frame is in the store under this project's dhash, with its exact bytes, and its
    labels decode with pycocotools to masks of the image's size, equal to the old masks."""
    store = ImageStore(dataset)
    for f in old.accepted:
        h = _dhash(f.data)
        assert store.path_for(h).read_bytes() == f.data
        dd = _table(dataset, "deduped_images", f.category).set_index("rel_path")
        row = dd.loc[f.rel_path]
        assert (row.status, row.dhash, row.width, row.height) == ("accepted", h, W, H)
        assert row.settings.startswith("imported:")
        if f.label is None:
            continue
        lb = _table(dataset, "sam3_labels", f.category).set_index("dhash").loc[h]
        assert lb.status == "done" and lb.labeler.startswith(labeling.IMPORTED_PREFIX)
        assert (lb.width, lb.height, lb.rel_path) == (W, H, f.rel_path)
        inst = json.loads(lb.instances)
        assert lb.n_instances == len(inst) == len(f.label["masks"])
        for got, box, cat, rle in zip(inst, f.label["boxes"], f.label["category_ids"], f.label["masks"]):
            assert set(got) == {"category_id", "bbox_xyxy", "score", "rle", "area"}
            mask = mask_utils.decode({"size": got["rle"]["size"], "counts": got["rle"]["counts"].encode()})
            assert mask.shape == (H, W)
            assert np.array_equal(mask, mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}))
            assert got["area"] == mask.sum() and got["bbox_xyxy"] == box and got["category_id"] == cat


def test_pipeline_db_layout_round_trip(tmp_path, guard_workdir):
    old = build_db_layout(tmp_path / "old")
    dataset = tmp_path / "dataset"
    with guard_workdir(old.root):  # the old dataset is read, never written
        report = import_legacy(old.root, dataset)
    assert report.layouts == ["pipeline.db"] and report.all_problems == []
    _check_round_trip(old, dataset)

    assert sorted(p.name for p in (dataset / "images").iterdir()) == sorted(f"{_dhash(f.data)}.jpg" for f in old.accepted)
    gym = _table(dataset, "deduped_images", "gym").set_index("rel_path")
    assert list(gym.reset_index().columns) == DEDUPE_COLUMNS
    assert (gym.loc["youtube/gym/vidA_1200.jpg", "status"], gym.loc["youtube/gym/vidA_1200.jpg", "reason"]) == ("rejected", "dhash")
    assert "near-duplicate" in gym.loc["youtube/gym/vidA_1200.jpg", "detail"]
    assert gym.loc["youtube/gym/vidB_500.jpg", "video_id"] == "vidB"
    kitchen = _table(dataset, "deduped_images", "kitchen").set_index("rel_path")
    assert kitchen.loc["youtube/kitchen/k2_50.jpg", "reason"] == "orb"

    labels = _table(dataset, "sam3_labels", "gym").set_index("rel_path")
    assert list(labels.reset_index()[LABEL_COLUMNS].columns) == LABEL_COLUMNS
    failed = labels.loc["vimeo/gym/vidC_100.jpg"]
    assert failed.status == "failed" and "CUDA out of memory" in failed.error
    k_labels = _table(dataset, "sam3_labels", "kitchen").set_index("rel_path")
    assert k_labels.loc["youtube/kitchen/k1_100.jpg", "n_instances"] == 0
    assert "youtube/kitchen/k1_900.jpg" not in k_labels.index  # pending: sam3_labels labels it

    cur = _table(dataset, "curated_coco", "gym")
    assert list(cur.columns) == CURATED
    assert dict(zip(cur.rel_path, cur.split)) == {"youtube/gym/vidA_1000.jpg": "train", "youtube/gym/vidB_500.jpg": "val"}
    assert dict(zip(cur.rel_path, cur.n_annotations)) == {"youtube/gym/vidA_1000.jpg": 3, "youtube/gym/vidB_500.jpg": 2}
    assert split_of_groups(read_all(dataset, "curated_coco")) == {"vidA": "train", "vidB": "val"}  # curated_coco keeps them
    k_cur = _table(dataset, "curated_coco", "kitchen").iloc[0]
    assert k_cur.status == "excluded" and pd.isna(k_cur.split)
    assert "no detections" in k_cur.reason

    summary = report.summary().set_index("category")
    assert summary.loc["gym", ["frames", "accepted", "rejected", "images_stored", "labels", "label_failed", "curated"]].tolist() \
        == [4, 3, 1, 3, 2, 1, 2]
    assert summary.loc["(total)", "images_stored"] == 5 and summary.loc["(total)", "problems"] == 0
    assert not (dataset / "labels.jsonl").exists()  # the pipeline rebuilds it


@pytest.mark.parametrize("curation", ["jsonl", "coco"])
def test_numbered_layout_round_trip(tmp_path, curation):
    old = build_selection_layout(tmp_path / "old", curation=curation)
    dataset = tmp_path / "dataset"
    report = import_legacy(old.root, dataset)
    assert report.layouts == ["01-selection"] and report.all_problems == []
    _check_round_trip(old, dataset)
    # Keys: legacy/{category}/{name}, or the source_path a record names (also for a frame in no folder).
    assert set(_table(dataset, "deduped_images", "gym").rel_path) == {"legacy/gym/vidA_1000.jpg", "youtube/gym/vidB_500.jpg"}
    assert set(_table(dataset, "deduped_images", "street").rel_path) == {"youtube/street/s1_10.jpg"}
    splits = {}
    for category in ("gym", "kitchen", "street"):
        cur = _table(dataset, "curated_coco", category)
        splits.update({r.rel_path: (r.status, None if pd.isna(r.split) else r.split) for r in cur.itertuples()})
    assert splits == {f.rel_path: (f.curate, f.split) for f in old.frames}


def test_dry_run_writes_nothing_and_reports_the_same(tmp_path):
    old = build_db_layout(tmp_path / "old")
    dataset = tmp_path / "dataset"
    dry = import_legacy(old.root, dataset, dry_run=True)
    assert dry.dry_run and not dataset.exists()
    calls = []
    real = import_legacy(old.root, dataset, progress=lambda done, total: calls.append((done, total)))
    pd.testing.assert_frame_equal(dry.summary(), real.summary())
    assert calls[-1] == (5, 5)
    before = _snapshot(dataset)
    again = import_legacy(old.root, dataset, dry_run=True)
    assert _snapshot(dataset) == before
    assert again.summary().set_index("category").loc["(total)", ["images_stored", "images_present"]].tolist() == [0, 5]


def test_import_again_changes_nothing(tmp_path):
    old = build_selection_layout(tmp_path / "old")
    dataset = tmp_path / "dataset"
    import_legacy(old.root, dataset)
    tables = {p: pd.read_parquet(p) for p in sorted((dataset / "tables").rglob("*.parquet"))}
    images = _snapshot(dataset / "images")
    report = import_legacy(old.root, dataset)
    assert report.summary().set_index("category").loc["(total)", ["images_stored", "images_present"]].tolist() == [0, 5]
    assert _snapshot(dataset / "images") == images
    assert sorted(tables) == sorted((dataset / "tables").rglob("*.parquet"))
    for path, before in tables.items():
        pd.testing.assert_frame_equal(pd.read_parquet(path), before)


def test_existing_rows_are_kept_and_a_frame_already_in_the_dataset_is_not_stored_twice(tmp_path):
    old = build_db_layout(tmp_path / "old")
    workdir, dataset = tmp_path / "grabby", tmp_path / "dataset"
    # The dataset already holds a frame of its own, and the old vidB_500 under another name.
    (workdir / "youtube" / "gym").mkdir(parents=True)
    (workdir / "youtube" / "gym" / "new_1.jpg").write_bytes(frame_bytes("clock"))
    (workdir / "youtube" / "gym" / "copy_7.jpg").write_bytes(old.frame("youtube/gym/vidB_500.jpg").data)
    run = dedupe_partition(frames_to_table(scan_category(workdir, "gym")), workdir, ImageStore(dataset), DedupeSettings())
    write_table(run.table, table_path(dataset, "deduped_images", "gym"))
    mine = {"dhash": "0123456789abcdef", "rel_path": "youtube/gym/new_1.jpg", "status": "done", "error": None,
            "n_instances": 0, "instances": "[]", "labeler": "sam3:x", "width": W, "height": H}
    write_table(labeling.to_table([mine]), table_path(dataset, "sam3_labels", "gym"))

    report = import_legacy(old.root, dataset)
    gym = _table(dataset, "deduped_images", "gym").set_index("rel_path")
    assert {"youtube/gym/new_1.jpg", "youtube/gym/copy_7.jpg"} <= set(gym.index)
    dup = gym.loc["youtube/gym/vidB_500.jpg"]
    assert (dup.status, dup.reason) == ("rejected", "dhash") and "copy_7.jpg" in dup.detail
    assert gym["dhash"][gym.status == "accepted"].is_unique
    assert "0123456789abcdef" in set(_table(dataset, "sam3_labels", "gym").dhash)
    assert _dhash(old.frame("youtube/gym/vidB_500.jpg").data) not in set(_table(dataset, "sam3_labels", "gym").dhash)
    assert any("vidB_500" in p and "already in the dataset" in p for p in report.all_problems)


def test_later_dedupe_runs_neither_drop_nor_duplicate_imported_frames(tmp_path, guard_workdir):
    old = build_db_layout(tmp_path / "old")
    dataset = tmp_path / "dataset"
    import_legacy(old.root, dataset)
    store = ImageStore(dataset)
    imported = _table(dataset, "deduped_images", "gym")
    n_stored = len(store.hashes())

    def run(workdir: Path, previous: pd.DataFrame, dry_run: bool = False):
        with guard_workdir(workdir):
            return dedupe_partition(frames_to_table(scan_category(workdir, "gym")), workdir, store, DedupeSettings(),
                                    previous=previous, dry_run=dry_run)

    # 1. grabby cleared its folder: the workdir has one new frame and a copy of an imported one.
    gone = tmp_path / "gone"
    (gone / "youtube" / "gym").mkdir(parents=True)
    (gone / "youtube" / "gym" / "vidN_10.jpg").write_bytes(jpeg_bytes(photo("moon", (W, H))))
    (gone / "youtube" / "gym" / "vidZ_1.jpg").write_bytes(old.frame("youtube/gym/vidB_500.jpg").data)
    table = run(gone, imported).table.set_index("rel_path")
    for row in imported.itertuples():  # every imported row is still there, unchanged
        assert table.loc[row.rel_path, "status"] == row.status and table.loc[row.rel_path, "dhash"] == row.dhash
    assert table.loc["youtube/gym/vidN_10.jpg", "status"] == "accepted"
    copy = table.loc["youtube/gym/vidZ_1.jpg"]  # same bytes as an imported frame: its content digest says so
    assert (copy.status, copy.reason, copy.dup_of) == ("rejected", "exact", "youtube/gym/vidB_500.jpg")
    assert len(store.hashes()) == n_stored + 1

    # 2. grabby still has the very same files: they adopt their imported rows (not decided again).
    same = tmp_path / "same"
    for f in old.frames:
        if f.category == "gym":
            (same / f.rel_path).parent.mkdir(parents=True, exist_ok=True)
            (same / f.rel_path).write_bytes(f.data)
    dry = run(same, imported, dry_run=True)
    assert set(dry.table.settings[dry.table.status == "accepted"]) == {imported.settings.iloc[0]}  # kept for the real run
    result = run(same, imported)
    assert result.reused == 3 and result.processed == 1  # the rejected frame has no copy to compare: decided again
    table = result.table.set_index("rel_path")
    assert table.index.is_unique and set(table.index) == set(imported.rel_path)
    for row in imported[imported.status == "accepted"].itertuples():
        assert table.loc[row.rel_path, "dhash"] == row.dhash and table.loc[row.rel_path, "status"] == "accepted"
        assert table.loc[row.rel_path, "settings"] == DedupeSettings().fingerprint()
    assert table.loc["youtube/gym/vidA_1200.jpg", "status"] == "rejected"
    assert len(store.hashes()) == n_stored + 1
    again = run(same, result.table)  # from now on the ordinary size + mtime fingerprint applies
    assert again.processed == 0 and again.reused == 4

    # 3. a changed file under an imported name is decided again, not trusted.
    (same / "youtube/gym/vidB_500.jpg").write_bytes(frame_bytes("grass"))
    redo = run(same, imported)
    assert redo.table.set_index("rel_path").loc["youtube/gym/vidB_500.jpg", "dhash"] != \
        imported.set_index("rel_path").loc["youtube/gym/vidB_500.jpg", "dhash"]


def test_imported_labels_are_done_for_sam3_labels(tmp_path):
    old = build_db_layout(tmp_path / "old")
    dataset = tmp_path / "dataset"
    import_legacy(old.root, dataset)
    deduped = _table(dataset, "deduped_images", "gym")
    seen = []

    def segment(images):
        seen.extend(im.size for im in images)
        return [[] for _ in images]

    result = label_partition(deduped[deduped.status == "accepted"], ImageStore(dataset), segment, "sam3:test",
                             table_path=table_path(dataset, "sam3_labels", "gym"), log=lambda _: None)
    assert result.reused == 2 and len(seen) == 1  # only the legacy failure is labelled again
    table = result.table.set_index("rel_path")
    assert table.loc["youtube/gym/vidA_1000.jpg", "labeler"].startswith("imported:")
    assert table.loc["vimeo/gym/vidC_100.jpg", "labeler"] == "sam3:test"


def test_bad_input_is_reported_per_item_and_the_rest_is_imported(tmp_path):
    old = build_db_layout(tmp_path / "old")
    con = sqlite3.connect(old.root / "pipeline.db")
    con.execute("ALTER TABLE frames ADD COLUMN operator TEXT")
    rows = [("youtube/gym/bad_1.jpg", "accepted", "bad_1.jpg"), ("youtube/gym/gone_7.jpg", "accepted", None),
            ("youtube/gym/odd_3.jpg", "maybe", None)]
    for src, status, _ in rows:
        con.execute("INSERT INTO frames (source_path, select_status) VALUES (?, ?)", (src, status))
    con.commit()
    con.close()
    (old.root / "images" / "bad_1.jpg").write_bytes(b"")  # zero bytes
    wrong = dict(old.frame("youtube/kitchen/k1_100.jpg").label, source_path="youtube/kitchen/k1_900.jpg",
                 image="images/k1_900.jpg", masks=[{"size": [10, 10], "counts": "0<0"}], boxes=[[0, 0, 5, 5]],
                 category_ids=[1], scores=[0.9])
    with open(old.root / "labels.jsonl", "a") as fh:
        fh.write('{"image": "images/x.jpg", "boxes": [\n')
        fh.write(json.dumps(wrong) + "\n")

    report = import_legacy(old.root, tmp_path / "dataset")
    problems = "\n".join(report.all_problems)
    assert "operator" in problems
    assert "bad_1.jpg" in problems and "zero-byte" in problems
    assert "gone_7.jpg" in problems and "no image" in problems
    assert "'maybe'" in problems
    assert "labels.jsonl line 4: not JSON" in problems
    assert "k1_900" in problems and "is 10x10 but the image is 320x180" in problems
    assert all("\n" not in p for p in report.all_problems)
    _check_round_trip(old, tmp_path / "dataset")  # everything else came in
    gym = set(_table(tmp_path / "dataset", "deduped_images", "gym").rel_path)
    assert not gym & {"youtube/gym/bad_1.jpg", "youtube/gym/gone_7.jpg", "youtube/gym/odd_3.jpg"}
    assert report.summary().set_index("category").loc["gym", "skipped"] == 3


def test_an_unreadable_database_is_reported_and_the_labelled_images_still_come_in(tmp_path):
    old = build_db_layout(tmp_path / "old")
    (old.root / "pipeline.db").write_bytes(b"this is not a database" * 100)
    report = import_legacy(old.root, tmp_path / "dataset")
    assert any("unreadable SQLite database" in p for p in report.problems)
    # Records that name their source_path keep their key; the others land in the `legacy` category.
    assert set(_table(tmp_path / "dataset", "deduped_images", "kitchen").rel_path) == {"youtube/kitchen/k1_100.jpg"}
    assert len(_table(tmp_path / "dataset", "deduped_images", "legacy")) == 2


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_no_old_dataset_is_a_one_line_error_naming_the_path_and_the_fix(tmp_path, make):
    root = tmp_path / "old"
    if make == "empty":
        root.mkdir()
        (root / "notes.txt").write_text("hello")
    elif make == "file":
        root.write_text("x")
    with pytest.raises(LegacyImportError) as err:
        import_legacy(root, tmp_path / "dataset")
    message = str(err.value)
    assert str(root) in message and "--data-root" in message and "\n" not in message
    assert not (tmp_path / "dataset").exists()


def test_merged_tables_keep_the_project_schema(tmp_path):
    """An imported table reads back through the project's own table constructors unchanged."""
    old = build_db_layout(tmp_path / "old")
    import_legacy(old.root, tmp_path / "dataset")
    dd = _table(tmp_path / "dataset", "deduped_images", "gym")
    pd.testing.assert_frame_equal(dedupe_table(dd.to_dict("records")), dd)
    lb = _table(tmp_path / "dataset", "sam3_labels", "gym")
    pd.testing.assert_frame_equal(labeling.to_table(lb.to_dict("records")), lb)


def test_a_minimal_database_is_enough(tmp_path):
    """Only source_path: frames whose image is in images/ were accepted, the others are left to the pipeline."""
    root = tmp_path / "old"
    (root / "images").mkdir(parents=True)
    data = frame_bytes("coffee")
    (root / "images" / "v_1.jpg").write_bytes(data)
    con = sqlite3.connect(root / "pipeline.db")
    con.execute("CREATE TABLE frames (source_path TEXT)")
    con.executemany("INSERT INTO frames VALUES (?)", [("youtube/cars/v_1.jpg",), ("youtube/cars/v_2.jpg",)])
    con.commit()
    con.close()
    report = import_legacy(root, tmp_path / "dataset")
    assert report.all_problems == []
    table = _table(tmp_path / "dataset", "deduped_images", "cars")
    assert table.rel_path.tolist() == ["youtube/cars/v_1.jpg"] and table.dhash.tolist() == [_dhash(data)]
    assert report.summary().set_index("category").loc["cars", ["accepted", "skipped", "labels"]].tolist() == [1, 1, 0]
