"""Per-query scores of an evaluation (`per_query.tsv.gz`): loading, averaging over seeds, aligning two systems.

Row keys are the query id (`lang:qid`), or `lang:qid>y` for a cross-lingual row (query against the
candidates of language y). The breakdown a row belongs to (`stratum_of`) is its query language, or the
`x-y` pair in the cross-lingual setting; the table's score is the macro average over those breakdowns.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

PerQuery = dict[str, dict[str, dict[str, float]]]  # setting -> query -> measure -> value


def load_per_query(eval_dir: str | Path) -> PerQuery:
    """setting -> query -> measure -> value from DIR/per_query.tsv.gz (or that file itself).

    Every column after `setting` and `query` is a measure (a `rank_distance` column included when
    present); an empty or `nan` cell becomes NaN.
    """
    path = Path(eval_dir)
    if path.is_dir():
        path = path / "per_query.tsv.gz"
    result: PerQuery = {}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        if header[:2] != ["setting", "query"]:
            raise ValueError(f"{path}: expected a header starting 'setting<TAB>query', got {header[:2]}")
        measures = header[2:]
        for line in handle:
            cells = line.rstrip("\n").split("\t")
            values = {m: float(v) if v else math.nan for m, v in zip(measures, cells[2:], strict=False)}
            result.setdefault(cells[0], {})[cells[1]] = values
    return result


def combine_seeds(runs: Sequence[PerQuery]) -> PerQuery:
    """One system from several training seeds: per query and measure, the mean over the seeds.

    Only queries present in every seed are kept. A setting's macro score of the result equals the mean
    over seeds of the seeds' macro scores (the average is linear), so tables and tests agree.
    """
    if not runs:
        raise ValueError("no runs to combine")
    combined: PerQuery = {}
    for setting in set.intersection(*(set(r) for r in runs)):
        queries = set.intersection(*(set(r[setting]) for r in runs))
        combined[setting] = {
            q: {m: float(np.mean([r[setting][q][m] for r in runs])) for m in runs[0][setting][q]}
            for q in sorted(queries)}
    return combined


def query_language(query_id: str) -> str:
    """`de:56be...` -> `de`: the LAReQA ids carry the query language before the first colon."""
    lang, sep, _ = query_id.partition(":")
    if not sep:
        raise ValueError(f"query id {query_id!r} has no 'lang:' prefix; pass lang_of= to align")
    return lang


def stratum_of(setting: str, key: str, lang_of: Callable[[str], str] = query_language) -> str:
    """The breakdown a per-query row belongs to: query language, or `x-y` for a cross-lingual `qid>y`."""
    if setting == "crosslingual":
        qid, _, target = key.rpartition(">")
        return f"{lang_of(qid)}-{target}"
    return lang_of(key)


def align(per_query_a: PerQuery, per_query_b: PerQuery, setting: str, measure: str,
          lang_of: Callable[[str], str] = query_language
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(a, b, strata, query ids) over the queries both systems have, with a finite `measure` for both.

    Sorted by query id. strata: the query language (mono-, multilingual) or the `x-y` pair (cross-lingual).
    """
    rows_a: Mapping = per_query_a.get(setting, {})
    rows_b: Mapping = per_query_b.get(setting, {})
    ids = []
    for q in sorted(set(rows_a) & set(rows_b)):
        va, vb = rows_a[q].get(measure, math.nan), rows_b[q].get(measure, math.nan)
        if math.isfinite(va) and math.isfinite(vb):
            ids.append(q)
    a = np.array([rows_a[q][measure] for q in ids], dtype=np.float64)
    b = np.array([rows_b[q][measure] for q in ids], dtype=np.float64)
    strata = np.array([stratum_of(setting, q, lang_of) for q in ids], dtype=object)
    return a, b, strata, ids


def collapse_pairs(a: np.ndarray, b: np.ndarray, query_ids: Sequence[str],
                   lang_of: Callable[[str], str] = query_language
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Cross-lingual rows `qid>y` -> one value per query, stratified by query language, same statistic.

    The rows of one query (one per target language) share the query and are not independent, so the query
    is the unit to resample. Row i of pair (x, y) gets the coefficient X n_x / (P n_xy) (X query languages,
    n_x queries of x, P pairs, n_xy rows of the pair) and a query's value is the sum over its rows; then the
    macro average over query languages of the per-query values equals the macro average over pairs of the
    rows exactly. With every target judged for every query (XQuAD-R) a query's value is its mean over
    targets. Returns (a, b, query languages, query ids), sorted by query id.
    """
    qids = [key.rpartition(">")[0] for key in query_ids]
    pairs = [stratum_of("crosslingual", key, lang_of) for key in query_ids]
    langs = [lang_of(q) for q in qids]
    n_pair = {pair: pairs.count(pair) for pair in set(pairs)}
    queries_of: dict[str, set[str]] = {}
    for q, lang in zip(qids, langs, strict=True):
        queries_of.setdefault(lang, set()).add(q)
    scale = len(queries_of) / len(n_pair)
    coef = np.array([scale * len(queries_of[x]) / n_pair[p] for x, p in zip(langs, pairs, strict=True)])
    order = sorted(set(qids))
    index = {q: i for i, q in enumerate(order)}
    rows = np.array([index[q] for q in qids], dtype=np.int64)
    collapse = [np.bincount(rows, weights=coef * np.asarray(v, dtype=np.float64), minlength=len(order))
                for v in (a, b)]
    strata = np.array([lang_of(q) for q in order], dtype=object)
    return collapse[0], collapse[1], strata, order
