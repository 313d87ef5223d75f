"""IR metrics over the ranks of relevant items, equal to trec_eval's over complete rankings.

This module knows nothing of models or benchmarks: ranks and grades in, numbers out.

For one query with R relevant items (grade g_i > 0) at 1-based ranks r_1 < r_2 < ... in a complete ranking:
- map:        AP = (1/R) * sum_i i / r_i                       (trec_eval `map`, exact, not cut)
- recall@k:   |{i : r_i <= k}| / R                             (trec_eval `recall_k`)
- success@k:  1 if r_1 <= k else 0                             (hit rate, CLIP's R@k)
- mrr@k:      1 / r_1 if r_1 <= k else 0                       (trec_eval `recip_rank` on a run cut at k)
- ndcg@k:     DCG@k / IDCG@k, DCG@k = sum_{r_i <= k} g_i / log2(r_i + 1), IDCG from the grades sorted
              in decreasing order at ranks 1..k                 (trec_eval `ndcg_cut_k`, linear gain)
A complete ranking retrieves every candidate, so every relevant item has a rank.

`pytrec_eval_scores` is the reference implementation (pytrec-eval-terrier) for general runs and qrels.
"""

from __future__ import annotations

import re

import numpy as np

DEFAULT_MEASURES = ("map", "recall@1", "recall@10", "recall@100", "ndcg@10", "mrr@10")
_MEASURE = re.compile(r"^(map|recall|success|mrr|ndcg)(?:@(\d+))?$")


class MetricOutOfRange(AssertionError):
    """An internal error: ranks that cannot be (two relevant items at one rank) or a metric outside [0, 1]."""


def check_unit_range(name: str, values: np.ndarray) -> None:
    """Every metric value lies in [0, 1]; anything else (NaN included) is a bug upstream, never reported."""
    values = np.asarray(values, dtype=np.float64)
    bad = ~((values >= 0.0) & (values <= 1.0 + 1e-9))
    if bad.any():
        raise MetricOutOfRange(f"{name} = {values[bad][0]!r} for {int(bad.sum())} query(ies): a metric outside "
                               "[0, 1] is a bug, nothing was reported")


def parse_measure(name: str) -> tuple[str, int | None]:
    match = _MEASURE.match(name)
    if not match or (match.group(1) != "map" and match.group(2) is None):
        raise ValueError(f"unknown measure {name!r}; expected map, recall@k, success@k, mrr@k or ndcg@k")
    return match.group(1), int(match.group(2)) if match.group(2) else None


def metrics_from_ranks(query: np.ndarray, rank: np.ndarray, grade: np.ndarray,
                       measures: tuple[str, ...] = DEFAULT_MEASURES) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-query metrics from (query, rank, grade) rows, one row per relevant item.

    query: (n,) query labels (any integers); rank: (n,) 1-based ranks; grade: (n,) positive grades.
    Returns the sorted distinct query labels and, per measure, an array aligned with them.
    """
    query = np.asarray(query, dtype=np.int64)
    rank = np.asarray(rank, dtype=np.int64)
    grade = np.asarray(grade, dtype=np.float64)
    order = np.lexsort((rank, query))
    query, rank, grade = query[order], rank[order], grade[order]
    labels, start, num_rel = np.unique(query, return_index=True, return_counts=True)
    group = np.repeat(np.arange(len(labels)), num_rel)
    position = np.arange(len(query)) - start[group] + 1  # i: position among the query's relevant items
    shared = (np.diff(rank) == 0) & (np.diff(query) == 0)  # sorted: a shared rank sits in adjacent rows
    if np.any(rank < 1) or np.any(shared):
        raise MetricOutOfRange("two relevant items of one query share a rank (or a rank is below 1): the "
                               "ranking is not a ranking (NaN scores?)")
    first_rank = rank[start]
    out: dict[str, np.ndarray] = {}
    for name in measures:
        kind, k = parse_measure(name)
        if kind == "map":
            out[name] = np.bincount(group, weights=position / rank, minlength=len(labels)) / num_rel
        elif kind == "recall":
            out[name] = np.bincount(group, weights=(rank <= k), minlength=len(labels)) / num_rel
        elif kind == "success":
            out[name] = (first_rank <= k).astype(np.float64)
        elif kind == "mrr":
            out[name] = np.where(first_rank <= k, 1.0 / first_rank, 0.0)
        else:
            out[name] = _ndcg(group, rank, grade, start, num_rel, k)
        check_unit_range(name, out[name])
    return labels, out


def _ndcg(group: np.ndarray, rank: np.ndarray, grade: np.ndarray, start: np.ndarray, num_rel: np.ndarray,
          k: int) -> np.ndarray:
    n = len(start)
    dcg = np.bincount(group, weights=np.where(rank <= k, grade / np.log2(rank + 1.0), 0.0), minlength=n)
    # ideal: grades sorted decreasingly within each query, at positions 1..k
    order = np.lexsort((-grade, group))
    ideal_pos = np.arange(len(group)) - start[group[order]] + 1
    ideal_gain = np.where(ideal_pos <= k, grade[order] / np.log2(ideal_pos + 1.0), 0.0)
    idcg = np.bincount(group[order], weights=ideal_gain, minlength=n)
    return np.divide(dcg, idcg, out=np.zeros(n), where=idcg > 0)


# --------------------------------------------------------------------------------------------- reference
_TREC_NAMES = {"map": "map", "recall": "recall_{k}", "ndcg": "ndcg_cut_{k}", "success": "success_{k}"}


def pytrec_eval_scores(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
                       measures: tuple[str, ...] = DEFAULT_MEASURES) -> dict[str, dict[str, float]]:
    """Per-query scores from pytrec-eval-terrier, under our measure names.

    Queries without any relevant item are left out (trec_eval averages over judged queries only).
    `mrr@k` is trec_eval's `recip_rank` over each query's run cut to its top k.
    """
    import pytrec_eval

    qrels = {q: rels for q, rels in qrels.items() if any(g > 0 for g in rels.values())}
    trec: dict[str, str] = {}
    for name in measures:
        kind, k = parse_measure(name)
        if kind != "mrr":
            trec[name] = _TREC_NAMES[kind].format(k=k)
    result: dict[str, dict[str, float]] = {}
    if trec:
        evaluator = pytrec_eval.RelevanceEvaluator(qrels, set(trec.values()))
        for qid, scores in evaluator.evaluate(run).items():
            result[qid] = {ours: scores[theirs] for ours, theirs in trec.items()}
    for name in measures:
        kind, k = parse_measure(name)
        if kind == "mrr":
            cut = {q: dict(sorted(docs.items(), key=lambda kv: (-kv[1], _neg(kv[0])))[:k])
                   for q, docs in run.items()}
            evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
            for qid, scores in evaluator.evaluate(cut).items():
                result.setdefault(qid, {})[name] = scores["recip_rank"]
    return result


class _neg(str):
    """Sort key that orders strings decreasingly (trec_eval's tie-break: larger docno first)."""

    def __lt__(self, other: str) -> bool:  # type: ignore[override]
        return str.__gt__(self, other)


def mean_scores(per_query: dict[str, dict[str, float]], measures: tuple[str, ...]) -> dict[str, float]:
    if not per_query:
        return {m: float("nan") for m in measures}
    for m in measures:
        check_unit_range(m, np.array([s[m] for s in per_query.values()]))
    return {m: float(np.mean([s[m] for s in per_query.values()])) for m in measures}
