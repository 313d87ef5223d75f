"""Fixtures shared by every test folder: LAReQA files, the toy training data and a tiny model built on its
texts, the image-text toys, one torch thread, deterministic kernels.

The helpers behind them live in the `helpers` package (`tests/helpers`), which pytest puts on the path
(`pythonpath` in pyproject.toml); test modules import them as `helpers.<module>`, no `sys.path` edits.
"""

import os
from pathlib import Path

import pytest

LAREQA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "lareqa"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def lareqa_dir() -> Path:
    folder = Path(os.environ.get("HYBRIDBATCH_LAREQA_DIR", LAREQA_DIR))
    if not (folder / "xquad-r" / "en.json").is_file():
        pytest.skip(f"LAReQA files not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    """The toy groups of `helpers.training_toys` as a JSONL file."""
    from helpers.training_toys import toy_groups
    from hybridbatch.data.parallel import save_groups_jsonl

    path = tmp_path_factory.mktemp("data") / "toy.jsonl"
    save_groups_jsonl(path, toy_groups())
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, toy_data) -> Path:
    """A tiny sentence-transformers model whose vocabulary covers the toy data's texts."""
    from helpers.training_toys import tiny_model_on
    from hybridbatch.data.parallel import load_groups_jsonl

    return tiny_model_on(tmp_path_factory.mktemp("models") / "tiny", load_groups_jsonl(toy_data), seed=0)


@pytest.fixture(scope="module")
def vl_assets(tmp_path_factory):
    """The image-text toys of `helpers.vl_toys`: (folder with images and captions.jsonl, text model, tower)."""
    from helpers.vl_toys import build_vl_assets

    return build_vl_assets(tmp_path_factory.mktemp("vl"))


@pytest.fixture
def one_torch_thread():
    """One thread per test process: on 2 shared cores, two OpenMP threads fighting other processes make
    a tiny model's step ten times slower, and one thread keeps results reproducible across runs.
    Automatic in tests/training and tests/faults (their conftest)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def deterministic():
    """Deterministic kernels in this process, as in the worker subprocesses that compare against it."""
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)
