"""Exact search in query chunks: the ranks of the relevant items, per corpus language, and the top k.

All three evaluation settings come from one pass. The corpus is grouped into language blocks; for every
(query, relevant item) pair the pass counts, in each block, the candidates that rank above the item. The
item's rank in a one-language corpus Y is `counts[Y] + 1`, and its rank in the pooled corpus is
`counts.sum() + 1`. Ties are broken as trec_eval breaks them (equal score: the larger id ranks first), so
the metrics equal pytrec_eval's over complete rankings without ever handing it a full score matrix.

Memory: a chunk holds `chunk × n_candidates` float32 scores plus a boolean matrix of the same shape;
the chunk size follows from `memory_mb`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class SearchResult:
    """What one pass over queries × corpus yields.

    pair_query, pair_doc, pair_grade: (n_pairs,) one row per (query, relevant candidate) pair.
    above: (n_pairs, n_langs) candidates of each corpus language ranked above the pair's candidate.
    top_pooled, top_pooled_scores: (n_queries, k) best candidates of the whole corpus.
    top_block, top_block_scores: {lang index: (n_queries, k)} best candidates within each language block,
      for the blocks asked for (-1 pads rows when a block has fewer than k candidates).
    """

    pair_query: np.ndarray
    pair_doc: np.ndarray
    pair_grade: np.ndarray
    above: np.ndarray
    top_pooled: np.ndarray
    top_pooled_scores: np.ndarray
    top_block: dict[int, np.ndarray]
    top_block_scores: dict[int, np.ndarray]


def chunk_size_for(n_candidates: int, memory_mb: float, relevant_per_query: int = 1) -> int:
    """Queries per chunk so that the chunk's working set stays within `memory_mb`.

    Per query: its score row (4 bytes a candidate) and a block top-k copy (4), and per relevant item a
    gathered score row (4) and two boolean masks (2).
    """
    per_query = n_candidates * (8 + relevant_per_query * 6)
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
    corpus_lang (n_c,): language index of each candidate, in [0, n_langs).
    corpus_tie (n_c,): from `tie_order` over the candidate ids.
    relevant[i]: (candidate index, grade) pairs of query i.
    block_topk_for (n_q,): for each query the language block whose own top k is wanted (-1: none).
    """
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    c = torch.from_numpy(np.ascontiguousarray(corpus, dtype=np.float32))
    lang = torch.from_numpy(np.asarray(corpus_lang, dtype=np.int64))
    tie = torch.from_numpy(np.asarray(corpus_tie, dtype=np.int64))
    n_q, n_c = q.shape[0], c.shape[0]
    k = min(k, n_c)
    blocks = [torch.nonzero(lang == li).squeeze(1) for li in range(n_langs)]
    contiguous = [(int(b[0]), int(b[-1]) + 1) if len(b) and int(b[-1]) + 1 - int(b[0]) == len(b) else None
                  for b in blocks]

    pairs = [(qi, ci, g) for qi, rels in enumerate(relevant) for ci, g in rels]
    pair_query = np.array([p[0] for p in pairs], dtype=np.int64)
    pair_doc = np.array([p[1] for p in pairs], dtype=np.int64)
    pair_grade = np.array([p[2] for p in pairs], dtype=np.int64)
    above = np.zeros((len(pairs), n_langs), dtype=np.int64)
    pair_start = np.searchsorted(pair_query, np.arange(n_q + 1))  # pairs are grouped by query

    top_pooled = np.zeros((n_q, k), dtype=np.int64)
    top_pooled_scores = np.zeros((n_q, k), dtype=np.float32)
    wanted = sorted({int(b) for b in block_topk_for if b >= 0}) if block_topk_for is not None else []
    top_block = {b: np.full((n_q, k), -1, dtype=np.int64) for b in wanted}
    top_block_scores = {b: np.full((n_q, k), -np.inf, dtype=np.float32) for b in wanted}

    most_relevant = max((len(r) for r in relevant), default=1)
    step = chunk_size_for(n_c, memory_mb, max(most_relevant, 1))
    with torch.inference_mode():
        for start in range(0, n_q, step):
            stop = min(start + step, n_q)
            scores = q[start:stop] @ c.T  # (chunk, n_c)
            values, index = torch.topk(scores, k, dim=1)
            top_pooled[start:stop], top_pooled_scores[start:stop] = index.numpy(), values.numpy()
            _block_topk(scores, start, block_topk_for, blocks, k, top_block, top_block_scores)
            lo, hi = pair_start[start], pair_start[stop]
            if hi > lo:
                above[lo:hi] = _count_above(scores, pair_query[lo:hi] - start, pair_doc[lo:hi], tie,
                                            lang, blocks, contiguous)
    return SearchResult(pair_query, pair_doc, pair_grade, above, top_pooled, top_pooled_scores,
                        top_block, top_block_scores)


def _count_above(scores: torch.Tensor, rows: np.ndarray, docs: np.ndarray, tie: torch.Tensor,
                 lang: torch.Tensor, blocks: list[torch.Tensor], contiguous: list) -> np.ndarray:
    """For each pair (row, doc): per language block, how many candidates rank above doc for that row."""
    rows_t = torch.from_numpy(rows)
    docs_t = torch.from_numpy(docs)
    row_scores = scores[rows_t]  # (n_pairs, n_c): one row per pair
    target = row_scores.gather(1, docs_t[:, None])  # (n_pairs, 1)
    better = row_scores > target
    better |= (row_scores == target) & (tie[None, :] > tie[docs_t][:, None])
    out = torch.empty((len(rows), len(blocks)), dtype=torch.int64)
    for li, (block, span) in enumerate(zip(blocks, contiguous, strict=True)):
        part = better[:, span[0]:span[1]] if span else better[:, block]
        out[:, li] = part.sum(dim=1)
    return out.numpy()


def _block_topk(scores: torch.Tensor, start: int, block_for: np.ndarray | None, blocks: list[torch.Tensor],
                k: int, top_block: dict, top_block_scores: dict) -> None:
    if block_for is None:
        return
    chunk_for = block_for[start:start + scores.shape[0]]
    for b in top_block:
        rows = np.nonzero(chunk_for == b)[0]
        if len(rows) == 0 or len(blocks[b]) == 0:
            continue
        kk = min(k, len(blocks[b]))
        values, index = torch.topk(scores[torch.from_numpy(rows)][:, blocks[b]], kk, dim=1)
        top_block[b][start + rows, :kk] = blocks[b][index].numpy()
        top_block_scores[b][start + rows, :kk] = values.numpy()
