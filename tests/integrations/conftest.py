"""Fixtures for the sentence-transformers plug-in tests: the plug-in toy groups' JSONL and a tiny model with
e5-style prompts (the helpers are in `helpers.st_toys`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.st_toys import make_groups
from helpers.training_toys import tiny_model_on
from hybridbatch.data.parallel import save_groups_jsonl


@pytest.fixture(scope="session")
def toy_jsonl(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("st-data") / "toy.jsonl"
    save_groups_jsonl(path, make_groups())
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Overrides tests/conftest.py's: built on the plug-in toys' texts, smaller, with prompts."""
    return tiny_model_on(tmp_path_factory.mktemp("st-models") / "tiny", make_groups(), hidden=16, layers=1,
                         heads=2, max_seq_length=32, prompts={"query": "query: ", "passage": "passage: "})
