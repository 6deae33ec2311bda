import numpy as np

from samantics_dagster.core.dataset.store import ImageStore, StoredFrame


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


def test_codes_by_distance_walks_the_hamming_ball_in_a_fixed_order():
    from itertools import islice

    from samantics_dagster.core.dataset.store import codes_by_distance

    codes = list(islice(codes_by_distance("00000000000000f0"), 1 + 64 + 3))
    assert codes[:3] == ["00000000000000f0", "00000000000000f1", "00000000000000f2"]
    assert codes[64] == "80000000000000f0"  # the last of distance 1: the top bit
    assert codes[65:] == ["00000000000000f3", "00000000000000f5", "00000000000000f9"]  # bits (0,1), (0,2), (0,3)
    assert len(set(codes)) == len(codes)


def test_a_second_image_with_the_same_hash_gets_the_nearest_free_name(tmp_path):
    store = ImageStore(tmp_path)
    first, second, third = b"\xff\xd8first\xff\xd9", b"\xff\xd8second\xff\xd9", b"\xff\xd8third!\xff\xd9"
    claimed: list[str] = []
    assert store.store_frame(first, "0000000000000000", before_write=claimed.append) == StoredFrame("0000000000000000", True)
    assert store.store_frame(second, "0000000000000000", before_write=claimed.append) == StoredFrame("0000000000000001", True)
    assert claimed == ["0000000000000000", "0000000000000001"]  # journaled before the link
    # the same bytes again (a frame decided again) find their own copy; nothing is written twice
    assert store.store_frame(second, "0000000000000000") == StoredFrame("0000000000000001", False)
    assert store.store_frame(first, "0000000000000000") == StoredFrame("0000000000000000", False)
    # a dry run picks the name it would take, writes nothing, and treats its own earlier picks as taken
    assert store.store_frame(third, "0000000000000000", dry_run=True) == StoredFrame("0000000000000002", False)
    assert store.store_frame(third, "0000000000000000", dry_run=True,
                             reserved={"0000000000000002"}) == StoredFrame("0000000000000004", False)
    assert sorted(store.hashes()) == ["0000000000000000", "0000000000000001"]
    assert [store.path_for(h).read_bytes() for h in sorted(store.hashes())] == [first, second]


def test_racing_writers_of_one_hash_each_get_a_name_of_their_own(tmp_path):
    """Without the dedupe lock (a second tool writing the store) the link still refuses to replace a name:
    a writer that loses a race moves on to the next code; none loses its bytes."""
    import threading

    store = ImageStore(tmp_path)
    frames = [b"\xff\xd8frame %d\xff\xd9" % i for i in range(8)]
    gate = threading.Barrier(len(frames))
    keys: dict[int, str] = {}

    def write(i: int) -> None:
        gate.wait()
        keys[i] = store.store_frame(frames[i], "ffffffffffffffff").key

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(frames))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys.values())) == len(frames)
    assert all(store.path_for(keys[i]).read_bytes() == frames[i] for i in keys)
