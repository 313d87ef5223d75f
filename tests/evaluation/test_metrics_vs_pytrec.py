"""Our rank-based metrics and chunked search against pytrec_eval over complete, brute-force rankings."""

import numpy as np
import pytest

from hybridbatch.data.benchmark import Benchmark, Text
from hybridbatch.evaluation.metrics import DEFAULT_MEASURES, metrics_from_ranks, pytrec_eval_scores
from hybridbatch.evaluation.settings import evaluate_embeddings

LANGS = ["de", "en", "zh"]


def _normalize(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _toy_benchmark(rng, n_groups=30, graded=False, duplicates=True):
    """Parallel toy benchmark; embeddings are noisy copies of a group vector, with exact duplicates for ties."""
    dim = 16
    centers = rng.normal(size=(n_groups, dim))
    queries, corpus, qrels, q_emb, c_emb = [], [], {}, [], []
    for lang_i, lang in enumerate(LANGS):
        for g in range(n_groups):
            cid = f"{lang}:c{g}"
            corpus.append(Text(cid, f"text {cid}", lang))
            c_emb.append(centers[g] + rng.normal(scale=0.9, size=dim) + lang_i * 0.3)
            corpus.append(Text(f"{lang}:d{g}", "distractor", lang))
            c_emb.append(rng.normal(size=dim))
        if duplicates:  # exact score ties: two candidates with identical embeddings
            for j in range(3):
                corpus.append(Text(f"{lang}:dup{j}", "dup", lang))
                c_emb.append(c_emb[-2 * n_groups + j * 2])
    for lang in LANGS[:2]:
        for g in range(n_groups):
            qid = f"{lang}:q{g}"
            queries.append(Text(qid, "q", lang))
            q_emb.append(centers[g] + rng.normal(scale=0.9, size=dim))
            qrels[qid] = {f"{y}:c{g}": (1 + (g + len(y)) % 3 if graded else 1) for y in LANGS}
    return Benchmark("toy", queries, corpus, qrels), _normalize(np.array(q_emb)), _normalize(np.array(c_emb))


def _brute_force_runs(bench, q_emb, c_emb, corpus_langs):
    """Complete rankings from the full score matrix, restricted to a set of corpus languages."""
    scores = q_emb @ c_emb.T
    keep = [i for i, c in enumerate(bench.corpus) if c.lang in corpus_langs]
    return {q.id: {bench.corpus[j].id: float(scores[qi, j]) for j in keep} for qi, q in enumerate(bench.queries)}


@pytest.mark.parametrize("graded", [False, True])
@pytest.mark.parametrize("memory_mb", [0.001, 512.0])  # 1-query chunks and one chunk
def test_all_settings_equal_pytrec_eval(graded, memory_mb):
    rng = np.random.default_rng(0)
    bench, q_emb, c_emb = _toy_benchmark(rng, graded=graded)
    ev = evaluate_embeddings(bench, q_emb, c_emb, k=10, memory_mb=memory_mb)
    m = ev.metrics

    # multilingual: pooled corpus, all relevant
    ref = pytrec_eval_scores(bench.qrels, _brute_force_runs(bench, q_emb, c_emb, set(LANGS)))
    keys, ours_per_query = ev.per_query["multilingual"]
    assert sorted(keys) == sorted(ref)
    for j, qid in enumerate(keys):
        for name in DEFAULT_MEASURES:
            assert ours_per_query[name][j] == pytest.approx(ref[qid][name], abs=1e-12), (qid, name)
    for x in LANGS[:2]:
        ours = m["multilingual"]["per_language"][x]["map"]
        assert ours == pytest.approx(np.mean([s["map"] for q, s in ref.items() if q.startswith(x)]))

    # cross-lingual and monolingual: one corpus language at a time
    for x in LANGS[:2]:
        for y in LANGS:
            runs = _brute_force_runs(bench, q_emb, c_emb, {y})
            qrels = {q: {c: g for c, g in rels.items() if c.startswith(y + ":")}
                     for q, rels in bench.qrels.items() if q.startswith(x + ":")}
            ref = pytrec_eval_scores(qrels, {q: r for q, r in runs.items() if q in qrels})
            if x == y:
                got = m["monolingual"]["per_language"][x]
            else:
                got = m["crosslingual"]["per_pair"][f"{x}-{y}"]
            for name in DEFAULT_MEASURES:
                assert got[name] == pytest.approx(np.mean([s[name] for s in ref.values()]), abs=1e-12)
    assert set(m["crosslingual"]["per_pair"]) == {"de-en", "de-zh", "en-de", "en-zh"}


def test_runs_are_the_brute_force_top_k():
    rng = np.random.default_rng(1)
    bench, q_emb, c_emb = _toy_benchmark(rng, duplicates=False)
    ev = evaluate_embeddings(bench, q_emb, c_emb, k=5, memory_mb=0.001)
    full = _brute_force_runs(bench, q_emb, c_emb, set(LANGS))
    for qid, ranked in ev.runs["multilingual"].as_lists():
        expected = sorted(full[qid].items(), key=lambda kv: -kv[1])[:5]
        assert [c for c, _ in ranked] == [c for c, _ in expected]
    for qid, ranked in ev.runs["monolingual"].as_lists():
        lang = qid.split(":")[0]
        assert all(c.startswith(lang + ":") for c, _ in ranked)


def test_metrics_from_ranks_by_hand():
    # query 0: relevant at ranks 1 and 4 (R=2); query 1: relevant at rank 3
    labels, s = metrics_from_ranks(np.array([0, 0, 1]), np.array([4, 1, 3]), np.array([1, 1, 1]),
                                   ("map", "recall@1", "recall@3", "success@3", "mrr@2", "ndcg@3"))
    assert list(labels) == [0, 1]
    assert s["map"] == pytest.approx([(1 / 1 + 2 / 4) / 2, 1 / 3])
    assert s["recall@1"] == pytest.approx([0.5, 0.0])
    assert s["recall@3"] == pytest.approx([0.5, 1.0])
    assert s["success@3"] == pytest.approx([1.0, 1.0])
    assert s["mrr@2"] == pytest.approx([1.0, 0.0])
    assert s["ndcg@3"] == pytest.approx([1 / (1 + 1 / np.log2(3)), (1 / 2) / 1])


def test_absent_settings_are_none():
    # queries only in 'de', corpus only in 'en': no monolingual and no pooled multilingual setting
    bench = Benchmark("x", [Text("q1", "a", "de")], [Text("c1", "b", "en"), Text("c2", "c", "en")],
                      {"q1": {"c1": 1}})
    q = _normalize(np.eye(4)[:1] + 0.05)  # closest to c1
    c = _normalize(np.eye(4)[:2] + 0.1)
    m = evaluate_embeddings(bench, q, c).metrics
    assert m["monolingual"] is None and m["multilingual"] is None
    assert m["crosslingual"]["per_pair"]["de-en"]["map"] == pytest.approx(1.0)
