"""Fixtures for the sentence-transformers plug-in tests: the toy groups' JSONL and a tiny model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hybridbatch.data.parallel import save_groups_jsonl

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path; the tests here share
# helpers through this folder's `st_toys` module.
sys.path.insert(0, str(Path(__file__).parent))
from st_toys import make_groups  # noqa: E402


@pytest.fixture(scope="session")
def toy_jsonl(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("st-data") / "toy.jsonl"
    save_groups_jsonl(path, make_groups())
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from hybridbatch.models.tiny import build_tiny_sentence_transformer

    texts = [t for g in make_groups() for t in [*g.queries.values(), *g.positives.values()]]
    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("st-models") / "tiny", texts=texts,
                                           hidden=16, layers=1, heads=2, max_seq_length=32,
                                           prompts={"query": "query: ", "passage": "passage: "})
