"""A labelled frame as curation hands it to the export, and the instance rule both apply.

``core.curate`` decides which frames and instances go into the export and builds :class:`CocoFrame`;
``core.export`` writes them. Both need the frame record and :func:`usable` (the instances a trainer would drop
are dropped when curating, so the export never writes one), so they live here, below both, and curation
imports nothing from the export.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import overload


class JsonInstances(Sequence[dict]):
    """A frame's instances kept as their JSON text and parsed each time they are read.

    A curated 100 k-frame partition held as parsed dicts took 1.6 GB on top of its tables; as
    text it costs what the sam3_labels table's column already holds, and the writer parses one frame at a
    time. ``len`` needs no parse."""

    __slots__ = ("_n", "_text")

    def __init__(self, text: str, n: int) -> None:
        self._text, self._n = text, n

    @classmethod
    def of(cls, instances: Sequence[dict], text: str | None = None) -> JsonInstances:
        """``text`` when it encodes exactly ``instances`` (nothing was filtered out), else their encoding."""
        return cls(text if text is not None else json.dumps(list(instances)), len(instances))

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> dict: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict]: ...
    def __getitem__(self, index: int | slice) -> dict | list[dict]:
        return json.loads(self._text)[index]

    def __iter__(self) -> Iterator[dict]:
        return iter(json.loads(self._text))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable-looking sequence: unhashable like a list


@dataclass(frozen=True)
class CocoFrame:
    """One labelled image and the instances that go into the export (already filtered)."""

    dhash: str  # the id key: the store's dhash, or the image path for records without one
    width: int
    height: int
    instances: Sequence[dict]  # records as in the sam3_labels table: category_id, bbox_xyxy, score, rle, area
    source_path: str | None = None
    video_id: str | None = None
    category: str | None = None  # the partition it came from
    extra: dict = field(default_factory=dict)
    path: str | None = None  # file_name when the image is not in the store (legacy labels.jsonl)

    @property
    def file_name(self) -> str:
        return self.path or f"images/{self.dhash}.jpg"


def clip_box(xyxy: Sequence[float], w: int, h: int) -> list[float]:
    """An XYXY box clipped to the image, as COCO's XYWH rounded to 0.01 px."""
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    x0, x1 = sorted((min(max(x0, 0.0), w), min(max(x1, 0.0), w)))
    y0, y1 = sorted((min(max(y0, 0.0), h), min(max(y1, 0.0), h)))
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def usable(instance: Mapping, width: int, height: int) -> bool:
    """Whether a trainer would keep it: a non-empty mask and a box of at least 1×1 pixel inside the image."""
    _, _, bw, bh = clip_box(instance["bbox_xyxy"], width, height)
    return float(instance.get("area", 0)) >= 1 and bw >= 1 and bh >= 1
