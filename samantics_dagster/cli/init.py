"""``samantics init DATASET_DIR``: a starter ``coco-spec.json`` and ``sam-queries.yaml`` for a new dataset.

A category run stops in its first step without a taxonomy (and the workdir sensor requests no run), so a
new dataset needs both files before anything else; writing them by hand from the README is where new users
went wrong. The starter is a small, valid taxonomy in the documented format, checked with the same parser
the pipeline uses before it is written. ``init`` never overwrites: these files are hand-edited, and a
changed taxonomy relabels and re-curates the dataset.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from samantics_dagster.cli.errors import CliError

STARTER_SPEC = {
    "info": {"description": "my dataset: edit coco-spec.json to your classes", "version": "1.0"},
    "licenses": [],
    "categories": [  # ids are yours to choose (gaps are fine); they are what the exported COCO files carry
        {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 2, "name": "passenger", "supercategory": "person"},
        {"id": 3, "name": "car", "supercategory": "vehicle"},
        {"id": 4, "name": "truck", "supercategory": "vehicle"},
        {"id": 5, "name": "bicycle", "supercategory": "vehicle"},
    ],
}

STARTER_QUERIES = """\
# SAM3 text queries for the categories of coco-spec.json (a starter from `samantics init`: edit both files).
# Top level: a supercategory of coco-spec.json. Under it: a category name and the text SAM3 is prompted
# with; `_all` is the text for every category of that supercategory without its own entry. A category
# listed nowhere is prompted with its own name. `passenger` gets no query: sam3_labels derives it (a person
# inside a car) when coco-spec.json has person, car and passenger. An entry may be a mapping with its score
# threshold (applied when curating) and other phrasings to try on the reviewed frames (the prompt_trials_job;
# `samantics prompts` ranks them), e.g. `car: {query: "car", threshold: 0.45, alternatives: ["automobile"]}`.
vehicle:
  truck: "pickup truck"
  bicycle: "bicycle"
"""


def write_starter(dataset_dir: Path) -> list[Path]:
    """Write both files into ``dataset_dir`` (made if missing); refuse, writing nothing, if either exists."""
    from samantics_dagster.core.dataset.atomic import write_text_atomic
    from samantics_dagster.core.dataset.layout import DatasetLayout

    layout = DatasetLayout(dataset_dir)
    present = [p for p in (layout.spec, layout.queries) if p.exists()]
    if present:
        raise CliError(f"{' and '.join(str(p) for p in present)} already {'exist' if len(present) > 1 else 'exists'}; "
                       "samantics init never overwrites a taxonomy: edit it, or move it away and run init again")
    if dataset_dir.exists() and not dataset_dir.is_dir():
        raise CliError(f"{dataset_dir} is a file: pass the dataset folder (DATASET_DIR)")
    _check_starter()
    dataset_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(layout.spec, json.dumps(STARTER_SPEC, indent=2) + "\n")  # indented: it is edited by hand
    write_text_atomic(layout.queries, STARTER_QUERIES)
    return [layout.spec, layout.queries]


def _check_starter() -> None:
    """The starter through the pipeline's own parser (a broken starter would fail the user's first run)."""
    from samantics_dagster.core.dataset.layout import DatasetLayout
    from samantics_dagster.core.label.pipeline import PASSENGER
    from samantics_dagster.core.label.taxonomy import load_taxonomy

    with tempfile.TemporaryDirectory() as tmp:
        layout = DatasetLayout(Path(tmp))
        layout.spec.write_text(json.dumps(STARTER_SPEC), encoding="utf-8")
        layout.queries.write_text(STARTER_QUERIES, encoding="utf-8")
        load_taxonomy(layout, (PASSENGER,))


def cmd_init(args: argparse.Namespace) -> int:
    dataset_dir = Path(args.dataset_dir)
    for path in write_starter(dataset_dir):
        print(f"wrote {path}")
    print("next: edit coco-spec.json (your classes) and sam-queries.yaml (what SAM3 is asked); the pipeline "
          f"reads them from DATASET_DIR={dataset_dir.resolve()} (README: Using it on your data)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("init", help="write a starter coco-spec.json and sam-queries.yaml into a dataset folder "
                                    "(never overwrites)")
    p.add_argument("dataset_dir", metavar="DATASET_DIR", help="the dataset folder (made if missing)")
    p.set_defaults(func=cmd_init)
