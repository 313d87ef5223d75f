"""Toy parallel data whose texts reveal group and language, a tiny model, and config helpers.

In every language a group's query and positive share one made-up word ("zorbax"), so even a tiny random
model learns the task within a few steps; the number of hard negatives varies by group so that shards
of one batch carry different numbers of candidates (the gather must handle that).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

import yaml

from hybridbatch.data.parallel import ParallelGroup

LANGS = ["en", "de", "zh"]
TEMPLATES = {
    "en": ("where is the {w}?", "the {w} is in the garden.", "the {w} is not in the garden."),
    "de": ("wo ist das {w}?", "das {w} ist im garten.", "das {w} ist nicht im garten."),
    "zh": ("{w}在哪里？", "{w}在花园里。", "{w}不在花园里。"),
}
SYLLABLES = ["zor", "bax", "kel", "mup", "tri", "vos", "nad", "quo"]
ROOT = Path(__file__).resolve().parents[2]


def toy_groups(n: int = 24) -> list[ParallelGroup]:
    words = ["".join(p) for p in itertools.permutations(SYLLABLES, 3)][:n + 8]
    groups = []
    for g in range(n):
        n_neg = g % 3  # 0, 1 or 2 hard negatives: uneven across shards
        negatives = {lang: tuple(TEMPLATES[lang][2].format(w=words[n + (g + k) % 8]) for k in range(n_neg))
                     for lang in LANGS} if n_neg else {}
        groups.append(ParallelGroup(
            f"g{g:02d}",
            {lang: TEMPLATES[lang][0].format(w=words[g]) for lang in LANGS},
            {lang: TEMPLATES[lang][1].format(w=words[g]) for lang in LANGS},
            negatives,
        ))
    return groups


def base_config(model: Path | str, data: Path, out: Path, **overrides) -> dict:
    """A small run on the toy data; keyword overrides replace top-level keys."""
    config = {
        "model": str(model),
        "data": {"source": str(data), "languages": LANGS, "hard_negatives": 2},
        "sampler": {"name": "hybrid", "alpha": 0.5},
        "batch_size": 8,
        "steps": 10,
        "lr": 2.0e-3,
        "warmup_steps": 1,
        "max_seq_length": 32,
        "seed": 3,
        "output_dir": str(out),
        "eval": {"final": False},
    }
    config.update(overrides)
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def subprocess_env(threads: int = 1) -> dict[str, str]:
    """Environment for child processes: this source tree (and `helpers`), few threads, no hub."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONHASHSEED="0",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), env.get("PYTHONPATH", "")]))
    return env


PYTHON = sys.executable


def write_toy_benchmark(folder, groups):
    """The toy groups as a generic-layout benchmark: a query is relevant to its group's positives."""
    folder.mkdir()
    langs = sorted(groups[0].queries)
    with open(folder / "queries.jsonl", "w") as q, open(folder / "corpus.jsonl", "w") as c:
        for g in groups:
            for lang in langs:
                q.write(json.dumps({"_id": f"{lang}:{g.id}", "text": g.queries[lang], "lang": lang}) + "\n")
                c.write(json.dumps({"_id": f"{lang}:{g.id}", "text": g.positives[lang], "lang": lang}) + "\n")
    (folder / "qrels").mkdir()
    rows = [f"{a}:{g.id}\t{b}:{g.id}\t1" for g in groups for a in langs for b in langs]
    (folder / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n")
    return folder


def tiny_model_on(folder: Path, groups: list[ParallelGroup], **kwargs) -> Path:
    """A tiny sentence-transformers model at `folder` whose vocabulary covers the queries and positives of
    `groups` (`kwargs` go to `build_tiny_sentence_transformer`)."""
    from hybridbatch.models.tiny import build_tiny_sentence_transformer

    texts = [t for g in groups for t in [*g.queries.values(), *g.positives.values()]]
    return build_tiny_sentence_transformer(folder, texts=texts, **kwargs)
