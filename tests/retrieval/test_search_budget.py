"""The exact search's memory budget: chunk sizes follow `memory_mb`, and the result does not depend on them.

tests/evaluation/test_metrics_vs_pytrec.py checks the metrics at the two extremes (1-query chunks, one
chunk); here: the chunk arithmetic itself, the chunks `search` really scores (ragged last chunk included),
and that every field of the result is the same whatever the budget.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hybridbatch.retrieval import search as search_module
from hybridbatch.retrieval.search import chunk_size_for, search, tie_order

N_Q, N_C, N_LANGS = 40, 90, 3


@pytest.mark.parametrize("n_candidates, memory_mb", [(1000, 1.0), (13_014, 512.0), (10**6, 512.0), (77, 0.3)])
def test_chunk_size_is_the_largest_within_the_budget(n_candidates, memory_mb):
    chunk = chunk_size_for(n_candidates, memory_mb)
    budget = memory_mb * 2**20
    assert chunk * n_candidates * 12 <= budget < (chunk + 1) * n_candidates * 12  # 12 bytes per score


def test_chunk_size_is_at_least_one():
    assert chunk_size_for(10**7, 0.001) == 1
    assert chunk_size_for(0, 1.0) == 2**20  # an empty corpus: no score at all


class _TopkSpy:
    """Stands in for the `torch` module inside search.py and records the rows of each pooled top-k call,
    i.e. of each chunk's (chunk, n_candidates) score matrix."""

    def __init__(self):
        self.chunk_rows: list[int] = []

    def __getattr__(self, name):
        return getattr(torch, name)

    def topk(self, scores, k, dim):
        if scores.shape[1] == N_C:
            self.chunk_rows.append(scores.shape[0])
        return torch.topk(scores, k, dim=dim)


def _problem(seed: int = 0):
    """Three language blocks, exact duplicate candidates (ties), 0-3 relevant items per query."""
    rng = np.random.default_rng(seed)
    corpus = rng.normal(size=(N_C, 8)).astype(np.float32)
    corpus[5] = corpus[40] = corpus[70]  # the same vector in every block: ties across and within blocks
    corpus[6] = corpus[5]
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries = rng.normal(size=(N_Q, 8)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    langs = np.repeat(np.arange(N_LANGS), N_C // N_LANGS)
    relevant = [[(int(c), int(g)) for c, g in zip(rng.choice(N_C, size=i % 4, replace=False),
                                                  rng.integers(1, 3, size=i % 4), strict=True)] for i in range(N_Q)]
    relevant[3] = [(5, 1), (6, 1), (70, 2)]
    ids = [f"d{rng.integers(10**6)}-{i}" for i in range(N_C)]
    return queries, corpus, langs, tie_order(ids), relevant, rng.integers(-1, N_LANGS, size=N_Q)


@pytest.mark.parametrize("chunk, expected_rows", [(1, [1] * N_Q), (7, [7] * 5 + [5]), (40, [40]), (10**6, [40])])
def test_search_scores_chunks_within_the_budget_with_the_same_result(monkeypatch, chunk, expected_rows):
    queries, corpus, langs, tie, relevant, block_for = _problem()
    reference = search(queries, corpus, langs, tie, relevant, N_LANGS, k=10, block_topk_for=block_for,
                       memory_mb=1e6)
    memory_mb = (chunk + 0.5) * N_C * 12 / 2**20
    spy = _TopkSpy()
    monkeypatch.setattr(search_module, "torch", spy)
    result = search(queries, corpus, langs, tie, relevant, N_LANGS, k=10, block_topk_for=block_for,
                    memory_mb=memory_mb)
    assert spy.chunk_rows == expected_rows
    assert all(rows * N_C * 12 <= memory_mb * 2**20 for rows in spy.chunk_rows)
    for field in dataclasses.fields(result):
        got, want = getattr(result, field.name), getattr(reference, field.name)
        if field.name.endswith("scores"):  # a 1-row matmul (gemv) rounds differently from a block (gemm)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=field.name)
        else:  # ranks, ids and pairs: exactly the same
            np.testing.assert_array_equal(got, want, err_msg=field.name)
    # the tie rule held in every chunking: candidates 5 and 6 share a score and a block
    first, second = sorted([5, 6], key=lambda c: -tie[c])  # the larger id ranks first
    pairs = {(int(q), int(d)): row for row, (q, d) in enumerate(zip(result.pair_query, result.pair_doc, strict=True))}
    assert result.above[pairs[(3, second)], 0] == result.above[pairs[(3, first)], 0] + 1
