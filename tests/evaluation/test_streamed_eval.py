"""A corpus streamed from disk (MIRACL) is evaluated from an embedding store, shard by shard: the same
metrics, per-query scores and TREC runs as the in-memory path, without ever holding the corpus."""

from __future__ import annotations

import gc
import gzip
import json
import weakref
from pathlib import Path

import numpy as np
import pytest

from hybridbatch.data import miracl
from hybridbatch.data.benchmark import Benchmark, Text
from hybridbatch.evaluation.run import evaluate_model
from hybridbatch.evaluation.settings import evaluate_embeddings, evaluate_store
from hybridbatch.retrieval.embeddings import write_embeddings

FIXTURE = Path(__file__).parents[1] / "data" / "fixtures" / "miracl"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from hybridbatch.models.registry import load_sentence_transformer
    from hybridbatch.models.tiny import build_tiny_sentence_transformer

    return load_sentence_transformer(str(build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny"))))


def _in_memory(bench: Benchmark) -> Benchmark:
    return Benchmark(bench.name, bench.queries, list(bench.corpus), bench.qrels, skipped=bench.skipped)


def _outputs(folder: Path) -> dict[str, bytes]:
    """Every output file's bytes, metrics.json without its timing block."""
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    metrics = json.loads(files.pop("metrics.json"))
    metrics.pop("timing")
    files["metrics.json"] = json.dumps(metrics, sort_keys=True).encode()
    files["per_query.tsv.gz"] = gzip.decompress(files["per_query.tsv.gz"])
    files.pop("report.md")  # quotes the timing
    return files


def _run_lines(text: bytes) -> list[tuple]:
    """(qid, docid, rank, score) of a TREC run; the score to within float32 rounding."""
    return [(q, d, int(r), round(float(s), 5)) for q, _, d, r, s, _ in (line.split() for line in text.splitlines())]


@pytest.mark.parametrize("k", [100, 3])
def test_streamed_evaluation_writes_what_the_in_memory_one_writes(model, tmp_path, k):
    bench = miracl.load_miracl(f"miracl:{FIXTURE}")
    assert isinstance(bench.corpus, miracl.StreamedCorpus)
    kwargs = {"query_prefix": "query: ", "passage_prefix": "passage: ", "k": k, "show_progress": False}
    evaluate_model(model, _in_memory(bench), tmp_path / "in_memory", **kwargs)
    evaluate_model(model, bench, tmp_path / "streamed", **kwargs)  # one shard: the same products, bit for bit
    in_memory = _outputs(tmp_path / "in_memory")
    assert _outputs(tmp_path / "streamed") == in_memory
    assert sorted(in_memory) == ["metrics.json", "per_query.tsv.gz", "runs/monolingual.trec", "runs/multilingual.trec"]
    assert len(in_memory["runs/multilingual.trec"].splitlines()) == len(bench.queries) * min(k, 12)
    # three shards, one query at a time: other matrix products, so scores may differ in the last float32 bit
    evaluate_model(model, bench, tmp_path / "shards", shard_size=5, memory_mb=1e-4, **kwargs)
    sharded = _outputs(tmp_path / "shards")
    assert sharded["metrics.json"] == in_memory["metrics.json"] and sharded["per_query.tsv.gz"] == \
        in_memory["per_query.tsv.gz"]
    for run in ("runs/monolingual.trec", "runs/multilingual.trec"):
        assert _run_lines(sharded[run]) == _run_lines(in_memory[run])


def _toy(rng, n_per_lang: int = 150, n_queries: int = 40, dim: int = 8, exact: bool = False):
    """Three languages, several relevant passages per query; `exact`: values in quarters, so every dot
    product is exact whatever the summation order and ties (duplicate passages) are real ties."""
    langs = ["de", "fr", "sw"]
    corpus = [Text(f"{lang}:{i}", "", lang) for lang in langs for i in range(n_per_lang)]
    emb = rng.integers(-2, 3, size=(len(corpus), dim)) / 4 if exact else rng.normal(size=(len(corpus), dim))
    if exact:
        emb[1::7] = emb[0::7][:len(emb[1::7])]  # duplicates: tied scores everywhere
    else:
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    queries, qrels = [], {}
    for qi in range(n_queries):
        lang = langs[qi % 3]
        queries.append(Text(f"{lang}:q{qi}", "", lang))
        docs = rng.choice(n_per_lang, size=1 + qi % 4, replace=False)
        qrels[queries[-1].id] = {f"{lang}:{d}": int(1 + d % 3) for d in docs}
    q_emb = np.stack([emb[langs.index(q.lang) * n_per_lang + int(next(iter(qrels[q.id])).split(":")[1])]
                      + rng.normal(size=dim) * (0 if exact else 0.8) for q in queries])
    if exact:
        q_emb = np.round(q_emb * 4) / 4 + (rng.integers(-1, 2, size=q_emb.shape) / 4)
    else:
        q_emb /= np.linalg.norm(q_emb, axis=1, keepdims=True)
    return Benchmark("toy", queries, corpus, qrels), q_emb.astype(np.float32), emb.astype(np.float32)


@pytest.mark.parametrize("exact", [False, True])
def test_store_search_equals_the_exact_search(tmp_path, exact):
    bench, q_emb, c_emb = _toy(np.random.default_rng(7), exact=exact)
    store = write_embeddings(tmp_path / "store", [c.id for c in bench.corpus], [c.lang for c in bench.corpus],
                             c_emb, shard_size=37)  # shards cut across the language blocks
    for k in (100, 4):
        reference = evaluate_embeddings(bench, q_emb, c_emb, k=k)
        streamed = evaluate_store(bench, q_emb, store, k=k, memory_mb=0.01)  # several query chunks per shard
        if exact:  # which of several tied candidates fills the 10th place is torch.topk's choice in both
            for m in (reference.metrics, streamed.metrics):
                for row in [m["multilingual"], *m["multilingual"]["per_language"].values()]:
                    row.pop("own_language_top10")
        assert streamed.metrics == reference.metrics  # every setting, measure and bias figure, exactly
        for setting, (keys, scores) in reference.per_query.items():
            assert streamed.per_query[setting][0] == keys
            for measure, values in scores.items():
                np.testing.assert_array_equal(streamed.per_query[setting][1][measure], values)
        for setting, run in reference.runs.items():
            ours, theirs = streamed.runs[setting].as_lists(), run.as_lists()
            assert [q for q, _ in ours] == [q for q, _ in theirs]
            for (_, mine), (_, ref) in zip(ours, theirs, strict=True):
                np.testing.assert_allclose([s for _, s in mine], [s for _, s in ref], rtol=0, atol=1e-6)
                if not exact:  # tied scores: the order within a tie is torch.topk's
                    assert [d for d, _ in mine] == [d for d, _ in ref]
    if exact:  # ties were there to break
        assert any(len(set(row)) < len(row) for row in reference.runs["multilingual"].scores.tolist())


def test_streamed_evaluation_never_holds_more_than_a_shard(model, tmp_path, monkeypatch):
    alive, most = weakref.WeakSet(), [0]
    original = miracl._located_passages

    def watched(*args, **kwargs):
        for where in original(*args, **kwargs):
            alive.add(where[2])
            gc.collect()  # a passage still referenced by anyone stays in the set
            most[0] = max(most[0], len(alive))
            yield where

    monkeypatch.setattr(miracl, "_located_passages", watched)
    bench = miracl.load_miracl(f"miracl:{FIXTURE}")
    evaluate_model(model, bench, tmp_path / "out", shard_size=4, show_progress=False)
    assert 4 <= most[0] <= 4 + 2  # one shard, plus the passages being read and handed over
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metrics.json", "per_query.tsv.gz",
                                                                    "report.md", "runs"]  # temporary store gone


def test_an_interrupted_store_write_leaves_nothing(model, tmp_path, monkeypatch):
    from hybridbatch.retrieval import embeddings

    calls, original = [0], embeddings.encode_texts

    def failing(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 2:
            raise KeyboardInterrupt  # the second corpus shard
        return original(*args, **kwargs)

    monkeypatch.setattr(embeddings, "encode_texts", failing)
    bench = miracl.load_miracl(f"miracl:{FIXTURE}")
    with pytest.raises(KeyboardInterrupt):
        evaluate_model(model, bench, tmp_path / "out", shard_size=5, show_progress=False,
                       embeddings_dir=tmp_path / "emb")
    assert sorted(p.name for p in (tmp_path / "emb").iterdir()) == ["queries"]  # no corpus store, no temp folder
    calls[0] = 0
    with pytest.raises(KeyboardInterrupt):
        evaluate_model(model, bench, tmp_path / "out2", shard_size=5, show_progress=False)
    assert list((tmp_path / "out2").iterdir()) == []  # the temporary store removed, nothing written


def test_a_kept_corpus_store_is_reused(model, tmp_path, monkeypatch):
    from hybridbatch.retrieval import embeddings

    bench = miracl.load_miracl(f"miracl:{FIXTURE}")
    first = evaluate_model(model, bench, None, shard_size=5, show_progress=False, embeddings_dir=tmp_path / "emb")
    assert embeddings.read_meta(tmp_path / "emb" / "corpus")["count"] == 12

    def refuse(*args, **kwargs):
        raise AssertionError("re-encoded a current store")

    monkeypatch.setattr(embeddings, "encode_texts", refuse)
    again = evaluate_model(model, bench, None, shard_size=5, show_progress=False, embeddings_dir=tmp_path / "emb")
    first.metrics.pop("timing"), again.metrics.pop("timing")
    assert json.dumps(again.metrics, sort_keys=True) == json.dumps(first.metrics, sort_keys=True)  # NaN too
