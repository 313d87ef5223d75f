"""Fixtures of the fault-tolerance suite: the training toys of tests/training, one torch thread, determinism.

pytest runs with --import-mode=importlib, which puts no test folder on sys.path; this suite's helper
modules (`faults_*`) sit in this folder, and it reuses `training_toys` (toy groups whose texts reveal
group and language, config helpers) from tests/training rather than copying it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
for folder in (HERE, HERE.parent / "training"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    from training_toys import toy_groups

    from hybridbatch.data.parallel import save_groups_jsonl

    path = tmp_path_factory.mktemp("faults-data") / "toy.jsonl"
    save_groups_jsonl(path, toy_groups())
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, toy_data) -> Path:
    from hybridbatch.data.parallel import load_groups_jsonl
    from hybridbatch.models.tiny import build_tiny_sentence_transformer

    texts = [t for g in load_groups_jsonl(toy_data) for t in [*g.queries.values(), *g.positives.values()]]
    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("faults-models") / "tiny", texts=texts, seed=0)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One thread per test process (2 shared cores), which also keeps results reproducible."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def deterministic():
    """The same kernels in this process as in the worker subprocesses (see faults_train_worker)."""
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)
