import pytest

from tests.review.label_studio import start_label_studio
from tests.review.ml_backend import build_store, start_backend, stop, wait_health


@pytest.fixture(scope="session")
def label_studio_server(tmp_path_factory):
    """One Label Studio for the session: its document root is pytest's base temp, where the datasets live."""
    server = start_label_studio(tmp_path_factory.getbasetemp())
    server.launch()  # boots (about a minute) while the tests build their datasets; tests call ready()
    yield server
    server.stop()
    print(f"\nlabel studio: ready {[round(s, 1) for s in server.start_seconds]} s after launch")


@pytest.fixture(scope="session")
def ml_store(tmp_path_factory):
    """An image store under Label Studio's document root (pytest's base temp) with two photos."""
    return build_store(tmp_path_factory.mktemp("mlb"))


@pytest.fixture(scope="session")
def ml_backend(ml_store, tiny_model_dir, tmp_path_factory):
    """One ``samantics ml-backend`` for the session (the API tests and the browser test share its start)."""
    with open(tmp_path_factory.mktemp("mlb-log") / "ml-backend.log", "ab") as log:
        proc, url = start_backend(tiny_model_dir, ml_store[0], log)
        try:
            health = wait_health(url)  # answers while the model loads
            assert health["status"] == "UP" and health["model_class"] == "Sam3TrackerModel", health
            yield url, proc
        finally:
            stop(proc)
