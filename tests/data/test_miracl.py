"""MIRACL in its released layout (fixtures under tests/data/fixtures/miracl): loading, splits, errors,
and the monolingual + pooled settings with MIRACL's measures (nDCG@10, recall@100)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hybridbatch.data.errors import InputError
from hybridbatch.data.miracl import iter_corpus, load_miracl, parse_spec
from hybridbatch.data.names import resolve_benchmark
from hybridbatch.evaluation.metrics import pytrec_eval_scores
from hybridbatch.evaluation.settings import evaluate_embeddings

FIXTURE = Path(__file__).parent / "fixtures" / "miracl"


def _raw_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_spec_syntax():
    assert parse_spec("miracl:/d") == (Path("/d"), None, "dev")
    assert parse_spec("miracl:/d@de,FR#train") == (Path("/d"), ["de", "fr"], "train")
    with pytest.raises(InputError, match="unknown language"):
        parse_spec("miracl:/d@xx")


def test_dev_split_of_all_languages_matches_the_files():
    bench = resolve_benchmark(f"miracl:{FIXTURE}")
    assert bench.name == "miracl-dev" and bench.corpus_languages == ["de", "fr"]
    expected_qrels, not_relevant = {}, 0
    for lang in ("de", "fr"):
        for qid, _, doc, rel in _raw_lines(FIXTURE / f"miracl-v1.0-{lang}/qrels/qrels.miracl-v1.0-{lang}-dev.tsv"):
            if int(rel) > 0:
                expected_qrels.setdefault(f"{lang}:{qid}", {})[f"{lang}:{doc}"] = int(rel)
            else:
                not_relevant += 1
    assert bench.qrels == expected_qrels
    topics = sum(len(_raw_lines(FIXTURE / f"miracl-v1.0-{lang}/topics/topics.miracl-v1.0-{lang}-dev.tsv"))
                 for lang in ("de", "fr"))
    assert len(bench.queries) == len(expected_qrels) == topics - 1  # de:2 has no relevant passage
    assert bench.skipped == {"qrels_not_relevant": not_relevant, "queries_without_relevant": 1}
    assert len(bench.corpus) == 12 and len({c.id for c in bench.corpus}) == 12  # "10#0" in both: prefixed
    berlin = next(c for c in bench.corpus if c.id == "de:10#0")
    assert berlin.text == "Berlin Berlin ist die Hauptstadt von Deutschland." and berlin.lang == "de"
    assert next(c for c in bench.corpus if c.id == "de:14#0").text == "Hamburg hat einen großen Hafen."  # no title


def test_language_and_split_choice():
    de = load_miracl(f"miracl:{FIXTURE}@de")
    assert de.query_languages == de.corpus_languages == ["de"] and len(de.queries) == 3
    train = load_miracl(f"miracl:{FIXTURE}@de#train")
    assert [q.id for q in train.queries] == ["de:100"] and train.qrels == {"de:100": {"de:10#1": 1}}
    with pytest.raises(FileNotFoundError, match="topics.miracl-v1.0-fr-train.tsv"):
        load_miracl(f"miracl:{FIXTURE}@fr#train")


def test_corpus_is_streamed_shard_by_shard():
    stream = iter_corpus(FIXTURE, "fr")
    assert next(stream).id == "fr:10#0"  # a generator: nothing read beyond the first line yet
    assert [t.id for t in stream][-1] == "fr:15#0"


@pytest.fixture
def broken(tmp_path):
    root = tmp_path / "miracl"
    shutil.copytree(FIXTURE, root)
    return root


def test_bad_files_are_named(broken):
    qrels = broken / "miracl-v1.0-de/qrels/qrels.miracl-v1.0-de-dev.tsv"
    qrels.write_text(qrels.read_text() + "1\tQ0\t99#9\t1\n")
    with pytest.raises(InputError, match=r"qrels.miracl-v1.0-de-dev.tsv.*'99#9' is not in the de corpus"):
        load_miracl(f"miracl:{broken}@de")
    qrels.write_text("0 Q0 10#0\n")
    with pytest.raises(InputError, match=r"qrels.miracl-v1.0-de-dev.tsv:1: expected 'qid Q0 docid rel'"):
        load_miracl(f"miracl:{broken}@de")
    shard = broken / "miracl-corpus-v1.0-fr/docs-1.jsonl.gz"
    with gzip.open(shard, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"docid": "20#0", "title": "x", "text": "y"}) + "\n{not json\n")
    with pytest.raises(InputError, match=r"docs-1.jsonl.gz:2: malformed JSON"):
        load_miracl(f"miracl:{broken}@fr")
    with pytest.raises(FileNotFoundError, match="no miracl-v1.0-<lang>/ folders"):
        load_miracl(f"miracl:{broken / 'miracl-corpus-v1.0-fr'}")


def test_duplicate_and_missing_docids_are_located(broken):
    shard = broken / "miracl-corpus-v1.0-de/docs-1.jsonl.gz"
    with gzip.open(shard, "at", encoding="utf-8") as handle:  # line 4 repeats docs-0.jsonl.gz line 2
        handle.write(json.dumps({"docid": "10#1", "title": "", "text": "noch einmal"}) + "\n")
    with pytest.raises(InputError, match=r"docs-1.jsonl.gz:4: field 'docid': duplicate docid '10#1' "
                                         r"\(first at docs-0.jsonl.gz:2\)"):
        load_miracl(f"miracl:{broken}@de")
    qrels = broken / "miracl-v1.0-fr/qrels/qrels.miracl-v1.0-fr-dev.tsv"
    qrels.write_text(qrels.read_text() + "2\tQ0\t77#0\t0\n2\tQ0\t88#0\t2\n")  # rel 0: not checked
    with pytest.raises(InputError, match=r"qrels.miracl-v1.0-fr-dev.tsv:8: field 'docid': qid 2: docid '88#0' "
                                         r"is not in the fr corpus"):
        load_miracl(f"miracl:{broken}@fr")


def test_loading_never_holds_the_corpus(monkeypatch):
    """Passages are made and dropped one at a time: no list of them, whatever the corpus size."""
    import gc
    import weakref

    from hybridbatch.data import miracl

    alive, most = weakref.WeakSet(), [0]
    original = miracl._located_passages

    def watched(*args, **kwargs):
        for where in original(*args, **kwargs):
            alive.add(where[2])
            gc.collect()  # a passage still referenced stays in the set
            most[0] = max(most[0], len(alive))
            yield where

    monkeypatch.setattr(miracl, "_located_passages", watched)
    bench = load_miracl(f"miracl:{FIXTURE}")
    assert most[0] <= 2  # the passage being read, and the one the generator just handed over
    assert isinstance(bench.corpus, miracl.StreamedCorpus) and len(bench.corpus) == 12


def test_monolingual_and_pooled_settings_with_miracl_measures():
    bench = load_miracl(f"miracl:{FIXTURE}")
    rng = np.random.default_rng(0)
    corpus_emb = rng.normal(size=(len(bench.corpus), 16)).astype(np.float32)
    corpus_emb /= np.linalg.norm(corpus_emb, axis=1, keepdims=True)
    position = {c.id: i for i, c in enumerate(bench.corpus)}
    # each query near its first relevant passage, plus noise: non-trivial but mostly right rankings
    query_emb = np.stack([corpus_emb[position[sorted(bench.qrels[q.id])[0]]] + 0.6 * rng.normal(size=16)
                          for q in bench.queries]).astype(np.float32)
    query_emb /= np.linalg.norm(query_emb, axis=1, keepdims=True)
    evaluation = evaluate_embeddings(bench, query_emb, corpus_emb)
    m = evaluation.metrics
    assert m["crosslingual"] is None  # MIRACL judges no passage of another language
    for setting in ("monolingual", "multilingual"):
        assert set(m[setting]["per_language"]) == {"de", "fr"}
        for row in m[setting]["per_language"].values():
            assert 0 <= row["ndcg@10"] <= 1 and 0 <= row["recall@100"] <= 1
        macro = np.mean([row["ndcg@10"] for row in m[setting]["per_language"].values()])
        assert m[setting]["ndcg@10"] == pytest.approx(macro)
        # the reference: trec_eval over the written run, per language
        run = {qid: dict(docs) for qid, docs in evaluation.runs[setting].as_lists()}
        reference = pytrec_eval_scores(bench.qrels, run, ("ndcg@10", "recall@100"))
        for lang, row in m[setting]["per_language"].items():
            ours = np.mean([s["ndcg@10"] for q, s in reference.items() if q.startswith(lang + ":")])
            assert row["ndcg@10"] == pytest.approx(ours, abs=1e-9)
    assert 0 <= m["multilingual"]["own_language_top10"] <= 1


def test_no_rank_distance_for_several_judged_passages_of_one_language():
    """MIRACL judges several passages of one language per query: their pooled ranks are no parallel answers, so
    rank distance stays NaN (null in metrics.json), where a parallel benchmark with the same qrels gets one."""
    import dataclasses

    bench = load_miracl(f"miracl:{FIXTURE}")
    corpus = list(bench.corpus)
    qid = bench.queries[0].id
    lang = bench.queries[0].lang
    extra = next(c.id for c in corpus if c.lang == lang and c.id not in bench.qrels[qid])
    qrels = {**bench.qrels, qid: {**bench.qrels[qid], extra: 1}}
    rng = np.random.default_rng(1)
    corpus_emb = rng.normal(size=(len(corpus), 8)).astype(np.float32)
    query_emb = rng.normal(size=(len(bench.queries), 8)).astype(np.float32)
    corpus_emb /= np.linalg.norm(corpus_emb, axis=1, keepdims=True)
    query_emb /= np.linalg.norm(query_emb, axis=1, keepdims=True)
    miracl = dataclasses.replace(bench, corpus=corpus, qrels=qrels)
    as_parallel = dataclasses.replace(miracl, parallel=True)
    assert not miracl.parallel
    multi = evaluate_embeddings(miracl, query_emb, corpus_emb).metrics["multilingual"]
    assert np.isnan(multi["rank_distance"]) and multi["rank_distance_queries"] == 0
    assert all(np.isnan(row["rank_distance"]) for row in multi["per_language"].values())
    parallel_multi = evaluate_embeddings(as_parallel, query_emb, corpus_emb).metrics["multilingual"]
    assert parallel_multi["rank_distance"] >= 0 and parallel_multi["rank_distance_queries"] >= 1
    assert multi["ndcg@10"] == parallel_multi["ndcg@10"]  # nothing else changes


def test_cli_eval_on_miracl(tmp_path, capsys):
    from hybridbatch.cli import main
    from hybridbatch.models.tiny import build_tiny_sentence_transformer

    model = build_tiny_sentence_transformer(tmp_path / "tiny")
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(model), "--benchmark", f"miracl:{FIXTURE}@de,fr", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["crosslingual"] is None and metrics["benchmark"] == "miracl-dev"
    for setting in ("monolingual", "multilingual"):
        assert 0 < metrics[setting]["ndcg@10"] <= 1 and 0 < metrics[setting]["recall@100"] <= 1
    assert metrics["monolingual"]["recall@100"] == 1.0  # 6 passages per language: everything is in the top 100
    printed = json.loads(capsys.readouterr().out)
    assert "rank_distance" not in printed["map"]  # not parallel: no rank distance
    assert printed["map"]["ndcg@10"]["monolingual"] == round(metrics["monolingual"]["ndcg@10"], 4)


def test_streamed_corpus_writes_a_store_one_shard_at_a_time(tmp_path):
    from hybridbatch.data.miracl import StreamedCorpus
    from hybridbatch.models.registry import load_sentence_transformer
    from hybridbatch.models.tiny import build_tiny_sentence_transformer
    from hybridbatch.retrieval.embeddings import encode_to_store, read_embeddings
    from hybridbatch.retrieval.encode import encode_texts

    class Watched(StreamedCorpus):
        largest = 0

        def _take(self, start, count):
            taken = super()._take(start, count)
            Watched.largest = max(Watched.largest, len(taken))
            return taken

    streamed = Watched(FIXTURE, ["de", "fr"])
    in_memory = list(load_miracl(f"miracl:{FIXTURE}").corpus)
    assert list(streamed) == in_memory and len(streamed) == 12
    assert streamed[3:7] == in_memory[3:7] and streamed[7:9] == in_memory[7:9] and streamed[1] == in_memory[1]
    assert streamed[-1] == in_memory[-1]
    model = load_sentence_transformer(str(build_tiny_sentence_transformer(tmp_path / "tiny")))
    Watched.largest = 0
    folder = encode_to_store(model, streamed, tmp_path / "store", prefix="passage: ", shard_size=5)
    ids, langs, emb = read_embeddings(folder)
    assert Watched.largest == 5  # never more than one shard of passages in memory
    assert ids == [t.id for t in in_memory] and langs == [t.lang for t in in_memory]
    reference = encode_texts(model, [t.text for t in in_memory], "passage: ", show_progress=False)
    assert np.allclose(emb, reference, atol=1e-5)
