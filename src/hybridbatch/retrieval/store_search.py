"""Exact search over an embedding store, shard by shard: what `search.search` yields, never the corpus whole.

For corpora streamed from disk (MIRACL's are millions of passages). The store (`retrieval.embeddings`) is
read in three passes, each holding one shard at most:
1. ids.txt and langs.txt, line by line: the corpus languages and the rows of the judged candidates, whose
   embeddings are then read from their (memory-mapped) shards to score each (query, relevant) pair;
2. the shards: each chunk of queries is scored against one shard, which updates per query a running top k
   over the pooled corpus and over the query's own language, and per pair the count of candidates of each
   language ranked above it (trec_eval's tie rule, as in `search`: on equal scores the larger id first);
3. ids.txt and langs.txt again: the ids and languages of the candidates the result names.
The result is a `search.SearchResult` whose candidate indices point into that short list of candidates, so
`evaluation.settings.evaluate_search` turns it into the same metrics and runs as `search`'s. Other matrix
products (a shard, not the corpus) may round a score differently in its last float32 bit; the ranks of the
judged candidates use each pair's score as the product of its own shard has it, so it never outranks itself.
Among exactly tied scores the order in a top k is torch.topk's, here as in `search`.

Memory: the queries, the running top k (n_queries x k scores and indices, twice), the pairs' counts
(n_pairs x n_langs), one shard and one chunk's scores (`chunk_size_for` the shard's rows and `memory_mb`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hybridbatch.retrieval.search import NonFiniteEmbeddings, SearchResult, chunk_size_for, require_finite
from hybridbatch.retrieval.store_format import (
    StoreError,
    read_meta,
    streamed_listing,
    streamed_shards,
    validated_meta,
    verified_shard,
)


@dataclass
class StoreSearch:
    result: SearchResult  # candidate indices point into doc_ids / doc_lang
    langs: list[str]  # the corpus languages, sorted
    doc_ids: list[str]  # the candidates the result names (judged or in a top k), in store order
    doc_lang: np.ndarray  # (n_docs,) index into langs


def search_store(queries: np.ndarray, query_langs: list[str], relevant: list[list[tuple[str, int]]],
                 folder: str | Path, k: int = 100, memory_mb: float = 512.0) -> StoreSearch:
    """One exact pass of normalized `queries` (n_q, d) over the store at `folder` (see the module docstring).

    relevant[i]: (candidate id, grade) pairs of query i; query_langs[i]: its language, whose own block's top k
    is kept (none where the corpus has no passage of it).
    """
    folder = Path(folder)
    require_finite(queries, np.zeros((0, queries.shape[1]), dtype=np.float32))  # the shards are checked on read
    langs, count, judged_rows = _scan_listing(folder, {d for rels in relevant for d, _ in rels})
    lang_index = {lang: i for i, lang in enumerate(langs)}
    own = torch.tensor([lang_index.get(lang, -1) for lang in query_langs], dtype=torch.int64)
    pair_query = np.array([qi for qi, rels in enumerate(relevant) for _ in rels], dtype=np.int64)
    pair_doc = np.array([judged_rows[d] for rels in relevant for d, _ in rels], dtype=np.int64)
    pair_grade = np.array([g for rels in relevant for _, g in rels], dtype=np.int64)
    pair_id = [d for rels in relevant for d, _ in rels]
    pair_start = np.searchsorted(pair_query, np.arange(len(queries) + 1))
    with warnings.catch_warnings():  # read-only (memory-mapped) arrays: only ever read here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
        target = _pair_scores(q, folder, pair_query, pair_doc, pair_start)

    n_q, k = len(queries), min(k, count)
    above = np.zeros((len(pair_query), len(langs)), dtype=np.int64)
    pooled = (torch.full((n_q, k), -torch.inf), torch.full((n_q, k), -1, dtype=torch.int64))
    block = (torch.full((n_q, k), -torch.inf), torch.full((n_q, k), -1, dtype=torch.int64))
    first_row = 0
    for ids, shard_langs, emb in streamed_shards(folder):
        shard_lang = np.array([lang_index[lang] for lang in shard_langs], dtype=np.int64)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            c = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
        step = chunk_size_for(len(ids), memory_mb)
        for start in range(0, n_q, step):
            stop = min(start + step, n_q)
            _score_chunk(q[start:stop] @ c.T, start, first_row, ids, shard_lang, own[start:stop], pooled, block,
                         above, target, pair_query, pair_doc, pair_id, pair_start)
        first_row += len(ids)

    named = np.unique(np.concatenate([pooled[1].numpy().ravel(), block[1].numpy().ravel(), pair_doc]))
    named = named[named >= 0]
    doc_ids, doc_langs = _listed_rows(folder, named)

    def local(index: torch.Tensor) -> np.ndarray:
        index = index.numpy()
        return np.where(index >= 0, np.searchsorted(named, index), -1)

    result = SearchResult(pair_query, np.searchsorted(named, pair_doc), pair_grade, above, local(pooled[1]),
                          pooled[0].numpy(), local(block[1]), block[0].numpy())
    return StoreSearch(result, langs, doc_ids, np.array([lang_index[lang] for lang in doc_langs], dtype=np.int64))


def _scan_listing(folder: Path, judged: set[str]) -> tuple[list[str], int, dict[str, int]]:
    """(sorted corpus languages, row count, row of each judged id) from one read of ids.txt / langs.txt."""
    langs: set[str] = set()
    rows: dict[str, int] = {}
    count = 0
    for count, (text_id, lang) in enumerate(streamed_listing(folder), start=1):
        langs.add(lang)
        if text_id in judged:
            rows[text_id] = count - 1
    missing = judged - set(rows)
    if missing:
        raise StoreError(f"judged candidate(s) not in this corpus store, e.g. {sorted(missing)[:3]}: a store of "
                         "other texts (re-encode it)", path=folder)
    return sorted(langs), count, rows


def _pair_scores(q: torch.Tensor, folder: Path, pair_query: np.ndarray, pair_doc: np.ndarray,
                 pair_start: np.ndarray) -> torch.Tensor:
    """Each (query, relevant) pair's score, from the relevant candidates' rows read out of their shards."""
    meta = validated_meta(read_meta(folder), folder)
    bounds = np.cumsum([0] + [s["rows"] for s in meta["shards"]])
    rel = np.zeros((len(pair_doc), q.shape[1]), dtype=np.float32)
    for si, shard in enumerate(meta["shards"]):
        inside = np.nonzero((pair_doc >= bounds[si]) & (pair_doc < bounds[si + 1]))[0]
        if len(inside):
            rows = range(bounds[si], bounds[si + 1])  # named by row number: ids.txt is not read here
            part = verified_shard(folder, shard, meta["dim"], rows)
            rel[inside] = part[pair_doc[inside] - bounds[si]]
    target = torch.zeros(len(pair_doc))
    step = chunk_size_for(max(len(pair_doc), 1), 64.0)
    for start in range(0, len(pair_start) - 1, step):  # one matrix product per chunk, as the search does
        lo, hi = int(pair_start[start]), int(pair_start[min(start + step, len(pair_start) - 1)])
        if hi > lo:
            scores = q[start:start + step] @ torch.from_numpy(rel[lo:hi]).T
            target[lo:hi] = scores[torch.from_numpy(pair_query[lo:hi] - start), torch.arange(hi - lo)]
    return target


def _score_chunk(scores: torch.Tensor, start: int, first_row: int, ids: list[str], shard_lang: np.ndarray,
                 own: torch.Tensor, pooled, block, above: np.ndarray, target: torch.Tensor, pair_query: np.ndarray,
                 pair_doc: np.ndarray, pair_id: list[str], pair_start: np.ndarray) -> None:
    """Fold one chunk's scores against one shard, (chunk, shard rows), into the running tops and counts."""
    stop = start + scores.shape[0]
    if not bool(torch.isfinite(scores).all()):  # finite embeddings whose dot products overflow
        rows = torch.nonzero(~torch.isfinite(scores).all(dim=1)).squeeze(1).numpy() + start
        raise NonFiniteEmbeddings(f"non-finite scores (overflow) for {len(rows)} query row(s)", query_rows=rows)
    _merge_top(pooled, torch.arange(start, stop), scores, first_row)
    lo, hi = int(pair_start[start]), int(pair_start[stop])
    rows = torch.from_numpy(pair_query[lo:hi] - start)
    slot = torch.from_numpy(np.arange(lo, hi) - pair_start[pair_query[lo:hi]])  # j-th relevant of its query
    local = torch.from_numpy(pair_doc[lo:hi] - first_row)
    inside = (local >= 0) & (local < scores.shape[1])
    pair_target = target[lo:hi].clone()
    pair_target[inside] = scores[rows[inside], local[inside]]  # the pair's own score as this product has it
    cuts = np.flatnonzero(np.diff(shard_lang)) + 1
    for b0, b1 in zip([0, *cuts], [*cuts, len(shard_lang)], strict=True):  # runs of one language
        li = int(shard_lang[b0])
        asked = torch.nonzero(own == li).squeeze(1)
        if len(asked):
            _merge_top(block, asked + start, scores[asked, b0:b1], first_row + b0)
        if hi > lo:
            above[lo:hi, li] += _count_above(scores[:, b0:b1], rows, slot, local - b0, pair_target, ids[b0:b1],
                                             pair_id[lo:hi])


