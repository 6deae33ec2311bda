"""The dataset contract has one home: paths from the layout, statuses from the schema, one atomic writer."""

from __future__ import annotations

import ast
import errno
import os
from pathlib import Path

import pandas as pd
import pytest

from samantics_dagster.core.dataset.atomic import DatasetWriteError, write_atomic, write_json_atomic
from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.dataset.schema import (
    SAM3_LABELS,
    TABLES,
    CurateReason,
    CurateStatus,
    DedupeReason,
    DedupeStatus,
    LabelStatus,
    Split,
    TableName,
)
from samantics_dagster.core.dataset.tables import read_table, write_table

PACKAGE = Path(__file__).resolve().parents[3] / "samantics_dagster"
STATUS_WORDS = {str(v) for enum in (DedupeStatus, DedupeReason, LabelStatus, CurateStatus, CurateReason) for v in enum}
PATH_WORDS = {"coco-spec.json", "sam-queries.yaml", "images", "tables", "coco", "labels.jsonl", ".parts", ".locks",
              ".index", "export", "claims"}
# Modules that read *other* layouts on purpose: the legacy import reads an old dataset's own folders.
OLD_LAYOUT_READERS = ("core/tools/legacy.py", "core/tools/legacy/")


def _sources() -> list[tuple[str, ast.AST]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("core/dataset/"):
            continue
        out.append((rel, ast.parse(path.read_text(encoding="utf-8"))))
    return out


def _is_str(node: ast.AST, words: set[str]) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in words


def test_no_status_literal_is_compared_outside_the_schema() -> None:
    found = []
    for rel, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and all(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
                sides = [node.left, *node.comparators]
                found += [f"{rel}:{node.lineno} {s.value!r}" for s in sides if _is_str(s, STATUS_WORDS)]  # type: ignore[attr-defined]
            if isinstance(node, ast.keyword) and node.arg in ("status", "reason") and _is_str(node.value, STATUS_WORDS):
                found.append(f"{rel}:{node.value.lineno} {node.arg}={node.value.value!r}")  # type: ignore[attr-defined]
    assert not found, "use the enums of core/dataset/schema.py:\n" + "\n".join(found)


def test_no_dataset_path_is_joined_outside_the_layout() -> None:
    found = []
    for rel, tree in _sources():
        if rel.startswith(OLD_LAYOUT_READERS):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and _is_str(node.right, PATH_WORDS):
                found.append(f"{rel}:{node.lineno} / {node.right.value!r}")  # type: ignore[attr-defined]
    assert not found, "ask core/dataset/layout.py for dataset paths:\n" + "\n".join(found)


def test_no_module_imports_another_modules_private_name() -> None:
    found = []
    for rel, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("samantics_dagster"):
                found += [f"{rel}:{node.lineno} {a.name}" for a in node.names if a.name.startswith("_")]
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in ("dedupe", "labeling", "records", "coco")):
                found.append(f"{rel}:{node.lineno} {node.value.id}.{node.attr}")
    assert not found, "\n".join(found)


def test_layout_is_the_documented_contract(tmp_path: Path) -> None:
    layout = DatasetLayout(tmp_path)
    assert layout.spec == tmp_path / "coco-spec.json"
    assert layout.queries == tmp_path / "sam-queries.yaml"
    assert layout.image("00ff00ff00ff00ff") == tmp_path / "images" / "00ff00ff00ff00ff.jpg"
    assert layout.table(TableName.SAM3_LABELS, "gym") == tmp_path / "tables" / "sam3_labels" / "gym.parquet"
    assert layout.label_parts("gym") == tmp_path / "tables" / "sam3_labels" / ".parts" / "gym"
    assert layout.labels_jsonl == tmp_path / "labels.jsonl"
    assert layout.coco_category("gym", Split.VAL) == tmp_path / "coco" / "gym" / "val.json"
    assert layout.coco_merged(Split.TRAIN) == tmp_path / "coco" / "train.json"
    assert layout.yolo == tmp_path / "export" / "yolo"
    assert layout.lock("dedupe") == tmp_path / ".locks" / "dedupe.lock"


def test_schema_casts_rows_to_the_declared_dtypes_and_order() -> None:
    rows = [{"dhash": "b" * 16, "rel_path": "y/g/v_2.jpg", "status": LabelStatus.FAILED, "error": "boom",
             "n_instances": 0, "instances": "[]", "labeler": "m", "width": None, "height": None},
            {"dhash": "a" * 16, "rel_path": "y/g/v_1.jpg", "status": "done", "n_instances": 2, "instances": "[]",
             "labeler": "m", "width": 640, "height": 480, "not_a_column": 1}]
    df = SAM3_LABELS.frame(rows)
    assert list(df.columns) == SAM3_LABELS.names
    assert list(df["dhash"]) == ["a" * 16, "b" * 16]  # sorted by the key
    assert {c.name: str(df[c.name].dtype) for c in SAM3_LABELS.columns} == {c.name: c.dtype for c in SAM3_LABELS.columns}
    assert (df["status"] == LabelStatus.DONE).sum() == 1  # StrEnum compares with the stored string
    assert pd.isna(df["width"].iloc[1])


@pytest.mark.parametrize("table", list(TableName))
def test_every_table_round_trips_parquet_with_its_dtypes(table: TableName, tmp_path: Path) -> None:
    schema = TABLES[table]
    empty = schema.frame([])
    path = DatasetLayout(tmp_path).table(table, "gym")
    write_table(empty, path)
    back = read_table(path)
    assert back is not None and list(back.columns) == schema.names
    assert [str(t) for t in back.dtypes] == [c.dtype for c in schema.columns]


def test_atomic_writes_follow_the_umask_and_leave_nothing_half_written(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "coco" / "train.json"
        write_json_atomic({"images": []}, path)
        assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600: another uid can read it

        def full_disk(fh: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        with pytest.raises(DatasetWriteError, match=r"train\.json.*free space"):
            write_atomic(path, full_disk)
        assert path.read_text() == '{"images":[]}'  # the old file is untouched
        assert sorted(p.name for p in path.parent.iterdir()) == ["train.json"]  # no temp file left
    finally:
        os.umask(old)
