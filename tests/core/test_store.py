import numpy as np

from samantics_dagster.core.dataset.store import ImageStore


def test_put_is_byte_exact_and_never_overwrites(tmp_path):
    store = ImageStore(tmp_path)
    src = tmp_path / "a.jpg"
    src.write_bytes(b"\xff\xd8first\xff\xd9")
    other = tmp_path / "b.jpg"
    other.write_bytes(b"\xff\xd8second\xff\xd9")
    assert store.put_bytes(src.read_bytes(), "00000000000000ff") is True
    assert store.put_bytes(other.read_bytes(), "00000000000000ff") is False
    assert store.path_for("00000000000000ff").read_bytes() == src.read_bytes()
    assert not [p for p in store.root.iterdir() if p.name.startswith(".tmp")]


def test_the_store_is_the_index(tmp_path):
    store = ImageStore(tmp_path)
    src = tmp_path / "a.jpg"
    src.write_bytes(b"x")
    for h in ("0000000000000001", "ffffffffffffffff"):
        store.put_bytes(src.read_bytes(), h)
    (store.root / "notes.txt").write_text("ignored")
    assert sorted(store.hashes()) == ["0000000000000001", "ffffffffffffffff"]
    assert sorted(store.codes().tolist()) == [1, np.iinfo(np.uint64).max]


def test_a_writer_killed_mid_copy_leaves_a_temp_file_the_next_writer_removes(tmp_path):
    """A SIGKILL between mkstemp and unlink in put_bytes leaves ``images/.tmp-*.jpg``; every writer holds the
    dedupe lock while its temp file exists, so the next one to take it removes what a dead one left."""
    import subprocess
    import sys

    store = ImageStore(tmp_path)
    store.put_bytes(b"\xff\xd8kept\xff\xd9", "00000000000000aa")
    code = ("import os, signal, tempfile; from samantics_dagster.core.dataset.store import ImageStore; "
            f"s = ImageStore({str(tmp_path)!r}); s.dedupe_lock().acquire(); "
            "tempfile.mkstemp(dir=s.root, prefix='.tmp-', suffix='.jpg'); os.kill(os.getpid(), signal.SIGKILL)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    assert len(list(store.root.glob(".tmp-*"))) == 1
    with store.locked_for_writing() as removed:  # the dead writer's flock went with it
        assert removed == 1
    assert not list(store.root.glob(".tmp-*")) and store.hashes() == ["00000000000000aa"]
