"""Every fault-tolerance test runs on one torch thread (the shared fixtures, `toy_data`, `tiny_model` and
`deterministic` among them, are in tests/conftest.py; the helpers in `tests/helpers`). This suite's worker
scripts (`faults_*_worker.py`) sit in this folder and run as subprocesses."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield
