"""``samantics thresholds``: each class's current threshold against the one the reviews suggest, with the evidence.

Reads the ``label_quality`` asset's report (``quality/label_quality.json``). ``--apply`` writes the suggested
thresholds into ``sam-queries.yaml`` (the old file is kept beside it as ``sam-queries.yaml.{time}.bak`` and the
diff printed); the ``thresholds_sensor`` then re-curates every category with them, no model needed.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import time

from samantics_dagster.cli.errors import CliError, dataset_dir_of
from samantics_dagster.core.dataset.layout import DatasetLayout


def read_quality_report(args: argparse.Namespace) -> tuple[DatasetLayout, dict]:
    """The dataset's layout and the ``label_quality`` report (``samantics thresholds`` and ``samantics prompts``
    read it); a dataset without one is a clear CLI error."""
    from samantics_dagster.core.quality.report import read_suggestions

    layout = DatasetLayout(dataset_dir_of(args))
    try:
        return layout, read_suggestions(layout.label_quality)
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from None


def interval_text(value: list[float] | None) -> str:
    """A 95% interval as ``[lo, hi]`` (``-`` where there is none)."""
    return f"[{value[0]:.2f}, {value[1]:.2f}]" if value else "-"


def _fmt(at: dict | None) -> str:
    if not at:
        return "-"
    return f"P {at['precision']:.2f} R {at['recall']:.2f} F1 {at['f1']:.2f}"


def cmd_thresholds(args: argparse.Namespace) -> int:
    from samantics_dagster.core.dataset.atomic import write_text_atomic
    from samantics_dagster.core.dataset.spec import SpecError, load_spec
    from samantics_dagster.core.label.queries import set_thresholds
    from samantics_dagster.core.label.taxonomy import dataset_selection

    layout, report = read_quality_report(args)
    classes: dict[str, dict] = report.get("classes", {})
    frames = report.get("frames", {})
    print(f"label_quality: {frames.get('all', 0)} reviewed frames ({frames.get('audit', 0)} audit, "
          f"{frames.get('triaged', 0)} triaged); suggestions from {report.get('settings', {}).get('suggest_from')} frames")
    header = f"{'class':<16} {'current':>7} {'suggest':>7}  {'threshold 95% CI':<16} {'reviewed':>8}  at current -> at suggested"
    print(header)
    print("-" * len(header))
    changes: dict[str, float] = {}
    for name, c in sorted(classes.items()):
        ci = c.get("intervals", {}).get("threshold")
        suggested = c.get("suggested")
        print(f"{name:<16} {c['current']:>7.2f} {('-' if suggested is None else f'{suggested:.2f}'):>7}  "
              f"{interval_text(ci):<16} {c.get('reviewed', 0):>8}  "
              f"{_fmt(c.get('at_current'))} -> {_fmt(c.get('at_suggested'))}"
              + (f"  ({c['why_none']})" if c.get("why_none") else ""))
        if suggested is not None and abs(float(suggested) - float(c["current"])) > 1e-9:
            changes[name] = float(suggested)
    if not args.apply:
        print(f"{len(changes)} thresholds would change; `samantics thresholds --apply` writes them to {layout.queries}")
        return 0
    if not changes:
        print("nothing to apply: every suggestion equals the current threshold (or there is none)")
        return 0
    try:
        spec = load_spec(layout.spec)
        old = layout.queries.read_text(encoding="utf-8") if layout.queries.exists() else ""
        new = set_thresholds(old, spec, changes)
        backup = layout.queries.with_name(f"{layout.queries.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
        if layout.queries.exists():
            shutil.copy2(layout.queries, backup)
        write_text_atomic(layout.queries, new)
        dataset_selection(layout, spec)  # the file as written must read back
    except SpecError as exc:
        raise CliError(str(exc)) from None
    print("".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), str(backup.name), layout.queries.name)))
    print(f"wrote {len(changes)} thresholds to {layout.queries} (old file: {backup.name}); thresholds_sensor "
          "re-curates the categories (or run the recurate job per category)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("thresholds", help="current against suggested threshold per class, from the reviews (label_quality)")
    p.add_argument("--dataset-dir", help="overrides DATASET_DIR")
    p.add_argument("--apply", action="store_true", help="write the suggestions into sam-queries.yaml (keeps the old file)")
    p.set_defaults(func=cmd_thresholds)
