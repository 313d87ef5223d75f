"""A toy retrieval benchmark of word sentences in the generic layout, with a tiny model on its vocabulary."""

from __future__ import annotations

from pathlib import Path

from hybridbatch.data.beir_layout import write_generic
from hybridbatch.data.benchmark import Benchmark, Text
from hybridbatch.models.tiny import build_tiny_sentence_transformer


def word_benchmark(root: Path, words: dict[str, list[str]]) -> tuple[Path, Path]:
    """`root/bench` (question "where is the W" -> "the W is here" in every language, parallel by index) and a
    tiny model `root/model` built on those texts; returns (root, model folder)."""
    queries, corpus, qrels = [], [], {}
    for lang, row in words.items():
        for i, w in enumerate(row):
            corpus.append(Text(f"{lang}-c{i}", f"the {w} is here", lang))
            queries.append(Text(f"{lang}-q{i}", f"where is the {w}", lang))
            qrels[f"{lang}-q{i}"] = {f"{y}-c{i}": 1 for y in words}
    write_generic(Benchmark("toy", queries, corpus, qrels), root / "bench")
    model = build_tiny_sentence_transformer(root / "model", texts=[t.text for t in queries + corpus])
    return root, model
