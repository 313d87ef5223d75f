"""Rank distance on hand-computed cases, and through the pooled setting."""

import numpy as np
import pytest

from hybridbatch.data.benchmark import Benchmark, Text
from hybridbatch.evaluation.rank_distance import macro_average, rank_distance_per_query
from hybridbatch.evaluation.settings import evaluate_embeddings


def test_max_minus_min_per_query():
    # query 0: ranks 1, 7, 3 -> 6; query 1: ranks 2, 2? impossible in one ranking, use 4, 2 -> 2; query 2: one item
    labels, dist = rank_distance_per_query(np.array([0, 0, 0, 1, 1, 2]), np.array([1, 7, 3, 4, 2, 9]))
    assert list(labels) == [0, 1] and list(dist) == [6.0, 2.0]


def test_macro_average_weights_languages_equally():
    macro, per_lang = macro_average(np.array([6.0, 2.0, 10.0]), ["de", "de", "en"])
    assert per_lang == {"de": 4.0, "en": 10.0} and macro == 7.0


def test_pooled_ranking_by_hand():
    # one query in en; four candidates with known scores; relevant: en answer and de answer
    e = np.eye(4, dtype=np.float32)
    corpus = [Text("en:a", "", "en"), Text("en:b", "", "en"), Text("de:a", "", "de"), Text("de:b", "", "de")]
    c_emb = e
    q_emb = np.array([[0.9, 0.8, 0.1, 0.7]], dtype=np.float32)  # order: en:a (1), en:b (2), de:b (3), de:a (4)
    q_emb /= np.linalg.norm(q_emb)
    bench = Benchmark("b", [Text("en:q", "", "en")], corpus, {"en:q": {"en:a": 1, "de:a": 1}})
    m = evaluate_embeddings(bench, q_emb, c_emb).metrics["multilingual"]
    assert m["rank_distance"] == 3.0  # ranks 1 and 4
    assert m["map"] == pytest.approx((1 / 1 + 2 / 4) / 2)
    assert m["own_language_top10"] == pytest.approx(0.5)  # 2 of the (only) 4 candidates are English
