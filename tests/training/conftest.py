"""Every training test runs on one torch thread (the shared fixtures are in tests/conftest.py)."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield
