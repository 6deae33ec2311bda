"""The code location: every Dagster definition under ``defs/``, found by ``load_from_defs_folder``.

``dg dev`` (or ``dagster dev -w workspace.yaml``) loads ``defs`` from here. The package carries its own
``dg.toml`` so that an installed copy (the user-code image, a wheel) finds its project config too.
"""

from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import dagster as dg

T = TypeVar("T")


def _once(objects: Iterable[T] | None) -> list[T]:
    """The autoloader collects an object once per module that names it (an asset imported by its checks
    module, a job by its sensor): keep each object once, in first-seen order."""
    seen: set[int] = set()
    out: list[T] = []
    for o in objects or []:
        if id(o) not in seen:
            seen.add(id(o))
            out.append(o)
    return out


def _load() -> dg.Definitions:
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    return dg.Definitions(
        assets=_once(loaded.assets), asset_checks=_once(loaded.asset_checks), jobs=_once(loaded.jobs),
        schedules=_once(loaded.schedules), sensors=_once(loaded.sensors), resources=loaded.resources,
        executor=loaded.executor, loggers=loaded.loggers, metadata=loaded.metadata,
    )


defs = _load()
