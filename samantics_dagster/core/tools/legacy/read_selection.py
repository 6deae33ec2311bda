"""The ``01-selection`` layout: selected frames in category folders, ``02-labels/labels.jsonl``, and the
splits in ``03-curation/`` (one JSON-lines or COCO file per split)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from samantics_dagster.core.tools.legacy.model import SPLITS, Frame, ImageFolder, ImportReport, place, read_jsonl

# (split, origin, identifying record, annotation count) of one image named in 03-curation/
CurationEntry = tuple[str, str, dict[str, Any], int | None]


def read_selection_layout(root: Path, tag: str) -> tuple[list[Frame], ImageFolder]:
    """Every file under ``01-selection`` is an accepted frame, keyed by its folders where they say it."""
    images = ImageFolder(root / "01-selection")
    frames = []
    for rel, path in images.by_rel.items():
        parts = rel.split("/")
        frame = Frame(origin=f"01-selection/{rel}", tag=tag, name=parts[-1], image=path)
        if len(parts) >= 3:
            place(frame, parts[-3], parts[-2])
        elif len(parts) == 2:
            place(frame, None, parts[0])
        frames.append(frame)
    return frames, images


def _coco_entries(path: Path, split: str, report: ImportReport) -> list[CurationEntry]:
    """The images of one COCO split file, each with its annotation count."""
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
        images = coco["images"]
        counts = Counter(a.get("image_id") for a in coco.get("annotations") or [])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        report.problems.append(f"{path}: not a readable COCO file ({type(exc).__name__}: {exc}); "
                               "fix it or remove it, then import again")
        return []
    out: list[CurationEntry] = []
    for i, img in enumerate(images):
        if isinstance(img, dict) and img.get("file_name"):
            rec = {"image": img["file_name"], **{k: img[k] for k in ("source_path", "dhash") if k in img}}
            out.append((split, f"{path.name} image {i}", rec, counts.get(img.get("id"), 0)))
        else:
            report.problems.append(f"{path} image {i}: no file_name; skipped")
    return out


def curation_entries(root: Path, report: ImportReport) -> list[CurationEntry]:
    """Every image named in ``03-curation/`` (files named after their split; others are not splits)."""
    folder = root / "03-curation"
    out: list[CurationEntry] = []
    if not folder.is_dir():
        return out
    for path in sorted(folder.rglob("*")):
        split = SPLITS.get(path.stem.lower())
        if not path.is_file() or split is None or path.suffix.lower() not in (".jsonl", ".json"):
            continue
        if path.suffix.lower() == ".jsonl":
            for origin, rec in read_jsonl(path, report):
                boxes = rec.get("boxes")
                out.append((split, origin, rec, len(boxes) if isinstance(boxes, list) else None))
        else:
            out.extend(_coco_entries(path, split, report))
    return out
