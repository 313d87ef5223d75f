"""The real CLI end to end on a tiny model and a toy benchmark in the generic layout."""

import gzip
import json

import numpy as np
import pytest

from helpers.eval_toys import word_benchmark
from hybridbatch.cli import main
from hybridbatch.evaluation.metrics import pytrec_eval_scores
from hybridbatch.evaluation.score_run import read_trec_run

WORDS = {"en": ["house", "water", "tree", "dog", "sun", "book"], "de": ["Haus", "Wasser", "Baum", "Hund", "Sonne",
                                                                      "Buch"]}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return word_benchmark(tmp_path_factory.mktemp("toy"), WORDS)


def test_eval_writes_metrics_runs_and_report(toy, capsys):
    root, model = toy
    out = root / "out"
    assert main(["eval", "--model", str(model), "--benchmark", str(root / "bench"), "--out", str(out),
                 "--depth", "5"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for setting in ("monolingual", "crosslingual", "multilingual"):
        assert {"map", "recall@1", "recall@10"} <= set(metrics[setting])
    assert set(metrics["monolingual"]["per_language"]) == {"de", "en"}
    assert set(metrics["crosslingual"]["per_pair"]) == {"de-en", "en-de"}
    assert "rank_distance" in metrics["multilingual"]
    assert (out / "report.md").read_text().startswith("# bench")
    with gzip.open(out / "per_query.tsv.gz", "rt") as handle:
        assert handle.readline().split("\t")[:3] == ["setting", "query", "map"]
    run = read_trec_run(out / "runs" / "multilingual.trec")
    assert len(run) == 12 and all(len(docs) == 5 for docs in run.values())
    printed = json.loads(capsys.readouterr().out)
    assert printed["map"]["multilingual"] == pytest.approx(round(metrics["multilingual"]["map"], 4))


def test_score_agrees_with_pytrec_eval_and_gives_rank_distance(toy, capsys):
    root, _ = toy
    bench = root / "bench"
    run_path = root / "bm25.trec"
    rng = np.random.default_rng(0)
    lines = []
    for lang, words in WORDS.items():
        for i in range(len(words)):  # a complete ranking over all 12 candidates
            docs = [f"{y}-c{j}" for y in WORDS for j in range(len(words))]
            for r, d in enumerate(rng.permutation(docs)):
                lines.append(f"{lang}-q{i} Q0 {d} {r + 1} {12 - r} bm25\n")
    run_path.write_text("".join(lines))
    assert main(["score", "--qrels", str(bench / "qrels" / "test.tsv"), "--run", str(run_path),
                 "--corpus", str(bench / "corpus.jsonl"), "--queries", str(bench / "queries.jsonl")]) == 0
    result = json.loads(capsys.readouterr().out)
    qrels = {f"{lang}-q{i}": {f"{y}-c{i}": 1 for y in WORDS} for lang in WORDS for i in range(6)}
    ref = pytrec_eval_scores(qrels, read_trec_run(run_path))
    assert result["map"] == pytest.approx(np.mean([s["map"] for s in ref.values()]))
    assert result["recall@10"] == pytest.approx(np.mean([s["recall@10"] for s in ref.values()]))
    # rank distance by hand: per query, |rank of en answer - rank of de answer|, macro over languages
    distance = {}
    for line in lines:
        q, _, d, r, _, _ = line.split()
        distance.setdefault(q, {})
        if d.split("-")[1] == "c" + q.split("-q")[1]:
            distance[q][d] = int(r)
    per_lang = {lang: np.mean([max(v.values()) - min(v.values()) for q, v in distance.items()
                               if q.startswith(lang)]) for lang in WORDS}
    assert result["rank_distance"] == pytest.approx(np.mean(list(per_lang.values())))


def test_bad_input_exits_with_a_located_message(toy, tmp_path, capsys):
    root, model = toy
    bad = tmp_path / "bad"
    (bad / "qrels").mkdir(parents=True)
    (bad / "corpus.jsonl").write_text('{"_id": "c1", "text": "x", "lang": "en"}\n{"_id": "c2", "text": "y"}\n')
    (bad / "queries.jsonl").write_text('{"_id": "q1", "text": "x", "lang": "en"}\n')
    (bad / "qrels" / "test.tsv").write_text("q1\tc1\t1\n")
    assert main(["eval", "--model", str(model), "--benchmark", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "corpus.jsonl:2" in err and "'lang'" in err


def test_encode_then_eval_from_the_stores_gives_the_same_numbers_without_re_encoding(toy, capsys):
    root, model = toy
    stores = root / "emb"
    assert main(["encode", "--model", str(model), "--benchmark", str(root / "bench"), "--out", str(stores)]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["queries"]["count"] == 12 and not first["queries"]["reused"]
    assert (stores / "corpus" / "meta.json").is_file()
    stamp = (stores / "corpus" / "meta.json").stat().st_mtime_ns
    assert main(["encode", "--model", str(model), "--benchmark", str(root / "bench"), "--out", str(stores)]) == 0
    assert json.loads(capsys.readouterr().out)["corpus"]["reused"]
    plain, cached = root / "plain", root / "cached"
    assert main(["eval", "--model", str(model), "--benchmark", str(root / "bench"), "--out", str(plain)]) == 0
    assert main(["eval", "--model", str(model), "--benchmark", str(root / "bench"), "--out", str(cached),
                 "--embeddings", str(stores)]) == 0
    assert (stores / "corpus" / "meta.json").stat().st_mtime_ns == stamp  # read, not rewritten
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (plain, cached))
    for setting in ("monolingual", "crosslingual", "multilingual"):
        assert b[setting]["map"] == pytest.approx(a[setting]["map"], abs=1e-6)


def test_encode_index_writes_a_faiss_index_of_the_corpus_store(toy, tmp_path, capsys):
    pytest.importorskip("faiss")
    from hybridbatch.retrieval.embeddings import read_embeddings
    from hybridbatch.retrieval.faiss_index import read_index

    root, model = toy
    stores = tmp_path / "emb"
    assert main(["encode", "--model", str(model), "--benchmark", str(root / "bench"), "--out", str(stores),
                 "--index", "flat"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["index"]["file"] == str(stores / "corpus.flat.faiss")
    index = read_index(stores / "corpus.flat.faiss")
    _, _, corpus = read_embeddings(stores / "corpus")
    assert index.ntotal == len(corpus)
    _, _, queries = read_embeddings(stores / "queries")
    _, found = index.search(np.ascontiguousarray(queries, dtype=np.float32), 1)
    np.testing.assert_array_equal(found[:, 0], np.argmax(queries @ corpus.T, axis=1))


@pytest.mark.parametrize(("kind", "built", "tolerance"), [
    ("onnx", "model-fused.onnx", 1e-6),  # the fp32 graph: the same numbers
    ("onnx-int8", "model-int8-*.onnx", 0.02),  # outlier-aware int8; measured 0 / 0 / 0.003
])
def test_eval_fast_builds_into_the_cache_and_keeps_the_numbers(kind, built, tolerance, toy, tmp_path, monkeypatch,
                                                                capsys):
    pytest.importorskip("onnxruntime")
    root, model = toy
    monkeypatch.setenv("HYBRIDBATCH_CACHE", str(tmp_path / "cache"))
    plain, fast = tmp_path / "plain", tmp_path / "fast"
    assert main(["eval", "--model", str(model), "--benchmark", str(root / "bench"), "--out", str(plain)]) == 0
    assert main(["eval", "--model", str(model), "--benchmark", str(root / "bench"), "--out", str(fast),
                 "--fast", kind]) == 0
    assert len(list((tmp_path / "cache" / "onnx").glob(f"*/{built}"))) == 1
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (plain, fast))
    for setting in ("monolingual", "crosslingual", "multilingual"):
        assert b[setting]["map"] == pytest.approx(a[setting]["map"], abs=tolerance)
    capsys.readouterr()
