"""``samantics``: the demo, the sample builder, and the status questions the old scripts answered."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC
from pathlib import Path

from samantics_dagster.cli.errors import CliError, dataset_dir_of, report_problems
from samantics_dagster.core.dataset.layout import DatasetLayout


def cmd_make_sample(args: argparse.Namespace) -> int:
    from samantics_dagster.demo.sample import build_sample_workdir

    workdir = Path(args.workdir)
    if workdir.exists() and any(workdir.iterdir()):
        raise CliError(f"{workdir} is not empty; choose a new folder (the sample builder never mixes into a real workdir)")
    truth = build_sample_workdir(workdir, seed=args.seed, low_texture=getattr(args, "low_texture", 0))
    truth_path = Path(args.truth) if args.truth else workdir.parent / f"{workdir.name}-truth.json"
    truth.to_json(truth_path)
    print(f"sample workdir: {workdir} ({len(truth.scene_of)} good frames, {len(set(truth.scene_of.values()))} scenes, "
          f"{len(truth.bad_files)} bad files); truth: {truth_path}")
    return 0


def add_category_partitions(instance, categories) -> tuple[list[str], int]:
    """Add the categories the instance lacks as `category` partitions; (added, how many were there)."""
    from samantics_dagster.defs.partitions import category_partitions

    existing = set(instance.get_dynamic_partitions(category_partitions.name))
    new = sorted(set(categories) - existing)
    if new:
        instance.add_dynamic_partitions(category_partitions.name, new)
    return new, len(existing)


def materialize_all(categories: list[str], show_progress: bool = True) -> None:
    """Add every category as a partition, run the per-category job for each, then the merged export,
    on the instance in $DAGSTER_HOME: the same jobs a sensor or a backfill launches."""
    from dagster import DagsterInstance
    from tqdm import tqdm

    from samantics_dagster.definitions import defs

    instance = DagsterInstance.get()
    add_category_partitions(instance, categories)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # every line is in the UI's run page
    tags = {"samantics/source": "demo"}
    job = defs.resolve_job_def("category_pipeline")
    for category in tqdm(categories, desc="materialising", unit="category", disable=not show_progress):
        result = job.execute_in_process(instance=instance, partition_key=category, run_config=quiet,
                                        tags=tags, raise_on_error=False)
        if not result.success:
            raise CliError(f"the run for category {category!r} failed; open the Dagster UI (runs tab) for its log")
    result = defs.resolve_job_def("coco_export").execute_in_process(instance=instance, run_config=quiet, tags=tags,
                                                                 raise_on_error=False)
    if not result.success:
        raise CliError("the coco_export run failed; open the Dagster UI (runs tab) for its log")


def cmd_demo(args: argparse.Namespace) -> int:
    from samantics_dagster.core.workdir.catalog import list_categories

    root = Path(args.dir).resolve()
    workdir, dataset, home = root / "grabby", root / "dataset", root / "dagster_home"
    if not workdir.exists():
        ns = argparse.Namespace(workdir=str(workdir), truth=str(root / "sample-truth.json"), seed=0)
        cmd_make_sample(ns)
    dataset.mkdir(parents=True, exist_ok=True)
    from samantics_dagster.demo.config import write_demo_instance

    workspace = write_demo_instance(home, root)  # package data: an installed copy runs the demo too
    os.environ.update(DATASET_DIR=str(dataset), GRABBY_WORKDIR=str(workdir), DAGSTER_HOME=str(home))
    from samantics_dagster.demo.spec import write_demo_spec

    write_demo_spec(dataset)
    if not os.environ.get("MODEL_CACHE"):
        from samantics_dagster.demo.tiny_sam3 import save_tiny_sam3

        tiny = root / "models" / "tiny-sam3"
        if not (tiny / "config.json").exists():
            save_tiny_sam3(tiny)
        os.environ["MODEL_CACHE"] = str(tiny)
        print(f"MODEL_CACHE is not set: labelling with a tiny RANDOM SAM3 at {tiny} (its labels are noise; "
              "point MODEL_CACHE at facebook/sam3 weights for real ones)")
    categories = list_categories(workdir)
    print(f"demo: {len(categories)} categories {categories}; dataset {dataset}; instance {home}")
    materialize_all(categories)
    from samantics_dagster.core.tools.status import status_table

    for row in status_table(dataset).itertuples():
        print(f"  {row.category}: {row.accepted} accepted, {row.frames - row.accepted} rejected, {row.labelled} labelled, "
              f"{row.included} in the COCO export")
    layout = DatasetLayout(dataset)
    print(f"COCO: {layout.coco_merged('train')}, {layout.coco_merged('val')}")
    if args.no_serve:
        return 0
    print(f"serving the Dagster UI on http://{args.host}:{args.port} (Ctrl-C to stop)")
    dg = Path(sys.executable).parent / "dg"
    os.chdir(root)  # not a checkout's root: its dagster.yaml would shadow $DAGSTER_HOME's with a warning
    # `dg dev -w` serves the workspace file as given (no dg project lookup), from any folder and any install.
    os.execv(str(dg), [str(dg), "dev", "-w", str(workspace), "-h", args.host, "-p", str(args.port)])
    return 0  # not reached


def cmd_add_partitions(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from samantics_dagster.core.workdir.catalog import list_category_folders

    workdir = Path(args.workdir or os.environ.get("GRABBY_WORKDIR") or "")
    if not workdir.is_dir():
        raise CliError(f"GRABBY_WORKDIR {str(workdir) or '(unset)'} is not a folder: pass --workdir or set GRABBY_WORKDIR")
    if not os.environ.get("DAGSTER_HOME"):
        raise CliError("DAGSTER_HOME is not set: point it at your Dagster instance folder")
    categories, refused = list_category_folders(workdir)  # the sensor's rule: what it refuses, this refuses
    with DagsterInstance.get() as instance:
        new, existing = add_category_partitions(instance, categories)
    print(f"added {len(new)} categories: {', '.join(new) or '-'} ({existing} were there)")
    for reason in refused.values():
        print(f"samantics: refused {reason}", file=sys.stderr)
    return 1 if refused else 0


def _show(df, empty: str) -> None:
    print(df.to_string(index=False) if len(df) else empty)


def cmd_status(args: argparse.Namespace) -> int:
    from samantics_dagster.core.tools import status

    dataset = dataset_dir_of(args)
    if not DatasetLayout(dataset).tables.is_dir():
        raise CliError(f"{dataset} has no tables/ yet: materialise the assets first (`samantics demo` or the Dagster UI)")
    if args.failed:
        _show(status.failed_labels(dataset), "no failed labelling")
    elif args.videos:
        _show(status.top_videos(dataset, args.limit), "no videos yet")
    else:
        table = status.status_table(dataset)
        runs = _last_runs()
        if runs and len(table):
            table["last_run"] = [runs.get(c, ("-", ""))[0] for c in table["category"]]
            table["last_run_at"] = [runs.get(c, ("-", "-"))[1] for c in table["category"]]
        _show(table, "no categories yet")
        for category, counts in status.mixed_precision(dataset).items():
            print(f"mixed precision: {category}: " + ", ".join(f"{n} at {p}" for p, n in counts.items())
                  + " (run sam3_labels with `relabel: other_precision` to label the others again at the run's)")
    return 0


def _last_runs() -> dict[str, tuple[str, str]]:
    """Category -> (status, UTC time) of its latest category_pipeline run, from the instance in
    DAGSTER_HOME (empty without one): what the old pipeline.db's status column answered."""
    if not os.environ.get("DAGSTER_HOME") or not (Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml").exists():
        return {}

    from dagster import DagsterInstance, RunsFilter

    out: dict[str, tuple[str, str]] = {}
    with DagsterInstance.get() as instance:
        for record in instance.get_run_records(RunsFilter(job_name="category_pipeline"), limit=5000):
            category = record.dagster_run.tags.get("dagster/partition")
            if category and category not in out:  # records come newest first
                when = record.create_timestamp.astimezone(UTC)
                out[category] = (record.dagster_run.status.value.lower(), when.strftime("%Y-%m-%dT%H:%MZ"))
    return out


def _spec(path: str | None, required: bool):
    from samantics_dagster.core.dataset.spec import SpecError, load_spec

    candidate = Path(path) if path else (DatasetLayout(os.environ["DATASET_DIR"]).spec if os.environ.get("DATASET_DIR") else None)
    if candidate is None or not candidate.is_file():
        if required or path:
            raise CliError(f"no spec at {candidate or '(none given)'}: pass --spec coco-spec.json (or set DATASET_DIR)")
        return None
    try:
        return load_spec(candidate)
    except SpecError as exc:
        raise CliError(str(exc)) from None


def _dataset_labels_jsonl(args: argparse.Namespace) -> Path:
    """The dataset's labels.jsonl, with a warning when it lags behind the labels (it waits for the full
    export above SAMANTICS_SINGLE_FILES_MAX_IMAGES images: core.export.shards)."""
    from samantics_dagster.core.label.jsonl_segments import labels_jsonl_current

    layout = DatasetLayout(dataset_dir_of(args))
    if layout.labels_jsonl.is_file() and layout.labels_jsonl_key.is_file() and not labels_jsonl_current(layout):
        print(f"warning: {layout.labels_jsonl} lags behind the sam3_labels tables (it waits for the full export: "
              "the nightly_export schedule, or materialise labels_jsonl with config single_files: always)",
              file=sys.stderr)
    return layout.labels_jsonl


def cmd_stats(args: argparse.Namespace) -> int:
    from samantics_dagster.core.tools import records

    files = [Path(f) for f in args.files] or [_dataset_labels_jsonl(args)]
    spec = _spec(args.spec, required=False)
    try:
        by_split = {f.stem if len(files) > 1 else "all": records.read_jsonl(f) for f in files}
        summary, classes = records.stats(by_split, spec, keep_empty=args.keep_empty, keep_only_person=args.keep_only_person)
    except records.RecordError as exc:
        raise CliError(str(exc)) from None
    _show(summary, "no records")
    print()
    _show(classes, "no instances")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from samantics_dagster.core.curate.split import assign_splits, parse_ratios, split_shares
    from samantics_dagster.core.dataset.tables import write_jsonl
    from samantics_dagster.core.tools import records

    test = None
    if args.test_out:
        if args.test_pct is None and args.val is None:
            raise CliError("a test split needs --val (test gets the rest) or --test")
        test = args.test_pct if args.test_pct is not None else 100.0 - args.train - args.val
    elif args.test_pct:
        raise CliError("--test needs a test_out file after val_out")
    try:
        ratios = parse_ratios(args.train, args.val, test)
        recs = records.read_jsonl(Path(args.input))
    except (ValueError, records.RecordError) as exc:
        raise CliError(str(exc)) from None
    keys = [f"{n}:{records.key(r)}" for n, r in enumerate(recs)]
    groups = [records.video(r) for r in recs]
    labels = [str(min(r["category_ids"])) if r.get("category_ids") else None for r in recs]
    assignment = assign_splits(keys, groups, labels, ratios, seed=args.seed)
    outputs = {"train": args.train_out, "val": args.val_out, "test": args.test_out}
    for split, out in outputs.items():
        if out:
            chosen = [r for k, r in zip(keys, recs) if assignment[k] == split]
            write_jsonl(chosen, Path(out))
            n = len(chosen)
            print(f"{split}: {n} records -> {out}")
    shares = split_shares(assignment)
    print("frame shares: " + ", ".join(f"{s} {v:.1%}" for s, v in shares.items()) +
          f" (grouped by video: {len(set(groups) - {None})} videos never split)")
    return 0


def cmd_to_coco(args: argparse.Namespace) -> int:
    from samantics_dagster.core.dataset.atomic import write_json_atomic
    from samantics_dagster.core.export.coco import validate_coco
    from samantics_dagster.core.tools import records

    spec = _spec(args.spec, required=True)
    try:
        coco = records.to_coco(records.read_jsonl(Path(args.input)), spec, Path(args.image_root or Path(args.input).parent))
    except records.RecordError as exc:
        raise CliError(str(exc)) from None
    out = Path(args.output)
    write_json_atomic(coco, out)
    problems = validate_coco(out, None, spec)
    print(f"{out}: {len(coco['images'])} images, {len(coco['annotations'])} annotations, {len(coco['categories'])} categories")
    report_problems(problems, str(out))
    return 0


def cmd_import_legacy(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from samantics_dagster.core.tools.legacy import LegacyImportError, import_legacy

    dataset = dataset_dir_of(args)
    bars: list = []  # made on the first progress call, so a bad --data-root prints only its one line

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(desc="importing", unit="frame", total=total, disable=args.quiet))
        bars[0].total = total
        bars[0].n = done
        bars[0].refresh()

    try:
        report = import_legacy(Path(args.data_root), dataset, dry_run=args.dry_run, progress=progress)
    except LegacyImportError as exc:
        raise CliError(str(exc)) from None
    finally:
        for bar in bars:
            bar.close()
    _show(report.summary(), "nothing to import")
    problems = report.all_problems
    for problem in problems[:20]:
        print(f"  problem: {problem}", file=sys.stderr)
    if len(problems) > 20:
        print(f"  ... and {len(problems) - 20} more", file=sys.stderr)
    if args.dry_run:
        print("dry run: nothing was written")
    elif os.environ.get("DAGSTER_HOME"):
        # Categories only the old dataset had become partitions, so the UI and the sensor see them.
        from dagster import DagsterInstance

        from samantics_dagster.cli.legacy_events import record_imported_tables

        with DagsterInstance.get() as instance:
            new, _ = add_category_partitions(instance, report.categories)
            recorded = record_imported_tables(instance, report)  # else Dagster shows them never materialised
        print(f"added {len(new)} categories as partitions of {os.environ['DAGSTER_HOME']}; recorded "
              f"{len(recorded)} materialisations of the tables written")
    else:
        print("DAGSTER_HOME is not set: run `samantics add-partitions` against your instance to see these categories in Dagster")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samantics", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-sample", help="build a sample grabby workdir from scikit-image's photos")
    p.add_argument("workdir")
    p.add_argument("--truth", help="where to write which frames show the same scene (default: beside the workdir)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--low-texture", type=int, default=0, metavar="N",
                   help="add N scenes of each low-texture class (gradients, skies, fades, walls, blurred objects, "
                        "pans, vignetted muted walls, dark near-uniform pairs, textured views a small offset apart, long "
                        "takes), repeated across videos, categories and sources; the truth names each scene's class")
    p.set_defaults(func=cmd_make_sample)

    p = sub.add_parser("demo", help="build a sample, run the pipeline on every category, serve the Dagster UI")
    p.add_argument("--dir", default="demo", help="where the demo's workdir, dataset and instance go (default ./demo)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--no-serve", action="store_true", help="stop after materialising (no UI)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("add-partitions", help="add every category folder of the workdir as a `category` partition "
                       "(folders the sensor refuses are refused too, each with its reason; then the exit code is 1)")
    p.add_argument("--workdir", help="overrides GRABBY_WORKDIR")
    p.set_defaults(func=cmd_add_partitions)

    p = sub.add_parser("status", help="per category and stage: pending, accepted, rejected, done, failed, included, excluded")
    p.add_argument("--dataset-dir", help="overrides DATASET_DIR")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--failed", action="store_true", help="list failed labelling with its error")
    which.add_argument("--videos", action="store_true", help="the videos that gave the most accepted frames")
    p.add_argument("--limit", type=int, default=20, help="rows for --videos")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("stats", help="images and instances per class and split of labels.jsonl files (the old stats.py)")
    p.add_argument("files", nargs="*", help="jsonl files, one per split (default: $DATASET_DIR/labels.jsonl)")
    p.add_argument("--dataset-dir", help="overrides DATASET_DIR")
    p.add_argument("--spec", help="coco-spec.json for class names (default: the dataset's)")
    p.add_argument("--keep-empty", action="store_true", help="count images without detections")
    p.add_argument("--keep-only-person", action="store_true", help="count images whose only detections are people")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("split", help="split a labels.jsonl into train/val(/test) by video (the old split.py)")
    p.add_argument("input")
    p.add_argument("train_out")
    p.add_argument("val_out")
    p.add_argument("test_out", nargs="?")
    p.add_argument("--train", type=float, default=85.0, help="percent of frames for train (default 85)")
    p.add_argument("--val", type=float, help="percent for val (default: the rest, or what test leaves)")
    p.add_argument("--test", dest="test_pct", type=float, help="percent for test (needs test_out; default: the rest)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("to-coco", help="a COCO instances file from a labels.jsonl (the old to_coco.py)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--spec", help="coco-spec.json (default: $DATASET_DIR/coco-spec.json)")
    p.add_argument("--image-root", help="folder the records' `image` paths are relative to (default: the input's folder)")
    p.set_defaults(func=cmd_to_coco)

    p = sub.add_parser("import-legacy", help="bring an old samantics dataset into the tables and store, re-running nothing")
    p.add_argument("--data-root", required=True, help="the old dataset (pipeline.db + images/ + labels.jsonl, or 01-selection/ ...)")
    p.add_argument("--dataset-dir", help="overrides DATASET_DIR")
    p.add_argument("--dry-run", action="store_true", help="report what would be imported; write nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_import_legacy)

    from samantics_dagster.cli.export import add_export_parser

    add_export_parser(sub)

    from samantics_dagster.cli.runs import add_parser as add_runs_parser

    add_runs_parser(sub)

    from samantics_dagster.cli.init import add_parser as add_init_parser

    add_init_parser(sub)
    from samantics_dagster.cli.thresholds import add_parser as add_thresholds_parser

    add_thresholds_parser(sub)
    from samantics_dagster.cli.prompts import add_parser as add_prompts_parser

    add_prompts_parser(sub)

    from samantics_dagster.cli.ml_backend import add_parser as add_ml_backend_parser

    add_ml_backend_parser(sub)
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
