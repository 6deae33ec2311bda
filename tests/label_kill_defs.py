"""The code location whose labelling stops dead after a chosen batch: the SIGKILL test's plumbing.

``test_a_killed_run_loses_at_most_one_batch`` runs ``dagster asset materialize -m tests.label_kill_defs``;
in that process, once ``KILL_TEST_BLOCK_AFTER_PART`` parts are on disk, the part writer touches
``KILL_TEST_MARKER`` and blocks (forever). The test waits for the marker, then kills the process: it dies at
that batch every time, whatever the machine's speed. Nothing outside tests/ reads these variables, and the
package carries no hook for it: the wrapper replaces the stages' part writer in this process only.
"""

import os
import threading
from pathlib import Path

import samantics_dagster.core.label.stages as stages
from samantics_dagster.definitions import defs  # noqa: F401 - the code location `dagster -m` loads

_BLOCK_AFTER = int(os.environ.get("KILL_TEST_BLOCK_AFTER_PART", "0"))
_MARKER = os.environ.get("KILL_TEST_MARKER", "")
_write_part = stages.write_part
_written = 0


def _write_part_then_maybe_block(parts_dir: Path, rows: list[dict], *args: object, **kwargs: object) -> None:
    global _written
    _write_part(parts_dir, rows, *args, **kwargs)
    if not rows:
        return
    _written += 1
    if _BLOCK_AFTER and _written >= _BLOCK_AFTER:
        Path(_MARKER).write_text(str(_written))
        threading.Event().wait()  # until SIGKILL


stages.write_part = _write_part_then_maybe_block
