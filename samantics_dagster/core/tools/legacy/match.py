"""Old label and curation records onto the old frames: by path, by old hash, by file, by name."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from samantics_dagster.core.curate.filters import INCLUDED
from samantics_dagster.core.dataset.schema import LabelStatus
from samantics_dagster.core.dedupe.engine import ACCEPTED
from samantics_dagster.core.tools.legacy.model import (
    FALLBACK_SOURCE,
    Frame,
    ImageFolder,
    ImportReport,
    clean,
    hex16,
    place,
    split_rel,
)
from samantics_dagster.core.tools.legacy.read_selection import CurationEntry


class FrameIndex:
    """Frames by every key an old record may name them with."""

    def __init__(self, frames: list[Frame]) -> None:
        self.frames = frames
        self.by_rel: dict[str, Frame] = {}
        self.by_image: dict[Path, Frame] = {}
        self.by_hash: dict[str, Frame] = {}
        self.by_name: dict[str, list[Frame]] = defaultdict(list)
        for f in frames:
            self.add(f)

    def add(self, f: Frame) -> None:
        if f.rel_path:
            self.by_rel.setdefault(f.rel_path, f)
        if f.image is not None:
            self.by_image.setdefault(f.image.resolve(), f)
        if f.legacy_dhash:
            self.by_hash.setdefault(f.legacy_dhash, f)
        if not any(x is f for x in self.by_name[f.name]):
            self.by_name[f.name].append(f)

    def find(self, rec: dict[str, Any], image: Path | None) -> Frame | None:
        source_path = clean(rec.get("source_path"))
        if source_path:
            src, cat, name = split_rel(source_path)
            if cat is not None and f"{src or FALLBACK_SOURCE}/{cat}/{name}" in self.by_rel:
                return self.by_rel[f"{src or FALLBACK_SOURCE}/{cat}/{name}"]
        for h in (hex16(rec.get("dhash")), hex16(PurePosixPath(str(rec.get("image", ""))).stem)):
            if h and h in self.by_hash:
                return self.by_hash[h]
        if image is not None and image.resolve() in self.by_image:
            return self.by_image[image.resolve()]
        names = [PurePosixPath(str(rec.get("image", ""))).name]
        if source_path:
            names.append(split_rel(source_path)[2])
        for name in names:
            hits = self.by_name.get(name, [])
            if len(hits) == 1:
                return hits[0]
        return None


def _record_image(root: Path, rec: dict[str, Any], images: ImageFolder) -> Path | None:
    raw = clean(rec.get("image"))
    if raw is None:
        return None
    raw = raw.replace("\\", "/")
    path = Path(raw)
    if path.is_absolute() and path.is_file():
        return path
    if not path.is_absolute() and (root / path).is_file():
        return root / path
    try:
        rel: str | None = (root / path).resolve().relative_to(images.root.resolve()).as_posix()
    except ValueError:
        rel = None
    return images.find(rel, raw)


def attach_labels(root: Path, records: list[tuple[str, dict[str, Any]]], index: FrameIndex, images: ImageFolder,
                  tag: str, report: ImportReport) -> None:
    """Each label record onto its frame; a record naming an old file no frame has is a frame of its own."""
    for origin, rec in records:
        image = _record_image(root, rec, images)
        frame = index.find(rec, image)
        if frame is None:
            if image is None:
                report.problems.append(f"{origin}: image {rec.get('image')!r} is neither a known frame nor a file "
                                       "under the old dataset; its labels are skipped")
                continue
            source_path = clean(rec.get("source_path"))
            name = split_rel(source_path)[2] if source_path else image.name
            frame = Frame(origin=origin, tag=tag, name=name, image=image, legacy_dhash=hex16(image.stem))
            frame.label_status = LabelStatus.DONE
            index.frames.append(frame)
            _locate(frame, rec, images)
            index.add(frame)
        else:
            if frame.image is None and frame.status == ACCEPTED:  # e.g. named by a hash the db did not keep
                frame.image = image
            if frame.rel_path is None or (frame.category is not None and clean(rec.get("source_path"))):
                _locate(frame, rec, images)
            index.add(frame)
        if frame.label is not None:
            report.problems.append(f"{origin}: a second label record for {frame.rel_path or frame.name} "
                                   f"(first: {frame.label_origin}); the later one is kept")
        frame.label, frame.label_origin = rec, origin


def _locate(frame: Frame, rec: dict[str, Any], images: ImageFolder) -> None:
    """Key a frame by its record's ``source_path`` (same name, same or unknown category), else its folder."""
    source_path = clean(rec.get("source_path"))
    if source_path:
        src, cat, name = split_rel(source_path)
        if cat is not None and name == frame.name and frame.category in (None, cat) and \
                (frame.rel_path is None or frame.rel_path.startswith(f"{FALLBACK_SOURCE}/")):
            place(frame, src, cat)
            return
    if frame.rel_path is not None:
        return
    category = clean(rec.get("category"))
    if category is None and frame.image is not None:
        try:
            parts: tuple[str, ...] = frame.image.resolve().relative_to(images.root.resolve()).parts
        except ValueError:
            parts = ()
        category = parts[-2] if len(parts) >= 2 else None
    if category is not None:
        place(frame, None, category)


def attach_curation(entries: Iterable[CurationEntry], index: FrameIndex, images: ImageFolder, root: Path,
                    report: ImportReport) -> bool:
    """Each split entry onto its frame (included, in that split); True if there was any entry at all."""
    seen = False
    for split, origin, rec, count in entries:
        seen = True
        frame = index.find(rec, _record_image(root, rec, images))
        if frame is None:
            report.problems.append(f"{origin}: image {rec.get('image')!r} is not among the old frames; "
                                   "its split is not imported")
            continue
        frame.curate, frame.curate_count = (INCLUDED, None, split), count
    return seen
