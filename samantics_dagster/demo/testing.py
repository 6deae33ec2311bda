"""Helpers only the tests use: kept out of the pipeline's modules so those hold only what runs.

They live in the package (not under ``tests/``) beside the demo's sample builder and tiny model, which the
tests use the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from samantics_dagster.core.curate.split import is_missing_group


def bbox_xywh(xyxy: Iterable[float]) -> list[float]:
    """COCO's [x, y, width, height] from [x0, y0, x1, y1] (the tests build COCO files by hand with it)."""
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    return [x0, y0, x1 - x0, y1 - y0]


def previous_splits(
    keys: Sequence[str], groups: Sequence[str | None], assignment: Mapping[str, str]
) -> dict[str, str]:
    """The ``previous`` argument for the next run, from an earlier run's frames and assignment.

    Maps each video to its split, and each frame with no video by its key. Keys not in ``assignment``
    are skipped. Raises ``ValueError`` if a video is in two splits.
    """
    result: dict[str, str] = {}
    for key, group in zip(keys, groups):
        key = str(key)
        if key not in assignment:
            continue
        name = key if is_missing_group(group) else str(group)
        split = assignment[key]
        if result.setdefault(name, split) != split:
            raise ValueError(
                f"video {name!r} is in splits {result[name]!r} and {split!r}; fix the earlier split (see"
                " leaked_groups) before re-using it"
            )
    return result
