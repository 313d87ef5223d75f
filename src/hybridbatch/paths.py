"""Where hybridbatch keeps things: one cache root for built models, downloaded data and embeddings."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "HYBRIDBATCH_CACHE"


def cache_root() -> Path:
    """`$HYBRIDBATCH_CACHE`, else `$XDG_CACHE_HOME/hybridbatch`, else `~/.cache/hybridbatch`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "hybridbatch"


def cache_dir(*parts: str) -> Path:
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
