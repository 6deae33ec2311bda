"""The code location with a SAM3 resource that stops dead after a chosen batch: the SIGKILL test's plumbing.

``test_a_killed_run_loses_at_most_one_batch`` runs ``dagster asset materialize -m tests.label_kill_defs``;
the resource below blocks (forever) in ``after_part`` once ``KILL_TEST_BLOCK_AFTER_PART`` parts are on disk,
after touching ``KILL_TEST_MARKER``. The test waits for the marker, then kills the process: it dies at that
batch every time, whatever the machine's speed. Nothing outside tests/ reads these variables.
"""

import os
import threading
from pathlib import Path

import dagster as dg

import samantics_dagster.definitions as _location
from samantics_dagster.defs.resources.sam3 import Sam3Resource


class BlockingSam3Resource(Sam3Resource):
    block_after_part: int
    marker: str

    def after_part(self, parts_written: int) -> None:
        if parts_written >= self.block_after_part:
            Path(self.marker).write_text(str(parts_written))
            threading.Event().wait()  # until SIGKILL


defs = dg.Definitions(
    assets=list(_location.defs.assets or []),
    resources={**(_location.defs.resources or {}), "sam3": BlockingSam3Resource(
        model_cache=dg.EnvVar("MODEL_CACHE"), block_after_part=int(os.environ.get("KILL_TEST_BLOCK_AFTER_PART", "0")),
        marker=os.environ.get("KILL_TEST_MARKER", ""))},
)
