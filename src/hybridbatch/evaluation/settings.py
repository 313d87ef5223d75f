"""The three evaluation settings from one encoding and one search pass.

- monolingual: queries in X against the candidates in X; relevant = the answers in X; macro over X.
- crosslingual: queries in X against the candidates in Y != X; relevant = the answers in Y; macro over
  every ordered pair (X, Y) that has judged queries.
- multilingual: queries in X against the pooled corpus of all languages; relevant = the answers in every
  language; macro over X; plus rank distance and the share of each query's top 10 in its own language.
A setting the benchmark does not have (no judged pair in it, or a corpus of one language for the pooled
setting) is None: absent, not zero.

`evaluate_embeddings` searches an in-memory corpus (`retrieval.search`), `evaluate_store` a corpus store shard
by shard (`retrieval.store_search`, for corpora streamed from disk); both score through `evaluate_search`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybridbatch.data.benchmark import Benchmark
from hybridbatch.evaluation.metrics import DEFAULT_MEASURES, metrics_from_ranks
from hybridbatch.evaluation.rank_distance import macro_average, rank_distance_per_query
from hybridbatch.retrieval.search import NonFiniteEmbeddings, SearchResult, search, tie_order
from hybridbatch.retrieval.store_search import search_store


@dataclass
class Run:
    """Top-k rankings as arrays: row i ranks `doc_ids[doc_index[i, j]]` with `scores[i, j]` (-1 pads)."""

    query_ids: list[str]
    doc_index: np.ndarray
    scores: np.ndarray
    doc_ids: list[str]

    def as_lists(self) -> list[tuple[str, list[tuple[str, float]]]]:
        return [(qid, [(self.doc_ids[int(d)], float(s)) for d, s in zip(row, srow, strict=True) if d >= 0])
                for qid, row, srow in zip(self.query_ids, self.doc_index, self.scores, strict=True)]


@dataclass
class Evaluation:
    metrics: dict  # the metrics.json content
    per_query: dict  # setting -> (keys: query id, or "qid>Y" cross-lingually; {measure: per-key array})
    runs: dict  # setting -> Run


def evaluate_embeddings(bench: Benchmark, query_emb: np.ndarray, corpus_emb: np.ndarray, k: int = 100,
                        measures: tuple[str, ...] = DEFAULT_MEASURES, memory_mb: float = 512.0) -> Evaluation:
    """Evaluate normalized embeddings aligned with `bench.queries` and `bench.corpus`."""
    langs = bench.corpus_languages
    lang_index = {lang: i for i, lang in enumerate(langs)}
    c_lang = np.array([lang_index[c.lang] for c in bench.corpus], dtype=np.int64)
    order = np.argsort(c_lang, kind="stable")  # language blocks made contiguous
    corpus = [bench.corpus[i] for i in order]
    c_pos = {c.id: i for i, c in enumerate(corpus)}
    relevant = [[(c_pos[cid], g) for cid, g in sorted(bench.qrels.get(q.id, {}).items())] for q in bench.queries]
    own_block = np.array([lang_index.get(q.lang, -1) for q in bench.queries], dtype=np.int64)
    try:
        result = search(query_emb, corpus_emb[order], c_lang[order], tie_order([c.id for c in corpus]), relevant,
                        len(langs), k=k, block_topk_for=own_block, memory_mb=memory_mb)
    except NonFiniteEmbeddings as exc:  # name the texts, not the rows
        raise NonFiniteEmbeddings(f"{bench.name}: {exc}{_named(' queries', exc.query_rows, bench.queries)}"
                                  f"{_named(' corpus', exc.corpus_rows, corpus)}; nothing evaluated",
                                  exc.query_rows, exc.corpus_rows) from None

    return evaluate_search(bench, result, langs, c_lang[order], [c.id for c in corpus], measures)


def evaluate_store(bench: Benchmark, query_emb: np.ndarray, corpus_store: str | Path, k: int = 100,
                   measures: tuple[str, ...] = DEFAULT_MEASURES, memory_mb: float = 512.0) -> Evaluation:
    """`evaluate_embeddings` with the corpus embeddings in a store (`retrieval.embeddings`) of `bench.corpus`,
    searched shard by shard (`retrieval.store_search`): memory holds one shard, never the corpus."""
    relevant = [sorted(bench.qrels.get(q.id, {}).items()) for q in bench.queries]
    try:
        found = search_store(query_emb, [q.lang for q in bench.queries], relevant, corpus_store, k=k,
                             memory_mb=memory_mb)
    except NonFiniteEmbeddings as exc:  # the store refuses NaN corpus rows itself, naming their ids
        raise NonFiniteEmbeddings(f"{bench.name}: {exc}{_named(' queries', exc.query_rows, bench.queries)}; "
                                  f"nothing evaluated", exc.query_rows, exc.corpus_rows) from None
    return evaluate_search(bench, found.result, found.langs, found.doc_lang, found.doc_ids, measures)


def evaluate_search(bench: Benchmark, result: SearchResult, langs: list[str], doc_lang: np.ndarray,
                    doc_ids: list[str], measures: tuple[str, ...] = DEFAULT_MEASURES) -> Evaluation:
    """The settings from one search pass over `bench.queries`: `result`'s candidate indices point into
    `doc_ids` and `doc_lang` (index into `langs`, the sorted corpus languages) — the whole corpus, or only
    the candidates the result names (`retrieval.store_search`)."""
    lang_index = {lang: i for i, lang in enumerate(langs)}
    q_lang = np.array([lang_index.get(q.lang, -1) for q in bench.queries], dtype=np.int64)
    pair_qlang = q_lang[result.pair_query]
    pair_dlang = doc_lang[result.pair_doc]
    metrics: dict = {"benchmark": bench.name, "measures": list(measures)}
    per_query: dict = {}

    qlang_name = [langs[i] if i >= 0 else bench.queries[qi].lang
                  for qi, i in zip(result.pair_query, pair_qlang, strict=True)]
    dlang_name = [langs[i] for i in pair_dlang]
    block_rank = result.above[np.arange(len(pair_dlang)), pair_dlang] + 1
    mono = pair_qlang == pair_dlang
    metrics["monolingual"], per_query["monolingual"] = _setting(
        bench, result, mono, block_rank, qlang_name, measures, "per_language")
    metrics["crosslingual"], per_query["crosslingual"] = _setting(
        bench, result, ~mono, block_rank, [f"{a}-{b}" for a, b in zip(qlang_name, dlang_name, strict=True)],
        measures, "per_pair")
    if len(langs) >= 2:
        pooled_rank = result.above.sum(axis=1) + 1
        everything = np.ones(len(pair_dlang), dtype=bool)
        metrics["multilingual"], per_query["multilingual"] = _setting(
            bench, result, everything, pooled_rank, qlang_name, measures, "per_language")
        _add_language_bias(metrics["multilingual"], bench, result, pooled_rank, doc_lang, langs)
        keys, scores = per_query["multilingual"]
        labels, distance = rank_distance_per_query(result.pair_query, pooled_rank)
        by_query = dict(zip((bench.queries[int(i)].id for i in labels), distance, strict=True))
        if not bench.parallel:  # several judged passages of one language are no parallel answers
            by_query = {}
        scores["rank_distance"] = np.array([by_query.get(k, np.nan) for k in keys])  # nan: < 2 relevant
    else:
        metrics["multilingual"], per_query["multilingual"] = None, ([], {})

    runs = {"monolingual": _runs(bench, doc_ids, result, pooled=False)}
    if metrics["multilingual"] is not None:
        runs["multilingual"] = _runs(bench, doc_ids, result, pooled=True)
    return Evaluation(metrics, per_query, runs)


def _named(what: str, rows: np.ndarray, texts: list, shown: int = 5) -> str:
    """`; queries a, b, c (+N more)` for the offending rows, or ''."""
    if len(rows) == 0:
        return ""
    ids = ", ".join(texts[int(i)].id for i in rows[:shown])
    more = f" (+{len(rows) - shown} more)" if len(rows) > shown else ""
    return f";{what} {ids}{more}"


def _setting(bench: Benchmark, result: SearchResult, select: np.ndarray, rank: np.ndarray, keys: list[str],
             measures: tuple[str, ...], name: str):
    """Metrics of the pairs in `select`, broken down by `keys` (query language, or "x-y" pair)."""
    if not select.any():
        return None, ([], {})
    rows = np.nonzero(select)[0]
    row_keys = [keys[r] for r in rows]
    sub_names = sorted(set(row_keys))
    sub_id = {sub: i for i, sub in enumerate(sub_names)}
    # one "query instance" per (query, sub-setting): a query of X is judged once per target language Y
    instance = result.pair_query[rows] * len(sub_names) + np.array([sub_id[k] for k in row_keys])
    labels, scores = metrics_from_ranks(instance, rank[rows], result.pair_grade[rows], measures)
    sub_of = labels % len(sub_names)
    breakdown: dict = {}
    for si, sub in enumerate(sub_names):
        sel = sub_of == si
        breakdown[sub] = {m: float(scores[m][sel].mean()) for m in measures}
        breakdown[sub]["queries"] = int(sel.sum())
    query_ids = [bench.queries[int(i)].id for i in labels // len(sub_names)]
    if name == "per_pair":
        query_ids = [f"{qid}>{sub_names[s].split('-', 1)[1]}" for qid, s in zip(query_ids, sub_of, strict=True)]
    per_query = (query_ids, scores)
    summary: dict = {m: float(np.mean([b[m] for b in breakdown.values()])) for m in measures}
    summary["queries"] = int(len(labels))
    summary[name] = breakdown
    return summary, per_query


def _add_language_bias(summary: dict, bench: Benchmark, result: SearchResult, pooled_rank: np.ndarray,
                       corpus_lang: np.ndarray, langs: list[str]) -> None:
    labels, distance = rank_distance_per_query(result.pair_query, pooled_rank)
    q_langs = [bench.queries[int(i)].lang for i in labels]
    macro, per_lang = macro_average(distance, q_langs)
    if not bench.parallel:  # rank distance needs parallel relevant items (MIRACL has none): NaN, written null
        macro, per_lang, labels = float("nan"), {}, labels[:0]
    summary["rank_distance"] = macro
    summary["rank_distance_queries"] = int(len(labels))
    judged = sorted({int(i) for i in result.pair_query})
    top10 = result.top_pooled[judged, :10]
    own = np.array([langs.index(bench.queries[i].lang) if bench.queries[i].lang in langs else -1
                    for i in judged])
    share = (corpus_lang[top10] == own[:, None]).mean(axis=1)
    share_macro, share_per_lang = macro_average(share, [bench.queries[i].lang for i in judged])
    summary["own_language_top10"] = share_macro
    for lang, breakdown in summary["per_language"].items():
        breakdown["rank_distance"] = per_lang.get(lang, float("nan"))
        breakdown["own_language_top10"] = share_per_lang.get(lang, float("nan"))


def _runs(bench: Benchmark, doc_ids: list[str], result: SearchResult, pooled: bool) -> Run:
    judged = np.unique(result.pair_query)
    index = result.top_pooled if pooled else result.top_block
    scores = result.top_pooled_scores if pooled else result.top_block_scores
    if not pooled:
        judged = judged[index[judged, 0] >= 0]  # queries whose language has no block: no monolingual run
    return Run([bench.queries[int(i)].id for i in judged], index[judged], scores[judged], doc_ids)
