"""Which taxonomy a COCO file was written with: a changed ``coco-spec.json`` must never mix into one export.

Every COCO file this package writes ends with its ``categories`` (``write_coco_stream``), so the taxonomy is
read from the file's last kilobytes, not by parsing a file that may be gigabytes. Labels follow a changed
spec by themselves (the queries are part of the labeler fingerprint, so ``sam3_labels`` relabels); what can
go stale is a category whose ``curated_coco`` has not run since: the merge refuses it, naming the fix.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from samantics_dagster.core.dataset.spec import Spec
from samantics_dagster.core.export.coco import categories_json

_MARK = b',"categories":'
_TAIL = 1 << 20  # a taxonomy of thousands of categories with keypoints still fits


def file_categories(path: Path) -> list[dict] | None:
    """The ``categories`` a COCO file ends with, or None if it does not end with them (not our writer's)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        fh.seek(max(0, size - _TAIL))
        tail = fh.read()
    at = tail.rfind(_MARK)
    if at < 0 or not tail.endswith(b"}"):
        return None
    try:
        value = json.loads(tail[at + len(_MARK):-1])
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def stale_files(files: Mapping[str, Sequence[Path]], spec: Spec) -> dict[str, list[Path]]:
    """Category -> its files written with another taxonomy than ``spec`` (none: an empty dict)."""
    current = categories_json(spec)
    out: dict[str, list[Path]] = {}
    for category, paths in sorted(files.items()):
        stale = [p for p in paths if (cats := file_categories(p)) is not None and cats != current]
        if stale:
            out[category] = stale
    return out


def taxonomy_error(stale: Mapping[str, Sequence[Path]], spec_path: Path) -> str:
    names = ", ".join(sorted(stale))
    return (f"{len(stale)} categories were curated with another {spec_path} than the current one "
            f"({names}): their COCO files list other categories, and merging them would mix two taxonomies. "
            f"Re-run category_pipeline for them (a backfill of those partitions: sam3_labels relabels what the "
            f"change affects, curated_coco rewrites the files), then coco_dataset.")
