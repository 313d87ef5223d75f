"""Language bias as rank distance (arXiv 2408.10536, after LAReQA).

For a query whose relevant items are parallel (the same answer in several languages), the rank distance is
the maximum minus the minimum rank among its relevant items in the pooled multilingual ranking. A model
without language preference keeps the translations together (distance near R - 1 for R relevant items);
one that prefers the query's language pushes the other languages down. Averaged over the queries of each
query language, then macro-averaged over query languages. Lower is better. Queries with fewer than two
relevant items have no rank distance and are left out (counted).
"""

from __future__ import annotations

import numpy as np


def rank_distance_per_query(query: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query labels with >= 2 relevant items, max rank - min rank for each) from one row per relevant item."""
    query = np.asarray(query, dtype=np.int64)
    rank = np.asarray(rank, dtype=np.int64)
    if len(query) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    order = np.argsort(query, kind="stable")
    query, rank = query[order], rank[order]
    labels, start, counts = np.unique(query, return_index=True, return_counts=True)
    hi = np.maximum.reduceat(rank, start)
    lo = np.minimum.reduceat(rank, start)
    keep = counts >= 2
    return labels[keep], (hi - lo)[keep].astype(np.float64)


def macro_average(values: np.ndarray, langs: list[str]) -> tuple[float, dict[str, float]]:
    """Mean per language, then the mean of those means."""
    per_lang: dict[str, list[float]] = {}
    for value, lang in zip(values, langs, strict=True):
        per_lang.setdefault(lang, []).append(float(value))
    means = {lang: float(np.mean(v)) for lang, v in sorted(per_lang.items())}
    macro = float(np.mean(list(means.values()))) if means else float("nan")
    return macro, means
