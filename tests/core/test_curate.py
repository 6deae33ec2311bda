"""Curation filters and the per-frame curated table, on hand-made label rows."""

import json

import pandas as pd
import pytest

from samantics_dagster.core.curate.filters import CurateSettings, curate_partition, filter_instances, split_of_groups
from samantics_dagster.core.dataset.spec import SpecError, load_spec
from samantics_dagster.demo.spec import DEMO_SPEC

W, H = 64, 48


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "coco-spec.json"
    path.write_text(json.dumps(DEMO_SPEC))
    return load_spec(path)


def inst(category_id, score=0.9, area=100.0, box=(1, 1, 20, 20)):
    return {"category_id": category_id, "bbox_xyxy": list(box), "score": score,
            "rle": {"size": [H, W], "counts": "x"}, "area": area}


@pytest.mark.parametrize("instances, settings, reason, kept", [
    ([], CurateSettings(), "no_detections", 0),
    ([inst(1), inst(2)], CurateSettings(), "person_only", 0),
    ([inst(1), inst(2)], CurateSettings(keep_only_person=True), None, 2),
    ([inst(1), inst(3)], CurateSettings(), None, 2),
    ([inst(3, score=0.2)], CurateSettings(min_score=0.5), "below_min_score", 0),
    ([inst(3, score=0.2), inst(8)], CurateSettings(min_score=0.5), None, 1),
    ([inst(8), inst(12)], CurateSettings(categories=("vehicle",)), "not_chosen", 0),
    ([inst(3), inst(5), inst(8)], CurateSettings(categories=("vehicle",)), None, 2),
    ([inst(3), inst(8)], CurateSettings(categories=("cat",)), None, 1),
    ([inst(3, area=0)], CurateSettings(), "unusable", 0),
    ([inst(3, box=(5, 5, 5.5, 30))], CurateSettings(), "unusable", 0),
    # people plus a car the category filter removes: what is left is people only
    ([inst(1), inst(3)], CurateSettings(categories=("person", "cat")), "person_only", 0),
])
def test_filters_follow_the_old_curate_script(spec, instances, settings, reason, kept):
    out, why, _ = filter_instances(instances, W, H, spec, settings, settings.chosen_ids(spec))
    assert why == reason and len(out) == kept


def test_an_unknown_category_name_is_an_error_not_an_empty_dataset(spec):
    with pytest.raises(SpecError, match="bicycel"):
        CurateSettings(categories=("bicycel",)).chosen_ids(spec)


def _tables(n_videos=12, per_video=5):
    deduped, labels = [], []
    for v in range(n_videos):
        for f in range(per_video):
            dhash = f"{v:08x}{f:08x}"
            rel = f"yt/cars/vid{v}_{f * 100}.jpg"
            deduped.append({"rel_path": rel, "video_id": f"vid{v}", "status": "accepted", "dhash": dhash})
            status, instances = "done", [inst(3), inst(1)]
            if (v, f) == (0, 0):
                continue  # accepted, not labelled yet
            if (v, f) == (0, 1):
                status, instances = "failed", []
            if (v, f) == (0, 2):
                instances = []
            labels.append({"dhash": dhash, "rel_path": rel, "status": status, "error": "boom" if status == "failed" else None,
                           "n_instances": len(instances), "instances": json.dumps(instances), "labeler": "x",
                           "width": W, "height": H})
    deduped.append({"rel_path": "yt/cars/dup_1.jpg", "video_id": "dup", "status": "rejected", "dhash": "f" * 16})
    return pd.DataFrame(labels), pd.DataFrame(deduped)


def test_curated_table_has_a_row_per_accepted_frame_with_reason_and_split(spec):
    labels, deduped = _tables()
    cur = curate_partition(labels, deduped, spec, CurateSettings(), category="cars")
    table = cur.table.set_index("dhash")
    assert len(table) == 60  # the rejected frame has no row
    assert table.loc["0000000000000000", "reason"] == "not_labelled"
    assert table.loc["0000000000000001", "reason"] == "label_failed"
    assert table.loc["0000000000000002", "reason"] == "no_detections"
    included = table[table.status == "included"]
    assert len(included) == 57 and set(included.split) <= {"train", "val"} and included.n_annotations.eq(2).all()
    assert table[table.status == "excluded"].split.isna().all()
    assert included.groupby("video_id")["split"].nunique().max() == 1
    assert sum(len(f) for f in cur.frames.values()) == 57
    assert {f.category for fs in cur.frames.values() for f in fs} == {"cars"}


def test_videos_keep_their_split_across_runs_and_categories(spec):
    labels, deduped = _tables()
    first = curate_partition(labels, deduped, spec, CurateSettings(seed=1)).table
    previous = split_of_groups({"cars": first})
    again = curate_partition(labels, deduped, spec, CurateSettings(seed=99), previous)
    pd.testing.assert_frame_equal(first, again.table)
    # a video another category already put in val stays in val here
    forced = {"vid3": "val", "vid4": "val"}
    other = curate_partition(labels, deduped, spec, CurateSettings(seed=1), forced).table
    assert set(other.loc[other.video_id.isin(["vid3", "vid4"]) & (other.status == "included"), "split"]) == {"val"}
