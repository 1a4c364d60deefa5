import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests import the fixture writers as `fixtures`

from fixtures import write_mnist  # noqa: E402


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own bandwidth cache, never the user's."""
    monkeypatch.setenv("AVAE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory):
    """A small MNIST in the official IDX files: 500 training, 100 validation and 60 test images
    (read only: a test that changes files makes its own)."""
    root = tmp_path_factory.mktemp("mnist")
    write_mnist(root, n_train=600, n_test=60)
    return root
