"""``samantics prompts``: per class, the phrasings the prompt trials tried, ranked by F1 at their best threshold.

Reads the ``label_quality`` asset's report (``quality/label_quality.json``), whose ``prompts`` section ranks what
the ``prompt_trials`` job labelled on the reviewed frames. Picking a phrasing is a one-line edit of
``sam-queries.yaml`` (the class's ``query:``), which ``sam3_labels`` then labels with.
"""

from __future__ import annotations

import argparse

from samantics_dagster.cli.thresholds import interval_text, read_quality_report


def cmd_prompts(args: argparse.Namespace) -> int:
    layout, report = read_quality_report(args)
    rows: list[dict] = report.get("prompts") or []
    if not rows:
        print("no prompt trials ranked: list `alternatives:` for a class in sam-queries.yaml, run the "
              "prompt_trials_job for the reviewed categories, then label_quality")
        return 0
    source = report.get("settings", {}).get("suggest_from")
    print(f"prompt trials, ranked by F1 at each phrasing's best threshold on the reviewed frames ({source})")
    header = (f"{'class':<14} {'rank':>4}  {'phrasing':<28} {'F1':>5} {'F1 95% CI':<13} {'best':>5} "
              f"{'P':>5} {'R':>5} {'frames':>6} {'reviewed':>8}")
    print(header)
    print("-" * len(header))
    best: dict[str, dict] = {}
    current: dict[str, dict] = {}
    for r in rows:
        name = f"{r['prompt']}{' (query)' if r['current'] else ''}"
        if r["f1"] is None:
            print(f"{r['class']:<14} {'-':>4}  {name:<28} no {source} frames tried")
            continue
        print(f"{r['class']:<14} {r['rank']:>4}  {name:<28} {r['f1']:>5.2f} {interval_text(r['f1_interval']):<13} "
              f"{r['best_threshold']:>5.2f} {r['precision']:>5.2f} {r['recall']:>5.2f} {r['frames']:>6} {r['reviewed']:>8}")
        if r["rank"] == 1:
            best[r["class"]] = r
        if r["current"]:
            current[r["class"]] = r
    for name, top in sorted(best.items()):
        today = current.get(name)
        if top["current"] or today is None:
            continue
        print(f"{name}: {top['prompt']!r} beats the query {today['prompt']!r} (F1 {top['f1']:.2f} against "
              f"{today['f1']:.2f}); to use it, set `{name}: {{query: \"{top['prompt']}\", threshold: "
              f"{top['best_threshold']:.2f}}}` in {layout.queries} and label again")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("prompts", help="the prompt trials' phrasings per class, ranked by F1 at their best threshold")
    p.add_argument("--dataset-dir", help="overrides DATASET_DIR")
    p.set_defaults(func=cmd_prompts)
