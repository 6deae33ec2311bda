"""One way to replace a dataset file: write a temp file beside it, fsync, rename into place.

Readers (trainers, the CLI, another run) never see half a file, and a failed write (ENOSPC, EIO, a kill)
leaves the old file untouched and no temp file behind. Temp files are created 0600 by ``mkstemp``; they
are given the process umask's permissions before the rename, so a container under another uid can read
what this one wrote.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def umask_mode() -> int:
    """The mode a plain ``open()`` would give a new file under this process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class DatasetWriteError(OSError):
    """A write under DATASET_DIR failed; the message names the file and what to do."""


def explain_write_error(exc: OSError, path: Path) -> DatasetWriteError:
    """The error to raise for a failed write of ``path``: names the file and the fix (ENOSPC, EIO, permissions)."""
    if exc.errno == errno.ENOSPC:
        fix = "free space on that file system (or point DATASET_DIR at a bigger one), then re-run: finished work is kept"
    elif exc.errno == errno.EIO:
        fix = "the disk reported an I/O error: check the device (dmesg), then re-run: finished work is kept"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "DATASET_DIR must be writable by this process's user"
    else:
        fix = "fix the cause, then re-run: finished work is kept"
    err = DatasetWriteError(exc.errno, f"could not write {path}: {exc.strerror or exc}; {fix}")
    err.filename = str(path)
    return err


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temp path beside ``path`` to write to; renamed onto ``path`` when the block exits cleanly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, DatasetWriteError):
            raise
        raise explain_write_error(exc, path) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temps(folder: Path, name: str = "*") -> int:
    """Remove the temp files ``atomic_path`` left in ``folder`` for files named ``name`` (a glob) when their
    writer was killed outright (SIGKILL between ``mkstemp`` and the rename: no ``finally`` runs).

    Only safe while holding the lock that every writer of those files takes, so no live writer's temp file is
    removed. Returns how many were removed."""
    removed = 0
    for tmp in Path(folder).glob(f".{name}-*.tmp"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Replace ``path`` with what ``write`` writes to a binary file object, fsynced before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def write_json_atomic(obj: object, path: Path) -> None:
    """Compact JSON (COCO files are large), replaced atomically: a trainer never reads half of it."""
    def write(fh: IO[bytes]) -> None:
        import io

        text = io.TextIOWrapper(fh, encoding="utf-8")
        json.dump(obj, text, separators=(",", ":"))
        text.flush()
        text.detach()  # leave fh open: write_atomic fsyncs and closes it

    write_atomic(path, write)
