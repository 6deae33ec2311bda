"""Faults while writing the dataset: a full disk (ENOSPC, a real tmpfs that small) and a failing disk (EIO,
injected). Every failure must name the file and the fix, leave no temp file behind, and the next run after
the fault is gone must complete with the same dataset as a clean run."""

from __future__ import annotations

import errno
import json
import os
import subprocess

import pytest

CATEGORY = "gym"


def _run_all(instance, partition: str = CATEGORY):
    """category_pipeline then coco_export; the first failure's message, or None."""
    from samantics_dagster.definitions import defs

    if not instance.has_dynamic_partition("category", partition):
        instance.add_dynamic_partitions("category", [partition])
    for job, key in (("category_pipeline", partition), ("coco_export", None)):
        result = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=key, raise_on_error=False)
        if not result.success:
            failures = [e for e in result.all_events if e.is_step_failure]
            if not failures:
                return "run failed"
            error, messages = failures[0].step_failure_data.error, []
            while error is not None:  # Dagster wraps the asset's exception: the cause says what happened
                messages.append(error.message.strip())
                error = error.cause
            # the first exception below Dagster's wrapper: what the asset raised (its own cause is the raw OSError)
            found = next((m for m in messages if not m.startswith("dagster.")), messages[-1])
            if found.startswith("OSError"):  # a raw OSError: say where, so the writer can be fixed
                error = failures[0].step_failure_data.error
                while error.cause is not None:
                    error = error.cause
                found += " at " + "".join(error.stack[-3:])
            return found
    return None


def _temp_files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and (p.name.startswith(".tmp") or p.name.endswith(".tmp") or ".tmp-" in p.name
                                      or (p.name.startswith(".") and p.suffix == ".tmp")))


def _content(path) -> bytes:
    """The bytes, but of the shard manifest only its splits: the rest records which run wrote the merged files."""
    if path.name == "shards.json":
        return json.dumps(json.loads(path.read_text())["splits"], sort_keys=True).encode()
    return path.read_bytes()


def _files(root) -> dict[str, bytes]:
    skip = (".locks/", ".index/")  # locks and bookkeeping journals (attempts are appended), not the dataset
    # byte-index sidecars and the YOLO tree's source.json record their COCO files' mtimes, not content
    return {str(p.relative_to(root)): _content(p) for p in sorted(root.rglob("*"))
            if p.is_file() and not str(p.relative_to(root)).startswith(skip)
            and not p.name.endswith(".index.npz") and str(p.relative_to(root)) != "export/yolo/source.json"}


def _used_bytes(root) -> int:
    return sum(p.lstat().st_blocks * 512 for p in root.rglob("*"))


def _privileged(cmd: list[str]) -> list[str]:
    """As root, the command; otherwise through passwordless sudo (CI runners have it)."""
    return cmd if os.geteuid() == 0 else ["sudo", "-n", *cmd]


@pytest.fixture
def tiny_disk(tmp_path):
    """Mount a tmpfs of a given size at a fresh folder, owned by this user (as root, or with passwordless sudo).
    When neither works it skips here and fails under ``CI``, as every service a test needs does."""
    mounted = []

    def mount(size_bytes: int):
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        options = f"size={size_bytes},mode=0755,uid={os.getuid()},gid={os.getgid()}"
        try:
            proc = subprocess.run(_privileged(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)]),
                                  capture_output=True, text=True, timeout=30)
            error = proc.stderr.strip() if proc.returncode else None
        except (OSError, subprocess.TimeoutExpired) as exc:  # no sudo at all
            error = str(exc)
        if error is not None:
            message = (f"cannot mount a small tmpfs here ({error or 'not root'}): the ENOSPC test needs root or "
                       "passwordless sudo for `mount -t tmpfs`")
            if os.environ.get("CI"):
                pytest.fail(f"{message} (CI is set: the runner must allow it)")
            pytest.skip(message)
        mounted.append(point)
        assert os.statvfs(point).f_blocks * os.statvfs(point).f_frsize <= size_bytes + 4096, "not the small disk asked for"
        return point

    yield mount
    for point in mounted:
        subprocess.run(_privileged(["umount", "-l", str(point)]), check=False)


def test_a_full_disk_names_the_file_loses_nothing_and_the_next_run_completes(dataset_env, instance, tiny_disk,
                                                                             monkeypatch, tmp_path):
    from samantics_dagster.demo.spec import write_demo_spec

    # a clean run on the normal disk: the reference, and how much the dataset needs
    assert _run_all(instance) is None
    clean = _files(dataset_env)
    need = _used_bytes(dataset_env)
    hit = {}
    for share in (0.05, 0.9):
        # room for the dataset twice over: a run needs more than its final size while it writes (the labelling
        # part files beside the table they merge into, each table's temp copy), and the filler takes it all back
        disk = tiny_disk(2 * need + 4 * 1024 * 1024)
        dataset = disk / "dataset"
        write_demo_spec(dataset)
        monkeypatch.setenv("DATASET_DIR", str(dataset))
        filler = disk / "filler"
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        filler.write_bytes(b"\0" * max(0, free - int(need * share)))
        message = _run_all(instance)
        assert message is not None, f"the run fit in {share:.0%} of the space it needs"
        assert str(dataset) in message and "free space" in message, message
        hit[share] = message.split(":")[0]
        assert not _temp_files(dataset), _temp_files(dataset)
        filler.unlink()  # space freed: the next run completes, with the clean run's dataset
        assert _run_all(instance) is None
        assert not _temp_files(dataset)
        done = _files(dataset)
        assert done.keys() == clean.keys(), sorted(set(done) ^ set(clean))[:10]
        assert done == clean, [k for k in clean if done[k] != clean[k]][:10]
    print("ENOSPC hit:", hit)


@pytest.mark.parametrize("nth", [1, 25])
def test_an_io_error_names_the_file_loses_nothing_and_the_next_run_completes(dataset_env, instance, monkeypatch, nth,
                                                                             tmp_path):
    """EIO can't be made on a real disk here: the n-th fsync or store link of the run raises it."""
    import samantics_dagster.core.dataset.atomic as atomic
    import samantics_dagster.core.dataset.store as store

    calls = {"n": 0}

    def failing(real):
        def call(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == nth:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return real(*args, **kwargs)
        return call

    real_fsync, real_link = os.fsync, os.link
    atomic.os.fsync, store.os.link = failing(real_fsync), failing(real_link)  # both modules' `os` is the os module
    try:
        message = _run_all(instance)
    finally:
        os.fsync, os.link = real_fsync, real_link
    assert message is not None and calls["n"] >= nth
    assert "I/O error" in message and str(dataset_env) in message, message
    assert not _temp_files(dataset_env), _temp_files(dataset_env)
    assert _run_all(instance) is None
    assert not _temp_files(dataset_env)
