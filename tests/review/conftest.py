import pytest

from tests.review.label_studio import start_label_studio


@pytest.fixture(scope="session")
def label_studio_server(tmp_path_factory):
    """One Label Studio for the session: its document root is pytest's base temp, where the datasets live."""
    server = start_label_studio(tmp_path_factory.getbasetemp())
    server.launch()  # boots (about a minute) while the tests build their datasets; tests call ready()
    yield server
    server.stop()
    print(f"\nlabel studio: ready {[round(s, 1) for s in server.start_seconds]} s after launch")
