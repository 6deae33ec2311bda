import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent

# GRABBY_WORKDIR must never be written. Running as root, permissions can't prove it, so every open()
# and os.open() in the test process is audited: a write-mode open under a guarded folder fails the test.
_GUARDED: list[str] = []
_VIOLATIONS: list[str] = []
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _audit(event: str, args: tuple) -> None:
    if event != "open" or not _GUARDED:
        return
    path, mode, flags = args
    if path is None or isinstance(path, int):
        return
    writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (flags & _WRITE_FLAGS)
    if writing:
        p = os.path.realpath(os.fsdecode(path))
        if any(p == g or p.startswith(g + os.sep) for g in _GUARDED):
            _VIOLATIONS.append(p)


sys.addaudithook(_audit)


@pytest.fixture
def guard_workdir():
    """Use as ``with guard_workdir(path): ...``; fails the test if anything opened a file there for writing."""
    from contextlib import contextmanager

    @contextmanager
    def guard(path: Path):
        _GUARDED.append(os.path.realpath(path))
        _VIOLATIONS.clear()
        try:
            yield
        finally:
            _GUARDED.pop()
        assert not _VIOLATIONS, f"opened for writing inside GRABBY_WORKDIR: {_VIOLATIONS[:5]}"

    return guard


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    """The demo's sample workdir (built once per session) and its truth."""
    from samantics_dagster.demo.sample import build_sample_workdir

    root = tmp_path_factory.mktemp("sample")
    workdir = root / "grabby"
    truth = build_sample_workdir(workdir, seed=0)
    return workdir, truth


@pytest.fixture(scope="session")
def chromium():
    """Debian's headless Chromium (scripts/test-services.sh installs it): the stack's UI test and the review
    editor's browser test drive it; a skip here, a failure under CI."""
    import shutil

    from tests.deploy.stack import need

    path = os.environ.get("SAMANTICS_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        need("Chromium", "install Debian's `chromium` (scripts/test-services.sh does, as root)")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random SAM3 saved as a snapshot folder: loaded through the same code as real weights."""
    import torch

    from samantics_dagster.demo.tiny_sam3 import save_tiny_sam3

    torch.set_num_threads(1)
    return save_tiny_sam3(tmp_path_factory.mktemp("models") / "tiny-sam3")


@pytest.fixture
def dataset_env(tmp_path, sample, tiny_model_dir, monkeypatch):
    """DATASET_DIR (with the demo's coco-spec.json and sam-queries.yaml), GRABBY_WORKDIR and MODEL_CACHE."""
    from samantics_dagster.demo.spec import write_demo_spec

    workdir, _ = sample
    dataset = tmp_path / "dataset"
    write_demo_spec(dataset)
    monkeypatch.setenv("DATASET_DIR", str(dataset))
    monkeypatch.setenv("GRABBY_WORKDIR", str(workdir))
    monkeypatch.setenv("MODEL_CACHE", str(tiny_model_dir))
    return dataset


@pytest.fixture
def instance(tmp_path):
    """A real Dagster instance (SQLite in a temp DAGSTER_HOME) with the repo's dagster.yaml settings."""
    from dagster import instance_for_test

    overrides = yaml.safe_load((REPO / "dagster.yaml").read_text())
    home = tmp_path / "dagster_home"
    home.mkdir()
    with instance_for_test(temp_dir=str(home), overrides=overrides) as inst:
        yield inst