def _merge_top(top: tuple[torch.Tensor, torch.Tensor], rows: torch.Tensor, scores: torch.Tensor,
               first: int) -> None:
    """Keep in `top` (scores, store rows) of query `rows` the best k of what it held and of `scores`, whose
    columns are the store rows `first`, `first + 1`, ..."""
    kk = min(top[0].shape[1], scores.shape[1])
    values, index = torch.topk(scores, kk, dim=1)
    merged = torch.cat([top[0][rows], values], dim=1)
    merged_index = torch.cat([top[1][rows], index + first], dim=1)
    best, pick = torch.topk(merged, top[0].shape[1], dim=1)
    top[0][rows], top[1][rows] = best, merged_index.gather(1, pick)


def _count_above(block: torch.Tensor, rows: torch.Tensor, slot: torch.Tensor, local: torch.Tensor,
                 target: torch.Tensor, ids: list[str], pair_id: list[str]) -> np.ndarray:
    """Per pair, candidates of `block` (chunk, n) ranked above the pair's candidate (at column `local`, or
    outside the block): strictly higher scores, and equal scores with a larger id. The pairs' targets are
    laid out per query row (`rows`, `slot`) for one batched binary search, as `search` does."""
    block_sorted = torch.from_numpy(np.sort(block.numpy(), axis=1))  # ascending
    grid = torch.full((block.shape[0], int(slot.max()) + 1), float("inf"))  # (chunk, most relevant per query)
    grid[rows, slot] = target
    right = torch.searchsorted(block_sorted, grid, right=True)[rows, slot]
    left = torch.searchsorted(block_sorted, grid, right=False)[rows, slot]
    count = block.shape[1] - right
    own = (local >= 0) & (local < block.shape[1])
    for p in torch.nonzero((right - left) > own.long()).squeeze(1).tolist():  # ties with others: rare, exact
        same = torch.nonzero(block[rows[p]] == target[p]).squeeze(1).tolist()
        count[p] += sum(1 for j in same if j != int(local[p]) and ids[j] > pair_id[p])
    return count.numpy()


def _listed_rows(folder: Path, rows: np.ndarray) -> tuple[list[str], list[str]]:
    """The ids and languages of the store's rows `rows` (sorted), from one read of its listing."""
    ids, langs = [], []
    wanted = iter(rows.tolist())
    next_row = next(wanted, None)
    for row, (text_id, lang) in enumerate(streamed_listing(folder)):
        if row == next_row:
            ids.append(text_id)
            langs.append(lang)
            next_row = next(wanted, None)
            if next_row is None:
                break
    return ids, langs
