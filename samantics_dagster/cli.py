"""``samantics``: the demo, the sample builder, and the status questions the old scripts answered."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class CliError(Exception):
    """A one-line message that says what to do; exits non-zero."""


def _dataset_dir(args: argparse.Namespace) -> Path:
    value = getattr(args, "dataset_dir", None) or os.environ.get("DATASET_DIR")
    if not value:
        raise CliError("no dataset: pass --dataset-dir or set DATASET_DIR")
    return Path(value)


def cmd_make_sample(args: argparse.Namespace) -> int:
    from samantics_dagster.core.sample import build_sample_workdir

    workdir = Path(args.workdir)
    if workdir.exists() and any(workdir.iterdir()):
        raise CliError(f"{workdir} is not empty; choose a new folder (the sample builder never mixes into a real workdir)")
    truth = build_sample_workdir(workdir, seed=args.seed)
    truth_path = Path(args.truth) if args.truth else workdir.parent / f"{workdir.name}-truth.json"
    truth.to_json(truth_path)
    print(f"sample workdir: {workdir} ({len(truth.scene_of)} good frames, {len(set(truth.scene_of.values()))} scenes, "
          f"{len(truth.bad_files)} bad files); truth: {truth_path}")
    return 0


def materialize_all(categories: list[str], show_progress: bool = True) -> None:
    """Add every category as a partition and materialise all assets for it, on the instance in $DAGSTER_HOME."""
    from dagster import DagsterInstance, materialize
    from tqdm import tqdm

    from samantics_dagster.definitions import defs
    from samantics_dagster.partitions import category_partitions

    instance = DagsterInstance.get()
    existing = set(instance.get_dynamic_partitions(category_partitions.name))
    new = [c for c in categories if c not in existing]
    if new:
        instance.add_dynamic_partitions(category_partitions.name, new)
    assets = list(defs.assets or []) + list(defs.asset_checks or [])
    for category in tqdm(categories, desc="materialising", unit="category", disable=not show_progress):
        # The console gets warnings only; every log line is in the run's page in the UI.
        result = materialize(assets, instance=instance, partition_key=category, resources=defs.resources,
                             raise_on_error=False, tags={"samantics/source": "demo"},
                             run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
        if not result.success:
            raise CliError(f"the run for category {category!r} failed; open the Dagster UI (runs tab) for its log")


def cmd_demo(args: argparse.Namespace) -> int:
    from samantics_dagster.core.catalog import list_categories

    root = Path(args.dir).resolve()
    workdir, dataset, home = root / "grabby", root / "dataset", root / "dagster_home"
    if not workdir.exists():
        ns = argparse.Namespace(workdir=str(workdir), truth=str(root / "sample-truth.json"), seed=0)
        cmd_make_sample(ns)
    dataset.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    os.environ.update(DATASET_DIR=str(dataset), GRABBY_WORKDIR=str(workdir), DAGSTER_HOME=str(home))
    from samantics_dagster.core.demo_spec import write_demo_spec

    write_demo_spec(dataset)
    if not os.environ.get("MODEL_CACHE"):
        from samantics_dagster.core.tiny_sam3 import save_tiny_sam3

        tiny = root / "models" / "tiny-sam3"
        if not (tiny / "config.json").exists():
            save_tiny_sam3(tiny)
        os.environ["MODEL_CACHE"] = str(tiny)
        print(f"MODEL_CACHE is not set: labelling with a tiny RANDOM SAM3 at {tiny} (its labels are noise; "
              "point MODEL_CACHE at facebook/sam3 weights for real ones)")
    categories = list_categories(workdir)
    print(f"demo: {len(categories)} categories {categories}; dataset {dataset}; instance {home}")
    materialize_all(categories)
    from samantics_dagster.core.tables import read_all

    for category, table in read_all(dataset, "deduped_images").items():
        counts = table["status"].value_counts().to_dict()
        labels = read_all(dataset, "sam3_labels").get(category)
        labelled = int((labels["status"] == "done").sum()) if labels is not None else 0
        print(f"  {category}: {counts.get('accepted', 0)} accepted, {counts.get('rejected', 0)} rejected, {labelled} labelled")
    if args.no_serve:
        return 0
    print(f"serving the Dagster UI on http://{args.host}:{args.port} (Ctrl-C to stop)")
    dagster = Path(sys.executable).parent / "dagster"
    os.chdir(root)  # not the repo root: its dagster.yaml would shadow $DAGSTER_HOME's with a warning
    os.execv(str(dagster), [str(dagster), "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", args.host, "-p", str(args.port)])
    return 0  # not reached


def cmd_add_partitions(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from samantics_dagster.core.catalog import list_categories
    from samantics_dagster.partitions import category_partitions

    workdir = Path(args.workdir or os.environ.get("GRABBY_WORKDIR") or "")
    if not workdir.is_dir():
        raise CliError(f"GRABBY_WORKDIR {str(workdir) or '(unset)'} is not a folder: pass --workdir or set GRABBY_WORKDIR")
    if not os.environ.get("DAGSTER_HOME"):
        raise CliError("DAGSTER_HOME is not set: point it at your Dagster instance folder")
    with DagsterInstance.get() as instance:
        existing = set(instance.get_dynamic_partitions(category_partitions.name))
        new = [c for c in list_categories(workdir) if c not in existing]
        if new:
            instance.add_dynamic_partitions(category_partitions.name, new)
    print(f"added {len(new)} categories: {', '.join(new) or '-'} ({len(existing)} were there)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from samantics_dagster.core.status import status_table

    print(status_table(_dataset_dir(args)).to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samantics", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-sample", help="build a sample grabby workdir from scikit-image's photos")
    p.add_argument("workdir")
    p.add_argument("--truth", help="where to write which frames show the same scene (default: beside the workdir)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_make_sample)

    p = sub.add_parser("demo", help="build a sample, run the pipeline on every category, serve the Dagster UI")
    p.add_argument("--dir", default="demo", help="where the demo's workdir, dataset and instance go (default ./demo)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--no-serve", action="store_true", help="stop after materialising (no UI)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("add-partitions", help="add every category folder of the workdir as a `category` partition")
    p.add_argument("--workdir", help="overrides GRABBY_WORKDIR")
    p.set_defaults(func=cmd_add_partitions)

    p = sub.add_parser("status", help="per category and stage: frames accepted, rejected, pending")
    p.add_argument("--dataset-dir", help="overrides DATASET_DIR")
    p.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"samantics: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
