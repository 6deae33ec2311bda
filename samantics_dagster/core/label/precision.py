"""The numeric precision a label was made at, carried in its labeler string, and the mix a category holds.

Borderline detections differ between bf16 on a GPU and fp32 on a CPU, and between torch or transformers
minor versions (kernels, fused attention, the model code itself). So the labeler of every row records them
after an ``@``: ``sam3:{model}:{queries}:{knobs}@bf16-torch2.11-transformers5.23``. The part before the ``@``
decides whether a row stands (a changed model, query set or threshold relabels); the precision does not by
default (an upgraded torch must not silently relabel a dataset, GPU-days of work), but a category whose rows
carry more than one precision is reported (the asset's metadata, ``samantics status``) and
``relabel: other_precision`` labels again the rows not at the current run's precision.

No torch import here: ``samantics status`` reads labeler strings only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum

from samantics_dagster.core.dataset.schema import IMPORTED_PREFIX

SEP = "@"
UNRECORDED = "unrecorded"  # rows labelled before the precision was recorded
_SHORT_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "float64": "fp64"}


class Relabel(StrEnum):
    """Which rows a labelling run labels again besides new and missing images. Lower-case members: Dagster's
    run config names an enum value by its member's name (``relabel: other_precision``)."""

    changed = "changed"  # rows whose model, queries or thresholds changed (the default)
    other_precision = "other_precision"  # also rows made at another dtype / torch / transformers version


def major_minor(version: str) -> str:
    """``"2.14.1+cu130"`` -> ``"2.14"``: patch releases don't change kernels' numerics, minor ones may."""
    return ".".join(version.split("+")[0].split(".")[:2])


def precision_tag(dtype: object, torch_version: str, transformers_version: str) -> str:
    """``bf16-torch2.11-transformers5.23`` for ``torch.bfloat16`` (or ``"bfloat16"``) and those versions."""
    name = str(dtype).removeprefix("torch.")
    return f"{_SHORT_DTYPES.get(name, name)}-torch{major_minor(torch_version)}-transformers{major_minor(transformers_version)}"


def with_precision(labeler: str, precision: str | None) -> str:
    return labeler if not precision else f"{labeler}{SEP}{precision}"


def split(labeler: str) -> tuple[str, str | None]:
    """(the part that decides whether a row stands, its precision or None if not recorded)."""
    base, sep, precision = labeler.partition(SEP)
    return base, (precision if sep else None)


def same_labels(old: str, new: str, relabel: Relabel) -> bool:
    """Whether a row labelled by ``old`` stands for a run labelling as ``new``."""
    if relabel == Relabel.other_precision:
        return old == new
    return split(old)[0] == split(new)[0]


def precision_of(labeler: object) -> str | None:
    """The precision of one row's labeler; None for a row no SAM3 run made (imported) or without a labeler."""
    if not isinstance(labeler, str) or labeler.startswith(IMPORTED_PREFIX):
        return None
    return split(labeler)[1] or UNRECORDED


def precision_counts(labelers: Iterable[object]) -> dict[str, int]:
    """Rows per precision among these labelers (pass the ``done`` rows'), most common first."""
    counts = Counter(p for p in map(precision_of, labelers) if p is not None)
    return dict(counts.most_common())
