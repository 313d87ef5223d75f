"""Exact search in query chunks: the ranks of the relevant items, per corpus language, and the top k.

All three evaluation settings come from one pass. The corpus is grouped into contiguous language blocks;
each chunk of queries is scored against the whole corpus and every block's scores are sorted once. For each
(query, relevant item) pair a binary search per block counts the candidates of that block ranked above the
item. Its rank in a one-language corpus Y is `above[Y] + 1`, and in the pooled corpus `above.sum() + 1`.
Ties are broken as trec_eval breaks them (equal score: the larger id ranks first), so metrics computed from
these ranks equal pytrec_eval's over complete rankings without ever handing it a full score matrix.

Memory: a chunk holds `chunk × n_candidates` float32 scores and the sorted copy of one language block;
the chunk size follows from `memory_mb`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch


class NonFiniteEmbeddings(ValueError):
    """NaN or inf in the embeddings (or their scores): no ranking of them means anything.

    `query_rows` / `corpus_rows`: the offending rows (for the caller to name the texts).
    """

    def __init__(self, message: str, query_rows: np.ndarray | None = None, corpus_rows: np.ndarray | None = None):
        super().__init__(message)
        self.query_rows = np.zeros(0, dtype=np.int64) if query_rows is None else np.asarray(query_rows)
        self.corpus_rows = np.zeros(0, dtype=np.int64) if corpus_rows is None else np.asarray(corpus_rows)


def non_finite_rows(embeddings: np.ndarray, rows_per_pass: int = 65536) -> np.ndarray:
    """Indices of the rows holding a NaN or inf (in passes, so a memory-mapped store is never copied whole)."""
    bad = [start + np.nonzero(~np.isfinite(embeddings[start:start + rows_per_pass]).all(axis=1))[0]
           for start in range(0, len(embeddings), rows_per_pass)]
    return np.concatenate(bad).astype(np.int64) if bad else np.zeros(0, dtype=np.int64)


def require_finite(queries: np.ndarray, corpus: np.ndarray) -> None:
    """`NonFiniteEmbeddings` naming the rows unless every query and corpus embedding is finite."""
    q_bad, c_bad = non_finite_rows(queries), non_finite_rows(corpus)
    if len(q_bad) or len(c_bad):
        raise NonFiniteEmbeddings(f"non-finite (NaN or inf) embeddings: {len(q_bad)} query row(s), "
                                  f"{len(c_bad)} corpus row(s)", q_bad, c_bad)


@dataclass
class SearchResult:
    """What one pass over queries × corpus yields.

    pair_query, pair_doc, pair_grade: (n_pairs,) one row per (query, relevant candidate) pair, grouped by query.
    above: (n_pairs, n_langs) candidates of each corpus language ranked above the pair's candidate.
    top_pooled, top_pooled_scores: (n_queries, k) best candidates of the whole corpus.
    top_block, top_block_scores: (n_queries, k) best candidates within the block `block_topk_for` names for
      each query (-1 and -inf pad rows whose block has fewer than k candidates or that asked for none).
    """

    pair_query: np.ndarray
    pair_doc: np.ndarray
    pair_grade: np.ndarray
    above: np.ndarray
    top_pooled: np.ndarray
    top_pooled_scores: np.ndarray
    top_block: np.ndarray
    top_block_scores: np.ndarray


def chunk_size_for(n_candidates: int, memory_mb: float) -> int:
    """Queries per chunk so that the chunk's working set stays within `memory_mb`.

    Per query and candidate: its score (4 bytes), a sorted copy (4) and the top-k workspace (4).
    """
    per_query = n_candidates * 12
    return max(1, int(memory_mb * 2**20 // max(per_query, 1)))


def tie_order(ids: list[str]) -> np.ndarray:
    """Position of each id in ascending string order (trec_eval ranks the larger id first on ties)."""
    order = np.argsort(np.array(ids, dtype=object), kind="stable")
    position = np.empty(len(ids), dtype=np.int64)
    position[order] = np.arange(len(ids))
    return position


def search(queries: np.ndarray, corpus: np.ndarray, corpus_lang: np.ndarray, corpus_tie: np.ndarray,
           relevant: list[list[tuple[int, int]]], n_langs: int, k: int = 100,
           block_topk_for: np.ndarray | None = None, memory_mb: float = 512.0) -> SearchResult:
    """One exact pass.

    queries (n_q, d), corpus (n_c, d): normalized float32 embeddings (score = dot product).
    corpus_lang (n_c,): language index of each candidate, non-decreasing (contiguous blocks).
    corpus_tie (n_c,): from `tie_order` over the candidate ids.
    relevant[i]: (candidate index, grade) pairs of query i.
    block_topk_for (n_q,): for each query the language block whose own top k is wanted (-1: none).
    Non-finite embeddings, or scores that overflow to inf, raise `NonFiniteEmbeddings` (NaN compares
    false with everything, so it would put several relevant items at one rank and push mAP above 1).
    """
    corpus_lang = np.asarray(corpus_lang, dtype=np.int64)
    if np.any(np.diff(corpus_lang) < 0):
        raise ValueError("corpus must be ordered by language (contiguous blocks)")
    require_finite(queries, corpus)
    with warnings.catch_warnings():  # read-only (memory-mapped) embeddings: only ever read here, never copied
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
        c = torch.from_numpy(np.ascontiguousarray(corpus, dtype=np.float32))
    tie = torch.from_numpy(np.asarray(corpus_tie, dtype=np.int64))
    n_q, n_c = q.shape[0], c.shape[0]
    k = min(k, n_c)
    bounds = np.searchsorted(corpus_lang, np.arange(n_langs + 1))
    spans = [(int(bounds[i]), int(bounds[i + 1])) for i in range(n_langs)]

    pair_query = np.array([qi for qi, rels in enumerate(relevant) for _ in rels], dtype=np.int64)
    pair_doc = np.array([ci for rels in relevant for ci, _ in rels], dtype=np.int64)
    pair_grade = np.array([g for rels in relevant for _, g in rels], dtype=np.int64)
    above = np.zeros((len(pair_query), n_langs), dtype=np.int64)
    pair_start = np.searchsorted(pair_query, np.arange(n_q + 1))

    top_pooled = np.zeros((n_q, k), dtype=np.int64)
    top_pooled_scores = np.zeros((n_q, k), dtype=np.float32)
    top_block = np.full((n_q, k), -1, dtype=np.int64)
    top_block_scores = np.full((n_q, k), -np.inf, dtype=np.float32)
    block_for = np.full(n_q, -1) if block_topk_for is None else np.asarray(block_topk_for, dtype=np.int64)

    step = chunk_size_for(n_c, memory_mb)
    with torch.inference_mode():
        for start in range(0, n_q, step):
            stop = min(start + step, n_q)
            scores = q[start:stop] @ c.T  # (chunk, n_c)
            if not bool(torch.isfinite(scores).all()):  # finite embeddings whose dot products overflow
                rows = torch.nonzero(~torch.isfinite(scores).all(dim=1)).squeeze(1).numpy() + start
                raise NonFiniteEmbeddings(f"non-finite scores (overflow) for {len(rows)} query row(s) of "
                                          f"rows {start}..{stop - 1}", query_rows=rows)
            values, index = torch.topk(scores, k, dim=1)
            top_pooled[start:stop], top_pooled_scores[start:stop] = index.numpy(), values.numpy()
            lo, hi = int(pair_start[start]), int(pair_start[stop])
            rows = torch.from_numpy(pair_query[lo:hi] - start)
            docs = torch.from_numpy(pair_doc[lo:hi])
            target = scores[rows, docs]  # (n_pairs_in_chunk,)
            slot = torch.from_numpy(np.arange(lo, hi) - pair_start[pair_query[lo:hi]])  # j-th relevant of its query
            width = int(slot.max()) + 1 if hi > lo else 1
            grid = torch.full((stop - start, width), float("inf"))  # (chunk, most relevant per query)
            grid[rows, slot] = target
            for li, (b0, b1) in enumerate(spans):
                if b1 == b0:
                    continue
                block = scores[:, b0:b1]
                _block_top(block, b0, li, start, block_for, top_block, top_block_scores)
                # numpy's vectorized sort is ~10x faster than torch.sort on CPU; searchsorted shares memory
                block_sorted = torch.from_numpy(np.sort(block.numpy(), axis=1))  # ascending
                if hi > lo:
                    above[lo:hi, li] = _count_above(scores, block_sorted, grid, rows, slot, docs, target,
                                                    tie, b0, b1)
    return SearchResult(pair_query, pair_doc, pair_grade, above, top_pooled, top_pooled_scores,
                        top_block, top_block_scores)


def _count_above(scores: torch.Tensor, block_sorted: torch.Tensor, grid: torch.Tensor, rows: torch.Tensor,
                 slot: torch.Tensor, docs: torch.Tensor, target: torch.Tensor, tie: torch.Tensor, b0: int,
                 b1: int) -> np.ndarray:
    """Per pair, candidates of block [b0, b1) ranked above the pair's candidate (trec_eval's tie rule).

    grid (chunk, width): the pairs' scores laid out per query row, for batched binary search.
    """
    n_block = b1 - b0
    right = torch.searchsorted(block_sorted, grid, right=True)[rows, slot]
    left = torch.searchsorted(block_sorted, grid, right=False)[rows, slot]
    count = n_block - right  # strictly greater scores
    equal = right - left
    own = (docs >= b0) & (docs < b1)
    tied = torch.nonzero(equal > own.long()).squeeze(1)  # ties with other candidates: rare, done exactly
    for p in tied.tolist():
        row = scores[rows[p], b0:b1]
        same = torch.nonzero(row == target[p]).squeeze(1) + b0
        count[p] += int((tie[same] > tie[docs[p]]).sum())
    return count.numpy()


def _block_top(block: torch.Tensor, b0: int, li: int, start: int, block_for: np.ndarray,
               top_block: np.ndarray, top_block_scores: np.ndarray) -> None:
    """Top k within language block `li` for the chunk's queries that asked for that block."""
    rows = np.nonzero(block_for[start:start + block.shape[0]] == li)[0]
    if len(rows) == 0:
        return
    kk = min(top_block.shape[1], block.shape[1])
    values, index = torch.topk(block[torch.from_numpy(rows)], kk, dim=1)
    top_block[start + rows, :kk] = (index + b0).numpy()
    top_block_scores[start + rows, :kk] = values.numpy()
