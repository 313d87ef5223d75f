"""Toy data for the sentence-transformers plug-in tests: self-describing parallel groups.

Texts reveal group and language ("q|de|g07", "p|en|g07", "n|en|g07|1"); group g has g % 3 hard negatives per
language, so some rows need padding when hard negatives are asked for.
"""

from __future__ import annotations

from helpers.scripts import load_script
from helpers.training_toys import subprocess_env
from hybridbatch.data.parallel import ParallelGroup

LANGS = ["en", "de", "zh"]


def make_groups(n: int = 24, langs: list[str] = LANGS) -> list[ParallelGroup]:
    return [
        ParallelGroup(
            f"g{g:02d}",
            {lang: f"q|{lang}|g{g:02d}" for lang in langs},
            {lang: f"p|{lang}|g{g:02d}" for lang in langs},
            {lang: tuple(f"n|{lang}|g{g:02d}|{k}" for k in range(g % 3)) for lang in langs} if g % 3 else {},
        )
        for g in range(n)
    ]


def child_env() -> dict[str, str]:
    """Environment for child processes: this source tree, one thread, no hub."""
    return subprocess_env(1)


def load_example():
    """`examples/st_trainer_hybrid.py` as a module."""
    return load_script("examples/st_trainer_hybrid.py")
