"""Create the concurrency pools' rows once, before the daemon launches any run.

Dagster 1.13.27 on Postgres: the first time a pool is used, every run that reaches it inserts the pool's row
(at `concurrency.pools.default_limit`) inside one transaction and, on a unique-key clash, updates it in the same
transaction, which Postgres has already aborted. Two runs reaching `dedupe` or `gpu` at the same moment on a
fresh database: one of them fails (InFailedSqlTransaction; tests/deploy/test_stack.py hit it with a four-way
backfill). Initialising the rows here, one process, one pool at a time, leaves the runs nothing to race on.

Rows someone set by hand (`dagster instance concurrency set gpu 2`) are left alone; rows from the default are
brought to the current default. Pools: SAMANTICS_POOLS (space-separated), default "gpu dedupe", the pools the
code location's assets use (tests/deploy/test_static.py checks the two lists agree).
"""

import os
import sys

from dagster import DagsterInstance


def main() -> int:
    pools = (os.environ.get("SAMANTICS_POOLS") or "gpu dedupe").split()
    with DagsterInstance.get() as instance:
        default = instance.global_op_concurrency_default_limit
        if default is None:
            return 0
        storage = instance.event_log_storage
        if not storage.supports_global_concurrency_limits:
            return 0
        existing = {p.name: p for p in storage.get_pool_limits()}
        for pool in pools:
            row = existing.get(pool)
            if row is None or (row.from_default and row.limit != default):
                storage.initialize_concurrency_limit_to_default(pool)
                print(f"init-pools: pool {pool!r} at the default limit {default}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
