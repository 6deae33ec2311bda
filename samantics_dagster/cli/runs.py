"""``samantics release-dead-runs``: fail the runs whose worker died and free their pool slots, by hand.

The daemon's ``run_health_sensor`` and every run's start already do this; this command is for an instance
with no daemon and no run starting (``dagster asset materialize`` killed, then a look at why the next one
waits), and what a blocked run's log names. Dead means the run's lease is free or its local worker pid is
gone (``core.health.liveness``); a live run is never touched.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_release_dead_runs(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from samantics_dagster.cli.errors import dataset_dir_of
    from samantics_dagster.defs.health.dead_runs import fail_dead_run, find_dead_runs, slot_holders, sweep_leases

    dataset = dataset_dir_of(args)
    with DagsterInstance.get() as instance:
        dead = find_dead_runs(instance, Path(dataset), grace_s=args.grace)
        if not dead:
            held = slot_holders(instance)
            print("no dead run: every STARTED run's worker is alive"
                  + (f"; pool slots held by {', '.join(sorted(held))}" if held else "; no pool slot is held"))
            return 0
        for run in dead:
            pools = ", ".join(run.pools) or "no pool slot"
            if args.dry_run:
                print(f"dead: run {run.run_id} ({run.job_name}, {run.partition or '-'}) holds {pools}: {run.reason}")
            elif fail_dead_run(instance, run, Path(dataset), "samantics release-dead-runs"):
                print(f"failed run {run.run_id} ({run.job_name}, {run.partition or '-'}) and freed {pools}: {run.reason}")
        if not args.dry_run:
            sweep_leases(instance, Path(dataset))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("release-dead-runs", help="fail runs whose worker died (kill -9, OOM) and free their pool slots")
    p.add_argument("--dataset-dir", help="overrides DATASET_DIR (where the runs' leases are)")
    p.add_argument("--dry-run", action="store_true", help="list the dead runs, change nothing")
    p.add_argument("--grace", type=float, default=0.0, help="skip runs with an event in the last N seconds (default 0)")
    p.set_defaults(func=cmd_release_dead_runs)
