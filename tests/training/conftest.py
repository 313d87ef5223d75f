"""Session fixtures: the toy data file and a tiny model built on its texts (see training_toys)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hybridbatch.data.parallel import save_groups_jsonl

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path; the test modules
# here share helpers through this folder's `training_toys` module.
sys.path.insert(0, str(Path(__file__).parent))
from training_toys import toy_groups  # noqa: E402


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "toy.jsonl"
    save_groups_jsonl(path, toy_groups())
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, toy_data) -> Path:
    from hybridbatch.data.parallel import load_groups_jsonl
    from hybridbatch.models.tiny import build_tiny_sentence_transformer

    texts = [t for g in load_groups_jsonl(toy_data) for t in [*g.queries.values(), *g.positives.values()]]
    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("models") / "tiny", texts=texts, seed=0)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One thread per test process: on 2 shared cores, two OpenMP threads fighting other processes make
    a tiny model's step ten times slower, and one thread keeps results reproducible across runs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
