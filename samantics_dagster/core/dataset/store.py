"""The content-addressable image store ``{DATASET_DIR}/images/{dhash}.jpg``.

The store doubles as the global dedupe index: the names of its files *are* the accepted hashes, so
there is no second record to fall out of step with it. Writes are link-based (write a temp file, then
``os.link`` it to the final name), which is atomic and refuses to replace an existing file: a stored
frame is never overwritten, even by a racing process.

Two distinct scenes can share a dhash (evenly lit walls of other colours, smooth gradients: every row flat
hashes 0000000000000000). A name is one image, so :meth:`ImageStore.store_frame` gives the second scene the
nearest free code instead (:func:`codes_by_distance`: smallest Hamming distance first, a fixed order), which
keeps it within a bit or two of its true hash, so the near-duplicate search still finds it there.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
from filelock import FileLock

from samantics_dagster.core.dataset.atomic import DatasetWriteError, explain_write_error, umask_mode
from samantics_dagster.core.dataset.layout import DatasetLayout

_NAME = re.compile(r"^[0-9a-f]{16}\.jpg$")


def dataset_lock(dataset_dir: Path, name: str) -> FileLock:
    """A lock file ``{DATASET_DIR}/.locks/{name}.lock`` shared by every process that writes ``name``."""
    path = DatasetLayout(dataset_dir).lock(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


_TMP_PREFIX = ".tmp-"  # a frame being copied in (never a store name: those are 16 hex digits)


def codes_by_distance(dhash_hex: str) -> Iterator[str]:
    """Every 64-bit code as 16 hex chars, by Hamming distance from ``dhash_hex`` (itself first), and within
    one distance by the flipped bits' positions (lowest bits first, lexicographic): the order in which a frame
    whose hash names another scene's image looks for a name of its own. Lazy: the first few are all it takes."""
    code = int(dhash_hex, 16)
    for r in range(65):
        for bits in combinations(range(64), r):
            flip = 0
            for b in bits:
                flip |= 1 << b
            yield f"{code ^ flip:016x}"


@dataclass(frozen=True)
class StoredFrame:
    """Where :meth:`ImageStore.store_frame` put a frame: its ``key`` (the name in ``images/``; its dhash unless
    another scene's image holds that name) and whether this call wrote the file (False: those bytes were there already)."""

    key: str
    written: bool


class ImageStore:
    def __init__(self, dataset_dir: Path) -> None:
        self.dataset_dir = Path(dataset_dir)
        self.layout = DatasetLayout(dataset_dir)
        self.root = self.layout.images

    def path_for(self, dhash_hex: str) -> Path:
        return self.layout.image(dhash_hex)

    def has(self, dhash_hex: str) -> bool:
        return self.path_for(dhash_hex).is_file()

    def put_bytes(self, data: bytes, dhash_hex: str) -> bool:
        """Store a frame's exact bytes under its hash; False if that name was already there."""
        final = self.path_for(dhash_hex)
        if final.exists():
            return False
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=_TMP_PREFIX, suffix=".jpg")
            try:
                os.fchmod(fd, umask_mode())  # mkstemp's 0600 would hide the store from other uids
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                try:
                    os.link(tmp, final)
                except FileExistsError:
                    return False
            finally:
                os.unlink(tmp)
        except DatasetWriteError:
            raise
        except OSError as exc:  # ENOSPC, EIO: say which file and what to do; the temp file is already gone
            raise explain_write_error(exc, final) from exc
        return True

    def holds(self, key: str, data: bytes) -> bool:
        """Whether ``images/{key}.jpg`` holds exactly ``data`` (a size check first: most names differ there)."""
        path = self.path_for(key)
        try:
            return path.stat().st_size == len(data) and path.read_bytes() == data
        except FileNotFoundError:
            return False

    def store_frame(self, data: bytes, dhash_hex: str, *, before_write: Callable[[str], None] | None = None,
                    reserved: Collection[str] = (), dry_run: bool = False) -> StoredFrame:
        """Store an accepted frame's bytes under its dhash or, where that name holds another image, under the
        nearest code (:func:`codes_by_distance`) that is free or already holds these very bytes (the frame's
        own copy from an earlier run: deciding a frame again never stores it twice).

        ``before_write(key)`` runs before a file is linked in (the claims journal must name it first);
        ``reserved`` are names to treat as taken (a dry run's earlier frames, which were never written);
        ``dry_run`` picks the name without writing. A racing writer that takes a name first (the link refuses
        to replace it) only moves this frame on to the next one.
        """
        for key in codes_by_distance(dhash_hex):
            if key in reserved:
                continue
            if self.path_for(key).exists():
                if self.holds(key, data):
                    return StoredFrame(key, False)
                continue
            if dry_run:
                return StoredFrame(key, False)
            if before_write is not None:
                before_write(key)
            if self.put_bytes(data, key):
                return StoredFrame(key, True)
            if self.holds(key, data):  # a racing writer stored these same bytes under this name
                return StoredFrame(key, False)
        raise AssertionError("unreachable: 2**64 names")  # pragma: no cover

    def _claims_path(self, category: str) -> Path:
        return self.layout.claims(category)

    def claim(self, category: str, dhash_hex: str, rel_path: str) -> None:
        """Journal that a frame of ``category`` owns ``dhash_hex``, *before* the file is copied.

        The category's table is written only when its run ends; if the run dies first, the journal
        tells the next run that these stored files are its own frames, not duplicates of them.
        """
        path = self._claims_path(category)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"{dhash_hex}\t{rel_path}\n")

    def claims(self, category: str) -> dict[str, set[str]]:
        """rel_path -> the hashes its frames have claimed (a frame changed and re-accepted claims several)."""
        path = self._claims_path(category)
        out: dict[str, set[str]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                h, _, rel = line.partition("\t")
                if rel:
                    out.setdefault(rel, set()).add(h)
        return out

    def hashes(self) -> list[str]:
        """Every accepted hash (the file names), in no particular order."""
        if not self.root.is_dir():
            return []
        with os.scandir(self.root) as entries:
            return [e.name[:16] for e in entries if _NAME.match(e.name)]

    def codes(self) -> np.ndarray:
        names = self.hashes()
        return np.array([int(h, 16) for h in names], dtype=np.uint64)

    def total_bytes(self) -> int:
        if not self.root.is_dir():
            return 0
        with os.scandir(self.root) as entries:
            return sum(e.stat().st_size for e in entries if _NAME.match(e.name))

    def dedupe_lock(self) -> FileLock:
        """Serialise global dedupe across processes (the Dagster pool does it across runs of one instance)."""
        return dataset_lock(self.dataset_dir, "dedupe")

    @contextmanager
    def locked_for_writing(self) -> Iterator[int]:
        """The dedupe lock, held by whoever copies into the store, with the temp files of a writer that died
        holding it removed first (a SIGKILL between ``mkstemp`` and ``unlink`` leaves one): yields how many."""
        with self.dedupe_lock():
            yield self.remove_orphan_temps()

    def remove_orphan_temps(self) -> int:
        """Only safe under the dedupe lock: every writer holds it for as long as its temp file exists."""
        if not self.root.is_dir():
            return 0
        removed = 0
        for tmp in self.root.glob(f"{_TMP_PREFIX}*"):
            tmp.unlink(missing_ok=True)
            removed += 1
        return removed
