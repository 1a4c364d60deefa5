import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests import the fixture writers as `fixtures`


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own bandwidth cache, never the user's."""
    monkeypatch.setenv("AVAE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
