"""Label quality on a synthetic reviewed set whose true thresholds are known, and the cost of a threshold change.

1. ``demo.reviewed_set`` writes a category whose candidates are true (an object the review holds) or false by
   construction, per class around a true threshold tau. The ``label_quality`` logic (``core.quality``) runs on
   the audit frames; the suggested thresholds are compared with tau.
2. The thresholds are changed in ``sam-queries.yaml`` and ``curated_coco`` is materialised through Dagster for
   the category, timed, with transformers' ``Sam3Model.from_pretrained`` wrapped to count loads (baseline:
   before candidates, a threshold change meant labelling the category again).
3. Storage: the ``sam3_labels`` table at the floor (every candidate) against the table holding only what passes
   today's thresholds (what the labeller kept before), in bytes per image, parquet as written by the pipeline.
4. Prompt trials: three phrasings of one class over the same reviewed frames whose candidates separate true
   from false objects more or less well (the overlap of their score ranges, known), ranked by
   ``core.quality.prompts`` as ``label_quality`` ranks them; how often the order is the true one, over seeds.

Last line: ``quality: N reviewed frames, K classes; suggested thresholds recover the true ones within E;
re-curate after a threshold change A s, 0 model loads``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TRUE = {1: 0.3, 3: 0.45, 5: 0.6, 8: 0.75}  # demo spec ids: person, car, bicycle, cat
CATEGORY = "synthetic"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=400)
    parser.add_argument("--trial-seeds", type=int, default=5, help="reviewed sets the prompt ranking is tried on")
    args = parser.parse_args()

    import pandas as pd
    from dagster import DagsterInstance, materialize
    from transformers import Sam3Model

    from samantics_dagster.core.dataset.schema import TableName
    from samantics_dagster.core.dataset.tables import read_table, write_table
    from samantics_dagster.core.label.candidates import shown_table
    from samantics_dagster.core.label.queries import set_thresholds
    from samantics_dagster.core.label.taxonomy import dataset_selection
    from samantics_dagster.core.quality.report import QualitySettings, quality_report, reviewed_frames
    from samantics_dagster.demo.reviewed_set import write_reviewed_set
    from samantics_dagster.demo.spec import write_demo_spec

    loads = 0
    original = Sam3Model.from_pretrained.__func__  # type: ignore[attr-defined]

    def counted(cls, *a, **kw):
        nonlocal loads
        loads += 1
        return original(cls, *a, **kw)

    Sam3Model.from_pretrained = classmethod(counted)  # type: ignore[method-assign,assignment]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "dataset"
        write_demo_spec(root)
        made = write_reviewed_set(root, CATEGORY, TRUE, args.frames, seed=args.seed)
        layout_tables = {t: {CATEGORY: read_table(root / "tables" / t / f"{CATEGORY}.parquet")}
                         for t in (TableName.SAM3_LABELS, TableName.REVIEWED_LABELS, TableName.REVIEW_TASKS)}
        from samantics_dagster.core.dataset.layout import DatasetLayout
        from samantics_dagster.core.dataset.spec import load_spec

        layout = DatasetLayout(root)
        spec = load_spec(layout.spec)
        selection = dataset_selection(layout, spec)
        t0 = time.perf_counter()
        frames = reviewed_frames(layout_tables[TableName.SAM3_LABELS], layout_tables[TableName.REVIEWED_LABELS],  # type: ignore[arg-type]
                                 layout_tables[TableName.REVIEW_TASKS], selection)  # type: ignore[arg-type]
        report = quality_report(frames, selection, {c.id: c.name for c in spec.categories},
                                QualitySettings(resamples=args.resamples, seed=args.seed))
        quality_s = time.perf_counter() - t0
        print(f"synthetic reviewed set: {made.frames} frames ({made.audit_frames} audit), {made.candidates} candidates, "
              f"{made.reviewed_instances} reviewed instances; label_quality logic {quality_s:.2f} s")
        print(f"{'class':<10} {'true':>5} {'suggested':>9} {'95% CI':>14} {'error':>6} {'reviewed':>8} "
              f"{'F1 at suggested':>15} {'F1 at 0.5':>9}")
        errors = []
        suggested = {}
        for c in report.classes:
            tau = TRUE[c.category_id]
            s = c.suggested
            assert s is not None, c.why_none
            ci = c.curves["audit"].intervals["threshold"]
            errors.append(abs(s - tau))
            suggested[c.name] = s
            print(f"{c.name:<10} {tau:>5.2f} {s:>9.2f} {f'[{ci.low:.2f}, {ci.high:.2f}]':>14} {abs(s - tau):>6.3f} "
                  f"{c.curves['audit'].reviewed:>8} {c.curves['audit'].at(s)['f1']:>15.3f} "
                  f"{c.curves['audit'].at(0.5)['f1']:>9.3f}")
        worst = max(errors)

        # storage: candidates at the floor against what passes today's thresholds
        labels = read_table(layout.table(TableName.SAM3_LABELS, CATEGORY))
        assert labels is not None
        today = Path(tmp) / "today.parquet"
        write_table(shown_table(labels, selection), today)
        floor_bytes = layout.table(TableName.SAM3_LABELS, CATEGORY).stat().st_size
        today_bytes = today.stat().st_size
        n = len(labels)
        print(f"storage: sam3_labels at the floor {floor_bytes / n:.0f} B/image, today's thresholds only "
              f"{today_bytes / n:.0f} B/image ({floor_bytes / today_bytes:.2f}x); "
              f"{labels.n_instances.sum() / n:.1f} candidates/image against "
              f"{pd.Series([len(json.loads(t)) for t in shown_table(labels, selection).instances]).mean():.1f} kept")

        trials_right, trials_s, trial_f1 = _prompt_trials(Path(tmp), args)
        print(f"prompt trials ({args.frames} reviewed frames, car at tau {TRUE[3]}): " + ", ".join(
            f"{p!r} overlap {o} mean F1 {sum(trial_f1[p]) / len(trial_f1[p]):.3f}" for p, o in PHRASINGS.items())
            + f"; ranked in the true order in {trials_right}/{args.trial_seeds} seeds; ranking {trials_s:.2f} s per set")

        # a threshold change: apply the suggestions, re-curate through Dagster, count model loads
        layout.queries.write_text(set_thresholds(layout.queries.read_text(), spec, suggested))
        os.environ["DATASET_DIR"] = str(root)
        os.environ["GRABBY_WORKDIR"] = str(Path(tmp) / "grabby")
        os.environ["MODEL_CACHE"] = str(Path(tmp) / "no-model")
        (Path(tmp) / "home").mkdir()
        from samantics_dagster.definitions import defs

        assets = list(defs.assets)
        with DagsterInstance.ephemeral(tempdir=str(Path(tmp) / "home")) as instance:
            instance.add_dynamic_partitions("category", [CATEGORY])
            t0 = time.perf_counter()
            result = materialize(assets, selection=["curated_coco"], instance=instance, partition_key=CATEGORY,
                                 resources=defs.resources, raise_on_error=True)
            recurate_s = time.perf_counter() - t0
        assert result.success
        curated = read_table(layout.table(TableName.CURATED_COCO, CATEGORY))
        assert curated is not None
        print(f"re-curate ({n} frames, {int(curated.n_annotations.sum())} annotations) through Dagster: "
              f"{recurate_s:.2f} s, {loads} model loads (before candidates: relabel the category on the GPU)")
    print(f"quality: {made.frames} reviewed frames, {len(report.classes)} classes; suggested thresholds recover the "
          f"true ones within {worst:.3f}; re-curate after a threshold change {recurate_s:.2f} s, {loads} model loads")


PHRASINGS = {"automobile": 0.02, "car": 0.05, "vehicle": 0.25}  # phrasing -> overlap of true and false scores


def _prompt_trials(tmp: Path, args: argparse.Namespace) -> tuple[int, float, dict[str, list[float]]]:
    """Each phrasing's candidates are a reviewed set written with the same seed (the same objects and reviews:
    only the scores' overlap differs), moved into a ``prompt_trials`` table; ranked per seed."""
    from samantics_dagster.core.dataset.layout import DatasetLayout
    from samantics_dagster.core.dataset.schema import PROMPT_TRIALS, TableName
    from samantics_dagster.core.dataset.tables import read_table
    from samantics_dagster.core.label.taxonomy import dataset_selection
    from samantics_dagster.core.label.trials import TrialPrompt
    from samantics_dagster.core.quality.prompts import rank_prompts
    from samantics_dagster.core.quality.report import QualitySettings
    from samantics_dagster.demo.reviewed_set import write_reviewed_set
    from samantics_dagster.demo.spec import write_demo_spec

    right, seconds = 0, 0.0
    f1: dict[str, list[float]] = {p: [] for p in PHRASINGS}
    prompts = [TrialPrompt(3, "car", p, p == "car") for p in PHRASINGS]
    for seed in range(args.trial_seeds):
        rows, reviewed = [], None
        for prompt, overlap in PHRASINGS.items():
            root = tmp / f"trials-{seed}-{prompt}"
            write_demo_spec(root)
            write_reviewed_set(root, CATEGORY, {3: TRUE[3]}, args.frames, seed=100 + seed, overlap=overlap)
            layout = DatasetLayout(root)
            labels = read_table(layout.table(TableName.SAM3_LABELS, CATEGORY))
            review = read_table(layout.table(TableName.REVIEWED_LABELS, CATEGORY))
            assert labels is not None and review is not None
            assert reviewed is None or review.equals(reviewed[0]), "the phrasings must share the reviewed objects"
            reviewed = (review, read_table(layout.table(TableName.REVIEW_TASKS, CATEGORY)), dataset_selection(layout))
            rows += [{**r, "category_id": 3, "prompt": prompt} for r in labels.to_dict("records")]
        assert reviewed is not None
        review, tasks, selection = reviewed
        t0 = time.perf_counter()
        ranked = rank_prompts({CATEGORY: PROMPT_TRIALS.frame(rows)}, {}, {CATEGORY: review}, {CATEGORY: tasks},
                              prompts, selection, QualitySettings(resamples=args.resamples, seed=seed))
        seconds += time.perf_counter() - t0
        right += [r["prompt"] for r in ranked] == list(PHRASINGS)
        for r in ranked:
            f1[r["prompt"]].append(r["f1"])
    return right, seconds / max(args.trial_seeds, 1), f1


if __name__ == "__main__":
    main()
