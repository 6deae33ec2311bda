"""Hash the accepted old frames' files (the store name is always this project's dhash, never the old one), and
keep one frame per image across the old frames and the dataset."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from samantics_dagster.core.dataset.schema import LabelStatus, TableName
from samantics_dagster.core.dataset.tables import read_all
from samantics_dagster.core.dedupe.engine import ACCEPTED, REJECTED
from samantics_dagster.core.dedupe.imaging import FrameDecodeError, frame_signature
from samantics_dagster.core.dedupe.phases import content_digest
from samantics_dagster.core.tools.legacy.model import Frame, Hashed, ImportReport, Placed, ProgressFn


def _hash(frame: Frame, image: Path) -> None:
    """``frame.hashed`` from ``image``'s bytes, or ``frame.error`` saying why it cannot be."""
    try:
        data = image.read_bytes()
    except OSError as exc:
        frame.error = f"cannot read {image} ({exc.strerror}); fix its permissions and import again"
        return
    try:
        h = frame_signature(data)  # what dedupe names and compares frames by: the same image, the same name
    except FrameDecodeError as exc:
        frame.error = f"{image}: {exc}"
        return
    frame.hashed = Hashed(path=image, dhash=f"{h.dhash:016x}", width=h.width, height=h.height, size=len(data),
                          digest=content_digest(data))


def hash_accepted(placed: list[Placed], root: Path, progress: ProgressFn | None) -> None:
    """Hash every accepted frame's old file (in threads: the decode releases the GIL); no file is an error."""
    todo = [p.frame for p in placed if p.frame.status == ACCEPTED]
    hashable: list[tuple[Frame, Path]] = []
    for f in todo:
        if f.image is None:
            f.error = (f"no image for this accepted frame under {root} (looked for images/{{dhash}}.jpg and its "
                       "name); it is not imported: the pipeline dedupes it again if grabby still has it")
        else:
            hashable.append((f, f.image))
    if progress:
        progress(0, len(hashable))
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for n, _ in enumerate(pool.map(_hash, [f for f, _ in hashable], [image for _, image in hashable]), 1):
            if progress and (n % 100 == 0 or n == len(hashable)):
                progress(n, len(hashable))


def claim_hashes(placed: list[Placed], dataset: Path, report: ImportReport) -> None:
    """Give every accepted old frame its hash, unless the dataset already accepted that image under
    another key: then the old frame is its duplicate (a frame must not be in the dataset twice).

    ``placed`` is in key order: of two old frames with the same image, the first key keeps it."""
    owners: dict[str, str] = {}
    keys = {p.rel_path for p in placed}
    for table in read_all(dataset, TableName.DEDUPED_IMAGES).values():
        acc = table[(table["status"] == ACCEPTED) & table["dhash"].notna() & ~table["rel_path"].isin(keys)]
        owners.update(zip(acc["dhash"], acc["rel_path"]))
    for rel_path, category, f in placed:
        if f.status != ACCEPTED or f.error is not None or f.hashed is None:
            continue
        owner = owners.setdefault(f.hashed.dhash, rel_path)
        if owner != rel_path:
            f.status, f.reason, f.dup_of = REJECTED, "dhash", f.hashed.dhash
            f.detail = f"hamming 0: the same image is already in the dataset as {owner} (legacy import)"
            if f.label is not None or f.label_status == LabelStatus.FAILED:
                report.category(category).problems.append(
                    f"{f.origin}: same image as {owner}, already in the dataset; imported as its duplicate, its "
                    "legacy labels are not imported")
