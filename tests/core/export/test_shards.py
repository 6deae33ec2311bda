"""The shard manifest from the byte indexes gives the merge's counts and problems without merging, and
knows when the single files lag behind the shards."""

import json
import os

import pandas as pd
import pytest

from samantics_dagster.core.dataset.frame import CocoFrame
from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.dataset.schema import CURATED_COCO, TableName
from samantics_dagster.core.dataset.tables import write_table
from samantics_dagster.core.export.byte_index import index_path
from samantics_dagster.core.export.shards import (
    export_coco,
    load_manifest,
    load_shards,
    shard_problems,
    single_files_current,
    split_totals,
)
from samantics_dagster.core.export.stream import write_coco_frames
from samantics_dagster.core.export.stream_check import scan_merged_coco
from tests.core.export.test_stream import _frames, spec  # noqa: F401  (spec is a fixture)


def _category(layout: DatasetLayout, spec, category: str, frames: list[CocoFrame]) -> None:  # noqa: F811
    write_coco_frames(layout.coco_category(category, "train"), spec, frames)
    write_table(CURATED_COCO.frame(pd.DataFrame({"dhash": [f.dhash for f in frames], "rel_path": "x", "status": "included",
                                                 "split": "train"})), layout.table(TableName.CURATED_COCO, category))


@pytest.fixture
def layout(tmp_path, spec):  # noqa: F811
    layout = DatasetLayout(tmp_path / "dataset")
    _category(layout, spec, "cars", _frames(1, 9, "cars"))
    _category(layout, spec, "dogs", _frames(2, 7, "dogs", start=100))
    return layout


def test_totals_from_the_indexes_equal_the_merge_and_a_shared_image_counts_once(layout, spec):  # noqa: F811
    shared = _frames(1, 9, "cars")[:2]  # two of cars' frames also in birds: the merge writes them once
    _category(layout, spec, "birds", [*shared, *_frames(3, 4, "birds", start=200)])
    export = export_coco(layout, spec, lambda n: True, "run-1")
    merged = export.merged["train"]
    assert split_totals(load_shards(layout)["train"]) == (merged.images, merged.annotations)
    assert merged.shared_images == 2
    entry = export.manifest["splits"]["train"]
    assert (entry["images"], entry["annotations"]) == (merged.images, merged.annotations) and entry["current"]
    assert not scan_merged_coco(layout.coco_merged("train"), spec, (entry["images"], entry["annotations"])).problems
    # a file written by another tool (no byte index) is parsed and gives the same ids
    index_path(layout.coco_category("dogs", "train")).unlink()
    assert split_totals(load_shards(layout)["train"]) == (merged.images, merged.annotations)


def test_an_annotation_id_on_two_images_is_found_from_the_ids(layout, spec):  # noqa: F811
    path = layout.coco_category("dogs", "train")
    data = json.loads(path.read_text())
    cars = json.loads(layout.coco_category("cars", "train").read_text())
    clash = next(a for a in data["annotations"])
    clash["id"] = cars["annotations"][0]["id"]  # the same id on a dogs image
    path.write_text(json.dumps(data))  # another tool's write: no current index, parsed
    problems = shard_problems(load_shards(layout))
    assert len(problems) == 1 and str(cars["annotations"][0]["id"]) in problems[0] and "dogs" in problems[0]


def test_single_files_wait_above_the_limit_and_the_manifest_says_so(layout, spec):  # noqa: F811
    export_coco(layout, spec, lambda n: True, "run-1")
    merged_before = layout.coco_merged("train").read_bytes()
    assert single_files_current(layout, load_manifest(layout), load_shards(layout))
    _category(layout, spec, "zebras", _frames(4, 5, "zebras", start=300))
    waited = export_coco(layout, spec, lambda n: False, "run-2")
    assert waited.merged is None and layout.coco_merged("train").read_bytes() == merged_before
    entry = waited.manifest["splits"]["train"]
    assert not entry["current"] and "zebras" in {s["category"] for s in entry["shards"]}
    assert entry["images"] == 9 + 7 + 5  # the shards' count, not the stale file's
    assert waited.manifest["single_files"]["run_id"] == "run-1"  # still the record of the last full write
    full = export_coco(layout, spec, lambda n: True, "run-3")
    assert full.manifest["splits"]["train"]["current"] and full.merged["train"].images == 21
    # a merged file changed behind the manifest's back is not current
    path = layout.coco_merged("train")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))
    assert not single_files_current(layout, load_manifest(layout), load_shards(layout))
