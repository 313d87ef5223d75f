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
