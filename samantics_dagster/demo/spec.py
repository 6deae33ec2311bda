"""The demo dataset's taxonomy and query overrides (a real dataset brings its own)."""

from __future__ import annotations

import json
from pathlib import Path

from samantics_dagster.core.dataset.layout import DatasetLayout

DEMO_SPEC = {
    "info": {"description": "samantics demo dataset", "version": "1.0"},
    "licenses": [{"id": 1, "name": "scikit-image sample data", "url": "https://scikit-image.org/"}],
    "categories": [  # ids have gaps on purpose: trainers must cope, and COCO's own do too
        {"id": 1, "name": "person", "supercategory": "person",
         "keypoints": ["nose", "left_eye", "right_eye"], "skeleton": [[1, 2], [1, 3]]},
        {"id": 2, "name": "passenger", "supercategory": "person"},
        {"id": 3, "name": "car", "supercategory": "vehicle"},
        {"id": 5, "name": "bicycle", "supercategory": "vehicle"},
        {"id": 8, "name": "cat", "supercategory": "animal"},
        {"id": 12, "name": "cup", "supercategory": "kitchen"},
    ],
}

DEMO_QUERIES = """\
# SAM3 text queries: supercategory -> category -> text. Unlisted categories use their name.
vehicle:
  car: "car"
  bicycle: "bicycle"
kitchen:
  _all: "coffee cup"
"""


def write_demo_spec(dataset_dir: Path) -> None:
    """Write coco-spec.json and sam-queries.yaml unless the dataset already has them."""
    dataset_dir.mkdir(parents=True, exist_ok=True)
    layout = DatasetLayout(dataset_dir)
    spec = layout.spec
    if not spec.exists():
        spec.write_text(json.dumps(DEMO_SPEC, indent=2))
    queries = layout.queries
    if not queries.exists():
        queries.write_text(DEMO_QUERIES)
