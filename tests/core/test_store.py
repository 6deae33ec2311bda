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
